"""The ablation runner (the paper's Table 7): two tiny presets, tables, figure, skip and resume."""

import csv
import logging
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from gan_mri import ablation, cli
from gan_mri.ablation import PAPER_PRESETS, PAPER_SSIM, run_ablation
from gan_mri.results import BASELINE_ROW, read_metrics_csv, ssim_table
from gan_mri.training import RunFolder

PRESETS = ("unit", "sa-enc-cl-sn")
SETTINGS = dict(epochs=2, eval_epochs=[1, 2], batch_size=16, seed=0, overrides={"base_width": 8},
                max_eval_batches=1, verbose=0)
TABLE_A_HEADER = ["Preset", "SSIM T1", "SSIM T2", "SSIM T1 brain", "SSIM T2 brain", "Paper SSIM T1", "Paper SSIM T2"]
TABLE_B_HEADER = ["Epoch", "unit SSIM T1", "unit SSIM T2", "sa-enc-cl-sn SSIM T1", "sa-enc-cl-sn SSIM T2"]


def read_csv(path):
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def finished(tiny_dataset, tmp_path_factory):
    """Both presets trained for two epochs (evaluated at 1 and 2) into one ablation folder."""
    out = tmp_path_factory.mktemp("ablation") / "table7"
    return run_ablation(tiny_dataset, out, PRESETS, **SETTINGS)


def test_paper_presets_are_the_eight_of_table_7a():
    assert PAPER_PRESETS == ("unit-rgb", "unit", "unit-cl", "unit-sn", "sa-gen", "sa-gen-cl", "sa-gen-cl-sn",
                             "sa-enc-cl-sn")
    assert set(PAPER_SSIM) == set(PAPER_PRESETS)
    assert PAPER_SSIM["sa-enc-cl-sn"] == (0.7443, 0.6834) and PAPER_SSIM["unit-rgb"] == (0.7563, 0.716)


def test_table_7a_has_one_row_per_preset_beside_the_paper(finished):
    assert finished.trained == PRESETS and finished.skipped == () and finished.resumed == ()
    header, rows = read_csv(finished.out_dir / "table_7a.csv")
    assert header == TABLE_A_HEADER
    assert [row[0] for row in rows] == [*PRESETS, BASELINE_ROW]
    *rows, baseline = rows
    # The no-learning remap scored on the same test slices: a value per column, no paper value.
    assert all(0.0 < float(value) <= 1.0 for value in baseline[1:5]) and baseline[5:] == ["", ""]
    for row in rows:
        ours = [float(value) for value in row[1:5]]
        assert all(-1.0 <= value <= 1.0 for value in ours), row
        assert (float(row[5]), float(row[6])) == PAPER_SSIM[row[0]]
        # The final-epoch values are those the preset's own run folder recorded.
        *epochs, remap = ssim_table(read_metrics_csv(finished.runs[row[0]] / "metrics" / "metrics.csv"))
        final = epochs[-1]
        assert final["Epoch"] == 2 and remap["Epoch"] == BASELINE_ROW
        # Table 7(a)'s baseline row is the baseline every run scored on the same test slices.
        np.testing.assert_allclose([float(v) for v in baseline[1:5]], [remap[t] for t in TABLE_A_HEADER[1:5]],
                                   atol=1e-6)
        np.testing.assert_allclose(ours, [final[t] for t in TABLE_A_HEADER[1:5]], atol=1e-6)

    markdown = (finished.out_dir / "table_7a.md").read_text().splitlines()
    assert markdown[0] == "| " + " | ".join(TABLE_A_HEADER) + " |"
    assert [line.split("|")[1].strip() for line in markdown[2:5]] == [*PRESETS, BASELINE_ROW]
    assert markdown[3].split("|")[6:8] == [" 0.7443 ", " 0.6834 "]
    assert "after 2 epoch(s)" in markdown[-1] and "after 75 epochs on HCP" in markdown[-1]


def test_table_7b_has_one_row_per_evaluated_epoch(finished):
    header, rows = read_csv(finished.out_dir / "table_7b.csv")
    assert header == TABLE_B_HEADER
    assert [row[0] for row in rows] == ["1", "2"]
    values = np.array([[float(v) for v in row[1:]] for row in rows])
    assert np.all(np.isfinite(values)) and np.all(np.abs(values) <= 1.0)
    # Epoch 2 of Table 7(b) is Table 7(a)'s SSIM T1/T2.
    _, table_a = read_csv(finished.out_dir / "table_7a.csv")
    np.testing.assert_allclose(values[1], [float(v) for row in table_a[:len(PRESETS)] for v in row[1:3]])
    markdown = (finished.out_dir / "table_7b.md").read_text().splitlines()
    assert markdown[0] == "| " + " | ".join(TABLE_B_HEADER) + " |" and len(markdown) == 4
    assert finished.table_b[0]["Epoch"] == 1 and set(finished.table_b[0]) == set(TABLE_B_HEADER)


def test_each_preset_is_a_complete_run_folder_and_the_figure_is_drawn(finished):
    for name in PRESETS:
        run = RunFolder.open(finished.out_dir / name)
        assert run.epochs_done() == 2 and run.model_file.is_file()
        assert run.load_config().name == name and run.load_config().base_width == 8
        assert run.load_config().image_shape == (32, 32)
        assert run.read_run_info()["seed"] == 0 and run.read_run_info()["batch_size"] == 16
    with Image.open(finished.files["figure"]) as figure:
        assert figure.size == (1400, 500)
    assert '"base_width": 8' in finished.files["settings"].read_text()


