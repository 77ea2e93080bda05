"""The gan-mri command line, run as real subprocesses: the demo, every subcommand, bad input."""

import csv
import json
import logging
import os
import re
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pytest

# A user's environment: conftest.py quiets TensorFlow for the test process; the CLI must do it itself.
ENV = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
SUBCOMMANDS = ("demo", "simulate", "icbm152", "prepare", "train", "evaluate", "verify", "translate", "export")


def gan_mri(*args, timeout=600, env=None):
    """Runs `gan-mri ARGS` in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "gan_mri.cli", *map(str, args)], env=env or ENV,
                          capture_output=True, text=True, timeout=timeout)


NOT_OURS = ("WARNING", "Warning", "E0000", "I0000", "W0000", "oneDNN", "cuda", "absl", "tensorflow", "jax")
"""Fragments of the lines TensorFlow, Keras, absl and JAX print (native log lines such as
"I0000 ... Could not find cuda drivers", "E0000 ... failed call to cuInit", Python warnings such as
"UserWarning: ...", framework loggers such as "WARNING:absl:..."); none is gan-mri's own."""


def foreign_lines(result) -> list[str]:
    """The lines of a run's stdout and stderr that gan-mri did not write (its own log records,
    "WARNING gan_mri.<module>: ...", are its own)."""
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if not line.startswith(("WARNING gan_mri.", "ERROR gan_mri."))
            and any(fragment.lower() in line.lower() for fragment in NOT_OURS)]


def assert_fails(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A tiny demo run: 3 subjects at 32x32, width 8, one epoch."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = gan_mri("demo", "--out", out, "--subjects", 3, "--size", 32, "--epochs", 1, "--width", 8,
                     "--batch-size", 16)
    assert result.returncode == 0, result.stderr[-3000:]
    assert foreign_lines(result) == [], result.stderr[-3000:]
    return out, result.stdout


