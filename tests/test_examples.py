"""Every script in examples/ runs as it is (with tiny settings), so they cannot rot."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib

from gan_mri.pretrained import pretrained_model_path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def run_example(name, *args):
    result = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], env=ENV,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_quickstart(tmp_path):
    stdout = run_example("quickstart.py", "--out", tmp_path, "--subjects", 3, "--size", 32, "--width", 8,
                         "--epochs", 1)
    assert "dataset slices:" in stdout and "A2B: SSIM" in stdout and "B2A: SSIM" in stdout
    assert "translated batch: (4, 32, 32, 1)" in stdout
    assert (tmp_path / "quickstart.keras").is_file()


def test_train_bids(tiny_phantom, tmp_path):
    stdout = run_example("train_bids.py", tiny_phantom, "--out", tmp_path / "run", "--size", 32, "--width", 8,
                         "--epochs", 1, "--batch-size", 16, "--eval-epochs", 1)
    assert (tmp_path / "run" / "model.keras").is_file()
    assert (tmp_path / "run-data" / "manifest.json").is_file()
    assert "| Epoch | SSIM T1 | SSIM T2" in stdout and "| 1 |" in stdout


def test_translate_volume_with_the_shipped_model(tiny_phantom, tmp_path):
    # sub-02 is brain-extracted: its brain mask is the imaged object, where sub-01's whole head would
    # cost a template registration (tests/test_brain_mask.py and the CLI tests cover that path).
    volume = tiny_phantom / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
    stdout = run_example("translate_volume.py", volume, "--direction", "T1->T2", "--out", tmp_path / "t2w.nii.gz")
    assert nib.load(tmp_path / "t2w.nii.gz").shape == nib.load(volume).shape
    assert "same affine: True" in stdout


def test_export_for_serving_with_the_shipped_model(tmp_path):
    height, width = json.loads((pretrained_model_path() / "config.json").read_text())["image_shape"]
    shape = re.escape(f"(1, {height}, {width}, 1)")
    stdout = run_example("export_for_serving.py", "--out", tmp_path / "gan_mri" / "1")
    assert (tmp_path / "gan_mri" / "1" / "saved_model.pb").is_file()
    assert "signatures: ['a2b', 'a2b_uncertainty', 'b2a', 'b2a_uncertainty', 'serving_default']" in stdout
    for name in ("serving_default", "a2b", "b2a", "a2b_uncertainty", "b2a_uncertainty"):
        assert re.search(rf"{name}: input {shape} -> translated {shape}", stdout), stdout
    for name in ("a2b_uncertainty", "b2a_uncertainty"):
        assert re.search(rf"{name}: .* uncertainty {shape}, range \[0\.\d+, \d\.\d+\]", stdout), stdout
