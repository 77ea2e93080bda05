"""Tests for gan_mri.plots: the PNGs exist, decode, have the documented pixel sizes, and bad input fails."""

import matplotlib.image as mpimg
import numpy as np
import pytest

from gan_mri import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path):
    """Decode a PNG and check it is a real, non-blank image; return (height, width)."""
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.dtype == np.float32 and image.shape[2] == 4
    assert image[..., :3].std() > 0.01  # something was drawn
    return image.shape[:2]


def examples(n=2, size=24, channels=1):
    rng = np.random.default_rng(0)
    def batch():
        return rng.random((n, size, size, channels)).astype(np.float32)
    return {direction: {key: batch() for key in ("input", "translation", "reconstruction", "truth")} for direction in ("A2B", "B2A")}


def test_translation_grid_size_and_content(tmp_path):
    path = plots.translation_grid(examples(n=2), tmp_path / "figs" / "grid.png")
    assert path == tmp_path / "figs" / "grid.png"
    # 2 directions x 2 slices = 4 rows of 2 inches; 5 columns (4 images + error map) of 2 inches.
    assert read_png(path) == (800, 1000)
    rgb = plots.translation_grid({"A2B": examples(n=1, channels=3)["A2B"]}, tmp_path / "rgb.png", dpi=50)
    assert read_png(rgb) == (100, 500)


def test_translation_grid_bad_input(tmp_path):
    bad = examples(n=1)
    del bad["B2A"]["truth"]
    with pytest.raises(ValueError, match=r"examples\['B2A'\]: expected keys .* missing \['truth'\]"):
        plots.translation_grid(bad, tmp_path / "grid.png")
    mismatched = examples(n=1)
    mismatched["A2B"]["translation"] = mismatched["A2B"]["translation"][:, :20]
    with pytest.raises(ValueError, match=r"examples\['A2B'\]: expected equal \(n, H, W, C\) shapes"):
        plots.translation_grid(mismatched, tmp_path / "grid.png")
    with pytest.raises(ValueError, match=r"examples: expected at least one direction"):
        plots.translation_grid({}, tmp_path / "grid.png")
    assert not (tmp_path / "grid.png").exists()


def test_loss_curves_from_dict_and_keras_csv(tmp_path):
    history = {"g_loss": [5.0, 4.0, 3.5], "d_loss": [1.0, 0.9, 0.8], "val_g_loss": [5.5, 4.4, 3.9], "val_ssim_a2b": [0.1, 0.2, 0.3]}
    path = plots.loss_curves(history, tmp_path / "loss.png")
    # Two loss panels (val_ losses are drawn in their train panel): 2 x 4 by 1 x 3 inches.
    assert read_png(path) == (300, 800)
    # A Keras CSVLogger file: 0-based epoch column, "NA" cells for missing values.
    csv_path = tmp_path / "history.csv"
    csv_path.write_text(
        "epoch,cycle_loss,d_loss,g_loss,kl_loss,recon_loss,val_ssim_a2b\n"
        "0,2.0,1.0,9.0,0.5,3.0,NA\n1,1.5,0.9,8.0,0.4,2.0,0.4\n"
    )
    path = plots.loss_curves(csv_path, tmp_path / "loss_csv.png", dpi=50)
    # Four losses -> 3 panels in the first row, 1 in the second: 3 x 4 by 2 x 3 inches at 50 dpi.
    assert read_png(path) == (300, 600)
    path = plots.loss_curves(csv_path, tmp_path / "one.png", keys=["g_loss"], dpi=50)
    assert read_png(path) == (150, 200)


def test_loss_curves_bad_input_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match=r"history: expected at least one epoch of history, found none"):
        plots.loss_curves({"g_loss": []}, tmp_path / "loss.png")
    with pytest.raises(ValueError, match=r"history: expected at least one epoch"):
        plots.loss_curves({}, tmp_path / "loss.png")
    with pytest.raises(ValueError, match=r"history: expected a column 'cycle_loss', found columns \['d_loss', 'g_loss'\]"):
        plots.loss_curves({"g_loss": [1.0], "d_loss": [1.0]}, tmp_path / "loss.png", keys=["g_loss", "cycle_loss"])
    with pytest.raises(ValueError, match=r"history: expected a column ending in 'loss'"):
        plots.loss_curves({"ssim": [0.5]}, tmp_path / "loss.png")
    empty_csv = tmp_path / "empty.csv"
    empty_csv.write_text("epoch,g_loss\n")
    with pytest.raises(ValueError, match=r"empty.csv: expected at least one epoch"):
        plots.loss_curves(empty_csv, tmp_path / "loss.png")
    bad_cell = tmp_path / "bad.csv"
    bad_cell.write_text("epoch,g_loss\n0,oops\n")
    with pytest.raises(ValueError, match=r"column 'g_loss': expected numbers, found 'oops'"):
        plots.loss_curves(bad_cell, tmp_path / "loss.png")
    with pytest.raises(FileNotFoundError, match=r"missing.csv"):
        plots.loss_curves(tmp_path / "missing.csv", tmp_path / "loss.png")
    assert not (tmp_path / "loss.png").exists()


def test_ssim_curves_from_metrics_csv(tmp_path):
    metrics_csv = tmp_path / "metrics.csv"
    metrics_csv.write_text(
        "epoch,direction,ssim,ssim_brain,psnr\n"
        "1,A2B,0.30,0.25,15\n1,B2A,0.35,0.30,16\n3,A2B,0.55,0.50,20\n3,B2A,0.60,0.52,21\n"
    )
    assert read_png(plots.ssim_curves(metrics_csv, tmp_path / "ssim.png")) == (300, 800)
    assert read_png(plots.ssim_curves(metrics_csv, tmp_path / "psnr.png", metrics=("psnr",), dpi=50)) == (150, 200)
    with pytest.raises(ValueError, match=r"metrics.csv: expected a column 'mae', found columns \['direction', 'epoch', 'psnr', 'ssim', 'ssim_brain'\]"):
        plots.ssim_curves(metrics_csv, tmp_path / "mae.png", metrics=("mae",))
    header_only = tmp_path / "header.csv"
    header_only.write_text("epoch,direction,ssim,ssim_brain\n")
    with pytest.raises(ValueError, match=r"header.csv: expected at least one row"):
        plots.ssim_curves(header_only, tmp_path / "none.png")
    assert not (tmp_path / "mae.png").exists() and not (tmp_path / "none.png").exists()