def test_help_of_every_subcommand():
    result = gan_mri("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout
        sub = gan_mri(name, "--help")
        assert sub.returncode == 0, sub.stderr
        assert sub.stdout.startswith(f"usage: gan-mri {name}")


def test_demo_writes_every_output_and_prints_the_ssim_table(demo):
    out, stdout = demo
    run = out / "run"
    for path in ("phantom/sub-01/anat/sub-01_T1w.nii.gz", "phantom/sub-03/anat/sub-03_dseg.nii.gz",
                 "dataset/manifest.json", "run/config.json", "run/model.keras", "run/history.csv",
                 "run/metrics/ssim_table.md", "run/evaluation/metrics.json",
                 "run/evaluation/translation_grid.png", "run/figures/loss_curves.png",
                 "run/export/1/saved_model.pb"):
        assert (out / path).exists(), path
    assert list((run / "logs" / "train").glob("events.out.tfevents.*"))
    config = json.loads((run / "config.json").read_text())
    assert (config["name"], config["structure_weight"]) == ("sa-enc-cl-sn", 0.0)  # the demo's, not the library's 30
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert set(metrics) == {"A2B", "B2A"} and -1 <= metrics["A2B"]["ssim"] <= 1
    assert "T1w -> T2w" in stdout and "T2w -> T1w" in stdout and "SSIM" in stdout
    assert f"{metrics['A2B']['ssim']:.4f}" in stdout
    assert str(run / "export" / "1") in stdout
    assert "| Epoch | SSIM T1 | SSIM T2 | SSIM T1 brain | SSIM T2 brain |" in stdout and "| 1 | " in stdout
    # One progress line per epoch, with the epoch's brain SSIM as metrics.csv has it; no progress bar.
    with open(run / "metrics" / "metrics.csv", newline="") as f:
        brain = {row["direction"]: float(row["ssim_brain"]) for row in csv.DictReader(f) if row["epoch"] == "1"}
    epoch_lines = [line for line in stdout.splitlines() if line.strip().startswith("epoch 1/1 (")]
    assert len(epoch_lines) == 1, stdout
    for direction, name in (("A2B", "T1w->T2w"), ("B2A", "T2w->T1w")):
        found = re.search(rf"brain SSIM {name} (-?[0-9.]+) \(baseline (-?[0-9.]+)\)", epoch_lines[0])
        assert found, epoch_lines[0]
        assert float(found.group(1)) == pytest.approx(brain[direction], abs=1e-4)
    assert "\x1b[" not in stdout and "━" not in stdout
    # The sim-to-real score on the real ICBM 2009c pair: a progress line, the table, the figure.
    real = json.loads((run / "evaluation" / "sim_to_real.json").read_text())
    assert set(real) == {"A2B", "B2A"} and (run / "evaluation" / "sim_to_real.png").is_file()
    assert re.search(r"sim-to-real, brain SSIM on the real ICBM 2009c pair: T1w->T2w [0-9.]+ \(whole head", stdout)
    model_row = next(line for line in stdout.splitlines() if line.startswith("  model "))
    assert model_row.split()[1] == f"{real['A2B']['model']['ssim_brain']:.4f}", stdout


def test_evaluate_translate_export_on_a_run(demo, tmp_path):
    out, _ = demo
    run, data = out / "run", out / "dataset"
    result = gan_mri("evaluate", run, "--data", data, "--out", tmp_path / "eval")
    assert result.returncode == 0, result.stderr[-2000:]
    assert foreign_lines(result) == []
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["B2A"]["n_slices"] > 0 and metrics["B2A"]["protocol"].startswith("per 2D axial slice")
    # Each test subject as a volume: 3D and through-plane scores, with their protocol, and the three views.
    volumes = json.loads((tmp_path / "eval" / "volumes.json").read_text())
    assert volumes["protocol"]["unit"].startswith("volume") and volumes["protocol"]["data_range"] == 1.0
    for direction in ("A2B", "B2A"):
        (subject,) = volumes[direction]["subjects"]
        assert subject.startswith("sub-") and isinstance(volumes[direction]["stripes"], bool)
        mean = volumes[direction]["mean"]
        # A model of a few steps: its SSIM can be below 0 (measured -0.03 / -0.06 in 2D), never outside [-1, 1].
        assert -1.0 <= mean["ssim3d_brain"] <= 1.0 and mean["neighbour_ratio"] > 0
        assert {"ssim_axial", "ssim_coronal", "ssim_sagittal", "psnr_brain", "mae_brain"} <= set(mean)
    assert (tmp_path / "eval" / "volume_views.png").stat().st_size > 5000
    real = json.loads((tmp_path / "eval" / "sim_to_real.json").read_text())
    for direction in ("A2B", "B2A"):
        assert real[direction]["image_shape"] == [32, 32]
        # The references do not depend on the model: the ceiling of 32-px slices is low, the oracle remap high;
        # the fair reference is the remap of the model's own training slices, which the run keeps.
        assert real[direction]["ceiling"]["ssim_brain"] < real[direction]["oracle_remap"]["ssim_brain"]
        assert 0.0 < real[direction]["remap_training"]["ssim_brain"] < 1.0
        assert 0.0 < real[direction]["model"]["ssim_brain"] < 1.0
    assert "real ICBM 2009c pair" in result.stdout and "lookup table fit on pair (oracle)" in result.stdout
    assert "remap of training data (fair)" in result.stdout

    t1w = out / "phantom" / "sub-02" / "anat" / "sub-02_T1w.nii.gz"  # brain-extracted: no registration
    result = gan_mri("translate", t1w, "--direction", "T1->T2", "--model", run, "--out", tmp_path / "t2w.nii.gz",
                     "--confidence")
    assert result.returncode == 0, result.stderr[-2000:]
    assert foreign_lines(result) == [] and result.stderr == ""
    assert result.stdout.split() == [str(tmp_path / "t2w.nii.gz"), str(tmp_path / "t2w_uncertainty.nii.gz")]
    source, translated = nib.load(t1w), nib.load(tmp_path / "t2w.nii.gz")
    assert nib.load(tmp_path / "t2w_uncertainty.nii.gz").shape == source.shape
    assert translated.shape == source.shape
    np.testing.assert_allclose(translated.affine, source.affine)

    result = gan_mri("export", run, "--out", tmp_path / "served" / "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert foreign_lines(result) == [] and result.stderr == ""
    assert (tmp_path / "served" / "1" / "saved_model.pb").is_file()
    assert_fails(gan_mri("export", run, "--out", tmp_path / "served" / "1"), "already exists")


def test_model_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "not-a-run").mkdir()
    volume = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4)), volume)
    assert_fails(gan_mri("translate", volume, "--direction", "T1->T2", "--model", tmp_path / "not-a-run",
                         "--out", tmp_path / "out.nii.gz"), "not a gan-mri run or model", "not-a-run")
    assert not (tmp_path / "out.nii.gz").exists()
    assert_fails(gan_mri("export", tmp_path / "not-a-run"), "not a gan-mri run or model")


def test_dataset_whose_shape_does_not_fit_the_model(demo, tmp_path):
    out, _ = demo
    prepared = gan_mri("prepare", out / "phantom", "--out", tmp_path / "d48", "--size", 48)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert_fails(gan_mri("evaluate", out / "run", "--data", tmp_path / "d48", "--out", tmp_path / "e"),
                 "image shape (48, 48) does not fit the model", "(32, 32)")
    assert not (tmp_path / "e").exists()
    assert_fails(gan_mri("train", "--config", out / "run" / "config.json", "--data", tmp_path / "d48",
                         "--out", tmp_path / "r", "--epochs", 1), "does not fit the model")
    assert not (tmp_path / "r").exists()