def test_rerun_skips_finished_presets(finished, tiny_dataset, monkeypatch, caplog):
    models = {name: (finished.out_dir / name / "model.keras").stat().st_mtime_ns for name in PRESETS}
    before = (finished.out_dir / "table_7a.csv").read_text()

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished preset was trained again")

    monkeypatch.setattr(ablation.training, "train", must_not_train)
    with caplog.at_level(logging.INFO, logger="gan_mri.ablation"):
        again = run_ablation(tiny_dataset, finished.out_dir, PRESETS, **SETTINGS)
    assert again.skipped == PRESETS and again.trained == () and again.resumed == ()
    for name in PRESETS:
        assert f"preset {name}: finished (2 epochs)" in caplog.text
        assert (finished.out_dir / name / "model.keras").stat().st_mtime_ns == models[name]
    assert (finished.out_dir / "table_7a.csv").read_text() == before


def test_cli_reprints_the_finished_ablation(finished, tiny_dataset, monkeypatch, capsys):
    monkeypatch.setattr(ablation.training, "train", lambda *a, **k: pytest.fail("trained again"))
    status = cli.main(["ablation", "--data", str(tiny_dataset.path), "--out", str(finished.out_dir),
                       "--presets", ",".join(PRESETS), "--epochs", "2", "--eval-epochs", "1,2",
                       "--batch-size", "16", "--width", "8", "--max-eval-batches", "1"])
    printed = capsys.readouterr().out
    assert status == 0
    assert printed.startswith("| " + " | ".join(TABLE_A_HEADER) + " |")
    assert "skipped: unit, sa-enc-cl-sn" in printed and str(finished.out_dir / "table_7b.csv") in printed


def test_interrupted_preset_is_resumed(finished, tiny_dataset, tmp_path, monkeypatch):
    # Killed after the last checkpoint but before model.keras was written.
    shutil.copytree(finished.out_dir / "unit", tmp_path / "unit")
    (tmp_path / "unit" / "model.keras").unlink()
    calls = []
    real_train = ablation.training.train

    def recording_train(*args, **kwargs):
        calls.append(kwargs)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(ablation.training, "train", recording_train)
    result = run_ablation(tiny_dataset, tmp_path, ["unit"], **SETTINGS)
    assert result.resumed == ("unit",) and result.trained == ()
    assert len(calls) == 1 and calls[0]["resume"] is True and calls[0]["epochs"] == 2
    assert (tmp_path / "unit" / "model.keras").is_file()
    assert [row["Preset"] for row in result.table_a] == ["unit", BASELINE_ROW]
    assert result.table_a[0]["SSIM T1"] == pytest.approx(finished.table_a[0]["SSIM T1"])


def test_settings_that_differ_from_a_finished_run_are_refused(finished, tiny_dataset, tmp_path):
    copy = shutil.copytree(tiny_dataset.path, tmp_path / "copy")
    with pytest.raises(ValueError, match=r"table7/unit: trained with .*'dataset': '.*asks for .*copy'"):
        run_ablation(copy, finished.out_dir, PRESETS, **SETTINGS)
    with pytest.raises(ValueError, match=r"table7/unit: trained with .*'seed': 0.*asks for .*'seed': 1"):
        run_ablation(tiny_dataset, finished.out_dir, PRESETS, **{**SETTINGS, "seed": 1})
    with pytest.raises(ValueError, match=r"config differs from this ablation's in \['base_width'\]"):
        run_ablation(tiny_dataset, finished.out_dir, PRESETS, **{**SETTINGS, "overrides": {"base_width": 16}})


def test_bad_arguments_fail_before_training(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match=r"unknown preset\(s\) \['unit-xl'\]; valid presets are \['unit-rgb', "
                                         r"'unit', .*'sa-enc-cl-sn', 'cyclegan'\]"):
        run_ablation(tiny_dataset, tmp_path / "a", ["unit", "unit-xl"], epochs=1)
    with pytest.raises(ValueError, match=r"expected each preset once, found \['unit'\]"):
        run_ablation(tiny_dataset, tmp_path / "a", ["unit", "unit"], epochs=1)
    with pytest.raises(ValueError, match=r"eval_epochs: expected 1-based epochs in \[1, 2\], found \[1, 3\]"):
        run_ablation(tiny_dataset, tmp_path / "a", PRESETS, epochs=2, eval_epochs=[1, 3])
    with pytest.raises(ValueError, match=r"Unknown UNITConfig fields \['widht'\]"):
        run_ablation(tiny_dataset, tmp_path / "a", PRESETS, epochs=1, overrides={"widht": 8})
    with pytest.raises(FileNotFoundError):
        run_ablation(tmp_path / "missing", tmp_path / "a", PRESETS, epochs=1)
    assert not (tmp_path / "a").exists()


def test_table_7a_requires_the_final_epoch():
    per_epoch = {"unit": [{"Epoch": 1, "SSIM T1": 0.5, "SSIM T2": 0.4, "SSIM T1 brain": 0.3, "SSIM T2 brain": 0.2}]}
    with pytest.raises(ValueError, match=r"preset unit: expected an evaluation at epoch 2, found epochs \[1\]"):
        ablation.table_7a(per_epoch, 2)
    row = ablation.table_7a(per_epoch, 1)[0]
    assert row["Paper SSIM T1"] == 0.7617 and row["SSIM T2 brain"] == 0.2
    custom = ablation.table_7a({"custom": per_epoch["unit"]}, 1)[0]
    assert math.isnan(custom["Paper SSIM T1"])
