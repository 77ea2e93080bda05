"""Tests for gan_mri.metrics: SSIM against skimage, PSNR, MAE, tissue segmentation and Dice."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gan_mri import metrics

SKIMAGE_SSIM = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
T1_INTENSITY = {1: 0.25, 2: 0.5, 3: 0.8}  # CSF < GM < WM
T2_INTENSITY = {1: 0.9, 2: 0.55, 3: 0.3}  # WM < GM < CSF


def tissue_layout(size=32, center=(16, 16), radii=(7, 11, 13)):
    """Concentric tissues: WM disc, GM ring, CSF ring; labels 0 bg, 1 CSF, 2 GM, 3 WM."""
    rows, cols = np.mgrid[:size, :size]
    radius = np.hypot(rows - center[0], cols - center[1])
    labels = np.zeros((size, size), dtype=np.int32)
    labels[radius < radii[2]] = 1
    labels[radius < radii[1]] = 2
    labels[radius < radii[0]] = 3
    return labels


def render(labels, intensity):
    image = np.zeros(labels.shape)
    for label, value in intensity.items():
        image[labels == label] = value
    return image


def structured_pair(seed):
    """A smooth, edge-rich image and a blurred, noisy, shifted version of it."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:48, :48] / 48.0
    clean = 0.5 + 0.3 * np.sin(6 * rows) * np.cos(4 * cols) + 0.2 * render(tissue_layout(48, (24, 24), (9, 15, 20)), T1_INTENSITY)
    clean = np.clip(clean / clean.max(), 0, 1)
    degraded = np.roll(clean, 1, axis=1) * 0.9 + 0.05 * rng.standard_normal(clean.shape)
    return clean, np.clip(degraded, 0, 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage_on_random_and_structured_images(seed):
    rng = np.random.default_rng(seed)
    random_x, random_y = rng.random((40, 40)), rng.random((40, 40))
    structured_x, structured_y = structured_pair(seed)
    for x, y in [(random_x, random_y), (structured_x, structured_y), (structured_x, structured_x * 0.7)]:
        expected = structural_similarity(x, y, **SKIMAGE_SSIM)
        assert metrics.ssim(x, y)[0] == pytest.approx(expected, abs=1e-3)
        _, expected_map = structural_similarity(x, y, full=True, **SKIMAGE_SSIM)
        np.testing.assert_allclose(metrics.ssim_map(x, y)[0], expected_map, atol=1e-6)
    # Structured pairs must score between the extremes, not trivially 0 or 1.
    assert 0.2 < metrics.ssim(structured_x, structured_y)[0] < 0.95


def test_ssim_batched_and_multichannel_match_per_image_skimage():
    rng = np.random.default_rng(3)
    x = rng.random((5, 32, 32, 3))
    y = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    expected = [structural_similarity(a, b, channel_axis=-1, **SKIMAGE_SSIM) for a, b in zip(x, y)]
    np.testing.assert_allclose(metrics.ssim(x, y), expected, atol=1e-6)
    assert metrics.ssim(x[..., :1], x[..., :1]).tolist() == pytest.approx([1.0] * 5)


def test_ssim_inside_mask_is_mean_of_map_over_mask():
    x, y = structured_pair(4)
    mask = tissue_layout(48, (24, 24), (9, 15, 20)) > 0
    _, expected_map = structural_similarity(x, y, full=True, **SKIMAGE_SSIM)
    assert metrics.ssim(x, y, mask=mask)[0] == pytest.approx(expected_map[mask].mean(), abs=1e-9)
    # Mask given per slice with a channel axis, and an empty mask -> NaN.
    masks = np.stack([mask, np.zeros_like(mask)])[..., None]
    values = metrics.ssim(np.stack([x, x]), np.stack([y, y]), mask=masks)
    assert values[0] == pytest.approx(expected_map[mask].mean(), abs=1e-9)
    assert np.isnan(values[1])


def test_psnr_and_mae_whole_image_and_mask():
    rng = np.random.default_rng(5)
    x = rng.random((2, 24, 24))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    mask = np.zeros((24, 24), dtype=bool)
    mask[4:12, 6:20] = True
    expected_psnr = [peak_signal_noise_ratio(b, a, data_range=1.0) for a, b in zip(x, y)]
    np.testing.assert_allclose(metrics.psnr(x, y), expected_psnr, rtol=1e-9)
    inside_mse = ((x - y)[:, mask] ** 2).mean(axis=1)
    np.testing.assert_allclose(metrics.psnr(x, y, mask), 10 * np.log10(1.0 / inside_mse), rtol=1e-9)
    np.testing.assert_allclose(metrics.mae(x, y), np.abs(x - y).mean(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(metrics.mae(x, y, mask), np.abs(x - y)[:, mask].mean(axis=1), rtol=1e-12)
    assert metrics.psnr(x, x).tolist() == [100.0, 100.0]


def test_image_metrics_keys_and_consistency():
    x, y = structured_pair(6)
    mask = tissue_layout(48, (24, 24), (9, 15, 20)) > 0
    values = metrics.image_metrics(x[None], y[None], mask[None])
    assert sorted(values) == sorted(["ssim", "ssim_brain", "psnr", "psnr_brain", "mae", "mae_brain"])
    assert values["ssim"][0] == pytest.approx(structural_similarity(x, y, **SKIMAGE_SSIM), abs=1e-9)
    assert values["ssim_brain"][0] == pytest.approx(metrics.ssim(x, y, mask)[0], abs=1e-12)
    assert values["mae_brain"][0] == pytest.approx(np.abs(x - y)[mask].mean())


def test_to_unit_range_maps_and_clips():
    np.testing.assert_allclose(metrics.to_unit_range([-1.0, 0.0, 1.0, 1.5]), [0.0, 0.5, 1.0, 1.0])


def test_bad_shapes_raise_value_error_naming_the_argument():
    with pytest.raises(ValueError, match=r"x and y: expected the same shape, found \(1, 8, 8, 1\) and \(1, 8, 9, 1\)"):
        metrics.ssim(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match=r"mask: expected shape \(16, 16\)"):
        metrics.mae(np.zeros((16, 16)), np.zeros((16, 16)), mask=np.ones((8, 8), bool))
    with pytest.raises(ValueError, match=r"x: expected shape \(H, W\), \(N, H, W\) or \(N, H, W, C\), found \(16,\)"):
        metrics.psnr(np.zeros(16), np.zeros(16))
    with pytest.raises(ValueError, match=r"x: expected images larger than 10x10"):
        metrics.ssim(np.zeros((8, 8)), np.zeros((8, 8)))


@pytest.mark.parametrize("contrast, intensity", [("T1w", T1_INTENSITY), ("T2w", T2_INTENSITY), ("A", T1_INTENSITY), ("B", T2_INTENSITY)])
def test_segment_tissues_recovers_known_layout(contrast, intensity):
    labels = tissue_layout()
    rng = np.random.default_rng(7)
    image = render(labels, intensity) + 0.02 * rng.standard_normal(labels.shape)
    segmented = metrics.segment_tissues(image[None, ..., None], (labels > 0)[None], contrast)
    assert segmented.shape == (1, 32, 32)
    np.testing.assert_array_equal(segmented[0], labels)


def test_segment_tissues_flat_slice_and_bad_contrast():
    mask = tissue_layout() > 0
    flat = metrics.segment_tissues(np.full((1, 32, 32), 0.4), mask[None], "T1w")
    assert not flat.any()
    with pytest.raises(ValueError, match=r"contrast: expected one of .*found 'PD'"):
        metrics.segment_tissues(np.zeros((1, 32, 32)), mask[None], "PD")


def test_tissue_dice_identical_perturbed_and_known_value():
    labels = tissue_layout()
    assert metrics.tissue_dice(labels, labels) == {"dice_csf": 1.0, "dice_gm": 1.0, "dice_wm": 1.0}
    # A WM disc 2 pixels larger: WM still overlaps well, the thin GM ring loses more.
    perturbed = labels.copy()
    perturbed[tissue_layout(radii=(9, 11, 13)) == 3] = 3
    scores = metrics.tissue_dice(perturbed, labels)
    assert scores["dice_csf"] == 1.0
    assert 0.5 < scores["dice_gm"] < 0.9 and scores["dice_gm"] < scores["dice_wm"] < 1.0
    # Hand-computed: WM predicted {0,1}, reference {1,2} -> 2*1/(2+2) = 0.5.
    predicted, reference = np.array([3, 3, 0]), np.array([0, 3, 3])
    dice = metrics.tissue_dice(predicted, reference)
    assert dice["dice_wm"] == 0.5 and np.isnan(dice["dice_gm"])
    with pytest.raises(ValueError, match=r"labels: expected predicted and reference of the same shape"):
        metrics.tissue_dice(np.zeros(3), np.zeros(4))