def test_direction_typo(demo, tmp_path):
    out, _ = demo
    t1w = out / "phantom" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    assert_fails(gan_mri("translate", t1w, "--direction", "T1->T3", "--model", out / "run",
                         "--out", tmp_path / "x.nii.gz"), "direction", "T1->T3", "T2->T1")
    assert not (tmp_path / "x.nii.gz").exists()


def test_existing_outputs_are_refused_without_overwrite(demo, tmp_path):
    out, _ = demo
    t1w = out / "phantom" / "sub-02" / "anat" / "sub-02_T1w.nii.gz"  # brain-extracted: no registration
    target = tmp_path / "t2w.nii.gz"
    target.write_bytes(b"precious")
    args = ("translate", t1w, "--direction", "A2B", "--model", out / "run", "--out", target)
    assert_fails(gan_mri(*args), str(target), "already exists", "--overwrite")
    assert target.read_bytes() == b"precious"
    assert gan_mri(*args, "--overwrite").returncode == 0
    assert nib.load(target).shape == nib.load(t1w).shape

    assert_fails(gan_mri("train", "--data", out / "dataset", "--out", out / "run", "--epochs", 1),
                 "already exists", "--resume", "--overwrite")
    assert_fails(gan_mri("demo", "--out", out), "already exists", "--overwrite")
    assert_fails(gan_mri("simulate", "--subjects", 1, "--out", out / "phantom"), str(out / "phantom"))


def test_volume_that_cannot_be_read(demo, tmp_path):
    out, _ = demo
    broken = tmp_path / "broken_T1w.nii.gz"
    broken.write_bytes((out / "phantom" / "sub-01" / "anat" / "sub-01_T1w.nii.gz").read_bytes()[:500])
    assert_fails(gan_mri("translate", broken, "--direction", "A2B", "--model", out / "run",
                         "--out", tmp_path / "o.nii.gz"), str(broken))
    assert not (tmp_path / "o.nii.gz").exists()
    assert_fails(gan_mri("translate", tmp_path / "missing.nii.gz", "--direction", "A2B", "--model", out / "run",
                         "--out", tmp_path / "o.nii.gz"), "missing.nii.gz", "does not exist")


def test_argument_errors_exit_nonzero_with_usage(tmp_path):
    result = gan_mri("train", "--data", tmp_path, "--out", tmp_path / "r", "--epochs", 0)
    assert result.returncode == 2 and "expected a positive integer" in result.stderr
    result = gan_mri("train", "--preset", "unit-typo", "--data", tmp_path, "--out", tmp_path / "r")
    assert result.returncode == 2
    # A bad demo setting is refused before the demo writes anything.
    assert_fails(gan_mri("demo", "--out", tmp_path / "d", "--structure-weight", -1),
                 "UNITConfig.structure_weight must be a number >= 0; found -1.0")
    assert not (tmp_path / "d").exists()


def test_translate_uses_the_shipped_model_by_default(demo, tmp_path):
    out, _ = demo
    t2w = out / "phantom" / "sub-02" / "anat" / "sub-02_T2w.nii.gz"
    result = gan_mri("translate", t2w, "--direction", "T2->T1", "--out", tmp_path / "t1w.nii.gz")
    assert result.returncode == 0, result.stderr[-2000:]
    source, translated = nib.load(t2w), nib.load(tmp_path / "t1w.nii.gz")
    assert translated.shape == source.shape
    np.testing.assert_allclose(translated.affine, source.affine)
    assert np.isfinite(translated.get_fdata()).all()


def test_default_output_is_gan_mris_own_and_verbose_shows_the_frameworks(demo, tmp_path):
    out, _ = demo
    t2w = out / "phantom" / "sub-02" / "anat" / "sub-02_T2w.nii.gz"
    # TensorFlow's native log goes to a temporary file while the command runs; none may be left.
    temp = tmp_path / "temp"
    temp.mkdir()
    env = dict(ENV, TMPDIR=str(temp))
    args = ("translate", t2w, "--direction", "T2->T1", "--model", out / "run")
    quiet = gan_mri(*args, "--out", tmp_path / "quiet.nii.gz", env=env)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr == "" and quiet.stdout == f"{tmp_path / 'quiet.nii.gz'}\n"
    assert list(temp.iterdir()) == []

    loud = gan_mri("-v", *args, "--out", tmp_path / "loud.nii.gz", env=env)
    assert loud.returncode == 0, loud.stderr[-2000:]
    # TensorFlow's native log lines ("I0000 00:00:... port.cc:153] oneDNN ...", absl's preamble)
    # and gan-mri's INFO records reach the terminal.
    native = [line for line in loud.stderr.splitlines()
              if re.match(r"[IWEF]\d{4} ", line) or "absl::InitializeLog" in line]
    assert native, loud.stderr[-2000:]
    assert "INFO gan_mri.inference: " in loud.stderr
    assert foreign_lines(loud) != []


