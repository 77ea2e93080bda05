"""GAN-MRI PNG folders end to end through the real `gan-mri` command: prepare, train, evaluate, translate.

The folders follow GAN-MRI's layout: trainA/ (T1w) and trainB/ (T2w) unpaired, testA/ and testB/
paired by file name; the T1w slices are stored as RGB (as GAN-MRI's are), the T2w ones as gray.
The slices are 40x48, so preparing at 32x32 and translating back exercise the fitting both ways.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")
HEIGHT, WIDTH = 40, 48
# Tissue intensities of the synthetic head: (white matter, grey matter, CSF) per contrast.
TISSUE_LEVELS = {"A": (0.85, 0.55, 0.15), "B": (0.35, 0.55, 0.95)}
TRAIN_SLICES, TEST_SLICES = 12, 4


def gan_mri(*args, cwd):
    """Runs `gan-mri ARGS` in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "gan_mri.cli", *map(str, args)], env=ENV, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def head_slice(rng, contrast):
    """A 40x48 synthetic axial slice in [0, 1]: an ellipse of GM around WM with CSF ventricles."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    cy, cx = HEIGHT / 2 + rng.uniform(-2, 2), WIDTH / 2 + rng.uniform(-2, 2)
    ry, rx = rng.uniform(14, 17), rng.uniform(18, 21)
    radius = np.sqrt(((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2)
    ventricles = np.sqrt(((y - cy) / 4) ** 2 + ((np.abs(x - cx) - 4) / 2.5) ** 2) < 1
    wm, gm, csf = TISSUE_LEVELS[contrast]
    image = np.where(radius < 1, gm, 0.0)
    image = np.where(radius < rng.uniform(0.6, 0.75), wm, image)
    image = np.where(ventricles, csf, image)
    return np.clip(image + rng.normal(0, 0.02, image.shape) * (radius < 1), 0, 1)


def write_png(path, image, rgb):
    levels = np.round(image * 255).astype(np.uint8)
    picture = Image.fromarray(levels).convert("RGB") if rgb else Image.fromarray(levels)
    picture.save(path)


@pytest.fixture
def png_source(tmp_path):
    """trainA/ trainB/ (unpaired, different names) and testA/ testB/ (paired by name)."""
    rng = np.random.default_rng(5)
    root = tmp_path / "gan-mri-pngs"
    for folder in ("trainA", "trainB", "testA", "testB"):
        (root / folder).mkdir(parents=True)
    for index in range(TRAIN_SLICES):
        write_png(root / "trainA" / f"t1_{index:03d}.png", head_slice(rng, "A"), rgb=True)
        write_png(root / "trainB" / f"t2_{index:03d}.png", head_slice(rng, "B"), rgb=False)
    for index in range(TEST_SLICES):
        state = rng.bit_generator.state  # the same head in both contrasts
        write_png(root / "testA" / f"slice_{index:02d}.png", head_slice(rng, "A"), rgb=True)
        rng.bit_generator.state = state
        write_png(root / "testB" / f"slice_{index:02d}.png", head_slice(rng, "B"), rgb=False)
    return root


def test_png_folders_prepare_train_evaluate_translate(png_source, tmp_path):
    result = gan_mri("prepare", png_source, "--out", "data", "--size", 32, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["layout"] == "png" and manifest["image_shape"] == [32, 32]
    assert {k: manifest["counts"][k] for k in ("train_a", "train_b", "test_a", "test_b")} == {
        "train_a": TRAIN_SLICES, "train_b": TRAIN_SLICES, "test_a": TEST_SLICES, "test_b": TEST_SLICES}

    result = gan_mri("train", "--preset", "unit", "--data", "data", "--out", "run", "--epochs", 1,
                     "--batch-size", 4, "--width", 8, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # stdout is a pipe here, as in a Slurm log: one line for the epoch, no progress-bar redraws.
    assert "\r" not in result.stdout and "\b" not in result.stdout
    epoch_lines = [line for line in result.stdout.splitlines() if " - d_loss: " in line]
    assert len(epoch_lines) == 1, result.stdout
    assert (tmp_path / "run" / "model.keras").is_file()
    assert json.loads((tmp_path / "run" / "checkpoints" / "state.json").read_text())["epoch"] == 1

    result = gan_mri("evaluate", "run", "--data", "data", "--no-real", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "T1w -> T2w" in result.stdout and "T2w -> T1w" in result.stdout
    metrics = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert set(metrics) == {"A2B", "B2A"}
    for values in metrics.values():
        assert values["n_slices"] == TEST_SLICES
        assert -1.0 <= values["ssim"] <= 1.0 and -1.0 <= values["ssim_brain"] <= 1.0
        assert np.isfinite(values["psnr"]) and 0.0 <= values["mae"] <= 1.0

    result = gan_mri("translate", png_source / "testA", "--direction", "T1->T2", "--model", "run",
                     "--out", "translated", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = [f"slice_{index:02d}_A2B.png" for index in range(TEST_SLICES)]
    assert sorted(p.name for p in (tmp_path / "translated").iterdir()) == expected
    assert sorted(os.path.basename(line) for line in result.stdout.split()) == expected
    for name in expected:
        with Image.open(tmp_path / "translated" / name) as picture:
            assert picture.size == (WIDTH, HEIGHT) and picture.mode == "L"
            translated = np.asarray(picture)
        with Image.open(png_source / "testA" / name.replace("_A2B", "")) as picture:
            source = np.asarray(picture.convert("L"))
        # A translation, not a copy of the input.
        assert not np.array_equal(translated, source)

    result = gan_mri("translate", png_source / "testA", "--direction", "T1->T2", "--model", "run",
                     "--out", "translated", cwd=tmp_path)
    assert result.returncode == 2 and "slice_00_A2B.png" in result.stderr
