"""Whole-volume metrics: 3D SSIM, through-plane SSIM and the neighbouring-slice ratio that sees stripes."""

import numpy as np
import pytest

from gan_mri.volume_metrics import STRIPE_RATIO, volume_scores, without_volumes


@pytest.fixture(scope="module")
def volume():
    """A smooth 'head' in [0, 1]: 24 slices of 32x32, a brain mask inside it."""
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in (24, 32, 32)], indexing="ij")
    radius = np.sqrt(x**2 + y**2 + (z / 1.2) ** 2)
    image = np.clip(0.8 - 0.5 * radius + 0.1 * np.sin(6 * x) * np.cos(5 * y), 0, 1) * (radius < 0.95)
    return image, radius < 0.85


def test_a_perfect_translation_scores_one_everywhere(volume):
    image, mask = volume
    scores = volume_scores(image, image, mask)
    for name in ("ssim3d_brain", "ssim_axial", "ssim_coronal", "ssim_sagittal", "neighbour_ratio"):
        assert scores[name] == pytest.approx(1.0), name
    assert scores["mae_brain"] == 0.0 and scores["psnr_brain"] >= 90 and scores["n_slices"] == 24


def test_stripes_raise_the_neighbour_ratio_and_cost_through_plane_ssim_more_than_axial(volume):
    image, mask = volume
    striped = np.clip(image + 0.06 * (np.arange(24) % 2 - 0.5)[:, None, None], 0, 1)  # every other slice brighter
    scores = volume_scores(striped, image, mask)
    assert scores["neighbour_ratio"] > STRIPE_RATIO
    assert scores["ssim_sagittal"] < scores["ssim_axial"] - 0.05 and scores["ssim_coronal"] < scores["ssim_axial"] - 0.05
    # A smooth, uniform error is no stripe: the ratio stays 1.
    assert volume_scores(np.clip(image * 0.9, 0, 1), image, mask)["neighbour_ratio"] == pytest.approx(0.9, abs=0.02)


def test_a_short_stack_has_no_3d_ssim_and_json_gets_null(volume):
    image, mask = volume
    scores = volume_scores(image[:5], image[:5], mask[:5])
    assert np.isnan(scores["ssim3d_brain"]) and scores["ssim_axial"] == pytest.approx(1.0)
    cleaned = without_volumes({"protocol": {"unit": "volume"}, "A2B": {"mean": scores, "volumes": {"input": image}}})
    assert cleaned["A2B"]["mean"]["ssim3d_brain"] is None and "volumes" not in cleaned["A2B"]