def test_importing_the_cli_changes_no_global_state():
    code = ("import logging, os, warnings\n"
            "filters = list(warnings.filters)\n"
            "import gan_mri, gan_mri.cli, gan_mri.config\n"
            "assert warnings.filters == filters, 'warnings filters changed'\n"
            "assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ, 'TF_CPP_MIN_LOG_LEVEL set'\n"
            "assert logging.getLogger('tensorflow').level == logging.NOTSET\n"
            "assert 'keras' not in __import__('sys').modules, 'keras imported'\n"
            "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr


def test_main_in_process_restores_logger_levels(demo, capsys):
    from gan_mri.cli import main

    out, _ = demo
    tf_logger = logging.getLogger("tensorflow")
    before = tf_logger.level
    assert main(["verify", str(out / "dataset")]) == 0
    assert "ok (manifest schema" in capsys.readouterr().out
    assert tf_logger.level == before


def test_invalid_precision_is_named_by_the_config(demo, tmp_path):
    out, _ = demo
    # --precision has no argparse choices: the config names the list (gan_mri.config.PRECISIONS).
    from gan_mri.config import PRECISIONS

    result = gan_mri("train", "--precision", "bf16", "--data", out / "dataset", "--out", tmp_path / "r", "--epochs", 1)
    assert_fails(result, f"gan-mri train: error: UNITConfig.precision must be one of {list(PRECISIONS)}; found 'bf16'")
    assert not (tmp_path / "r").exists()
    assert "float32" in gan_mri("train", "--help").stdout


def test_train_without_standardization_keeps_none_in_the_run_and_the_model(demo, tmp_path):
    out, _ = demo
    result = gan_mri("train", "--data", out / "dataset", "--out", tmp_path / "r", "--epochs", 1, "--width", 8,
                     "--batch-size", 16, "--eval-epochs", "none", "--no-standardize")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "r" / "run.json").read_text())["standardization"] is None
    config = json.loads(zipfile.ZipFile(tmp_path / "r" / "model.keras").read("config.json"))
    assert config["config"]["standardization"] is None
    # The demo's own run trained standardized, with the dataset's reference.
    manifest = json.loads((out / "dataset" / "manifest.json").read_text())
    assert json.loads((out / "run" / "run.json").read_text())["standardization"] == manifest["standardization"]


def test_the_real_pair_as_a_bids_subject_prepared_test_only_evaluated_and_translated(demo, tmp_path):
    out, _ = demo
    result = gan_mri("icbm152", "--out", tmp_path / "real")
    assert result.returncode == 0, result.stderr[-2000:]
    anat = tmp_path / "real" / "sub-icbm152" / "ses-head" / "anat"
    assert (tmp_path / "real" / "COPYING").is_file()
    assert_fails(gan_mri("icbm152", "--out", tmp_path / "real"), "expected an empty or new folder")

    result = gan_mri("prepare", tmp_path / "real", "--out", tmp_path / "data", "--size", 32, "--test-fraction", 1)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["split"] == {"train": [], "test": ["sub-icbm152"]}
    assert manifest["counts"]["train_a"] == 0 and manifest["counts"]["test_a"] > 100
    assert {v["session"] for v in manifest["volumes"]} == {"ses-brain", "ses-head"}
    assert {v["brain_mask"] for v in manifest["volumes"] if v["contrast"] in "AB"} == {"given"}

    result = gan_mri("evaluate", out / "run", "--data", tmp_path / "data", "--out", tmp_path / "eval", "--no-real")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["A2B"]["n_slices"] == manifest["counts"]["test_a"]
    assert not any(key.startswith("baseline_") for key in metrics["A2B"])  # no training slices to fit it on
    assert not (tmp_path / "eval" / "sim_to_real.json").exists() and "remap baseline" not in result.stdout
    assert_fails(gan_mri("train", "--data", tmp_path / "data", "--out", tmp_path / "r", "--epochs", 1),
                 "no training slices (train_a, train_b empty; a test-only dataset")

    t1w, mask = anat / "sub-icbm152_ses-head_T1w.nii.gz", anat / "sub-icbm152_ses-head_desc-brain_mask.nii.gz"
    result = gan_mri("translate", t1w, "--direction", "T1->T2", "--model", out / "run", "--brain-mask", mask,
                     "--out", tmp_path / "t2w.nii.gz")
    assert result.returncode == 0, result.stderr[-2000:]
    assert nib.load(tmp_path / "t2w.nii.gz").shape == nib.load(t1w).shape
    assert_fails(gan_mri("translate", anat, "--direction", "T1->T2", "--model", out / "run", "--brain-mask", mask,
                         "--out", tmp_path / "folder"), "a brain mask goes with a single NIfTI input")
