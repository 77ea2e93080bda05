"""Image-quality and structure-fidelity metrics on [0, 1] images (pure numpy/scipy).

Conventions: images are 2-D slices, given as ``(H, W)``, ``(N, H, W)`` or channels-last
``(N, H, W, C)``; masks are boolean ``(H, W)``, ``(N, H, W)`` or ``(N, H, W, 1)``.
Metrics are computed per image (slice) and returned as float64 arrays of shape ``(N,)``;
multi-channel images are scored per channel and the channel scores averaged (as
``skimage.metrics.structural_similarity`` does with ``channel_axis``).

Tissue labels follow the data contract: 0 background, 1 CSF, 2 GM, 3 WM.
"""

import logging

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_multiotsu

from gan_mri import CONTRAST_OF_DOMAIN

logger = logging.getLogger(__name__)

SSIM_SIGMA = 1.5
# scipy/skimage truncate the Gaussian at ``truncate * sigma``: int(3.5 * 1.5 + 0.5) = 5,
# a radius-5 window, i.e. the 11x11 window of Wang et al. (2004).
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
# PSNR of a perfect reconstruction is infinite; flooring the MSE keeps averages finite (100 dB).
PSNR_MIN_MSE = 1e-10

TISSUE_LABELS = {"csf": 1, "gm": 2, "wm": 3}
# Intensity order of the three tissues, darkest first, per contrast (spin-echo MR physics).
TISSUE_ORDER = {
    "T1w": ("csf", "gm", "wm"),
    "T2w": ("wm", "gm", "csf"),
}
OTSU_BINS = 256


def to_unit_range(images):
    """Map model-space images from [-1, 1] to [0, 1]: ``(x + 1) / 2``, clipped to [0, 1].

    Args:
        images: array-like in [-1, 1].

    Returns:
        float64 array of the same shape in [0, 1].
    """
    return np.clip((np.asarray(images, dtype=np.float64) + 1.0) / 2.0, 0.0, 1.0)


def _as_batch(images, name):
    """Return ``images`` as float64 ``(N, H, W, C)``; raise ValueError naming ``name``."""
    array = np.asarray(images, dtype=np.float64)
    if array.ndim == 2:
        array = array[None, :, :, None]
    elif array.ndim == 3:
        array = array[:, :, :, None]
    elif array.ndim != 4:
        raise ValueError(
            f"{name}: expected shape (H, W), (N, H, W) or (N, H, W, C), found {array.shape}"
        )
    return array


def _as_mask(mask, shape, name="mask"):
    """Return ``mask`` as bool ``(N, H, W)`` matching image batch ``shape`` (N, H, W, C)."""
    array = np.asarray(mask).astype(bool)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.broadcast_to(array, (shape[0],) + array.shape)
    if array.shape != tuple(shape[:3]):
        raise ValueError(
            f"{name}: expected shape {tuple(shape[1:3])} or {tuple(shape[:3])} to match the images, "
            f"found {np.asarray(mask).shape}"
        )
    return array


def _check_pair(x, y):
    """Validate and batch a (prediction, reference) pair of images."""
    x = _as_batch(x, "x")
    y = _as_batch(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y: expected the same shape, found {x.shape} and {y.shape}")
    return x, y


def ssim_map(x, y, data_range=1.0, sigma=SSIM_SIGMA):
    """Structural similarity map of Wang et al. (2004), Gaussian-weighted, per pixel.

    With Gaussian local means mu, variances s^2 and covariance s_xy (population
    normalisation, window sigma 1.5 truncated to 11x11, reflect padding at the borders),
    ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))``
    with ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2``, L the data range. This is the map of
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, full=True)``, computed for a whole batch at once.

    Args:
        x, y: images of the same shape, (H, W), (N, H, W) or (N, H, W, C).
        data_range: L, the dynamic range of the images (1 for [0, 1] images).
        sigma: Gaussian window standard deviation.

    Returns:
        float64 array (N, H, W): the SSIM map, averaged over channels.

    Raises:
        ValueError: shapes differ or are not 2-D images.
    """
    x, y = _check_pair(x, y)
    # Filter only the two spatial axes, never across slices or channels.
    def local_mean(image):
        return ndimage.gaussian_filter(
            image, sigma=(0, sigma, sigma, 0), truncate=SSIM_TRUNCATE, mode="reflect"
        )

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x * mu_x
    var_y = local_mean(y * y) - mu_y * mu_y
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean(axis=-1)


def _masked_mean(values, mask):
    """Mean of ``values`` (N, H, W) inside ``mask`` per image; NaN where the mask is empty."""
    counts = mask.sum(axis=(1, 2))
    sums = np.where(mask, values, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def ssim(x, y, mask=None, data_range=1.0, sigma=SSIM_SIGMA):
    """Per-image SSIM, over the whole image or inside a mask.

    Whole image (``mask=None``): the mean of :func:`ssim_map` after cropping the
    5-pixel border that the 11x11 window cannot see fully, exactly as skimage reports
    its mean SSIM. Inside a mask: the mean of the (uncropped) SSIM map over the mask pixels.

    Args:
        x, y: images of the same shape (prediction, reference), in [0, data_range].
        mask: optional boolean brain mask, (H, W), (N, H, W) or (N, H, W, 1).
        data_range: L, the dynamic range (1 for [0, 1] images).
        sigma: Gaussian window standard deviation.

    Returns:
        float64 array (N,); NaN for images whose mask is empty.

    Raises:
        ValueError: shapes differ or the mask does not match the images.
    """
    x, y = _check_pair(x, y)
    full = ssim_map(x, y, data_range=data_range, sigma=sigma)
    if mask is not None:
        return _masked_mean(full, _as_mask(mask, x.shape))
    pad = int(SSIM_TRUNCATE * sigma + 0.5)
    if min(full.shape[1:]) <= 2 * pad:
        raise ValueError(
            f"x: expected images larger than {2 * pad}x{2 * pad} for the SSIM window, "
            f"found {full.shape[1:]}"
        )
    return full[:, pad:-pad, pad:-pad].mean(axis=(1, 2))


def mae(x, y, mask=None):
    """Per-image mean absolute error ``mean(|x - y|)``, whole image or inside a mask.

    Args:
        x, y: images of the same shape.
        mask: optional boolean mask, (H, W), (N, H, W) or (N, H, W, 1).

    Returns:
        float64 array (N,); NaN for images whose mask is empty.

    Raises:
        ValueError: shapes differ or the mask does not match the images.
    """
    x, y = _check_pair(x, y)
    error = np.abs(x - y).mean(axis=-1)
    if mask is None:
        return error.mean(axis=(1, 2))
    return _masked_mean(error, _as_mask(mask, x.shape))


def psnr(x, y, mask=None, data_range=1.0):
    """Per-image peak signal-to-noise ratio ``10 log10(L^2 / MSE)`` in dB.

    The MSE is over the whole image or the mask pixels (all channels); it is floored at
    ``1e-10`` so identical images score 100 dB instead of infinity.

    Args:
        x, y: images of the same shape.
        mask: optional boolean mask, (H, W), (N, H, W) or (N, H, W, 1).
        data_range: L, the dynamic range (1 for [0, 1] images).

    Returns:
        float64 array (N,); NaN for images whose mask is empty.

    Raises:
        ValueError: shapes differ or the mask does not match the images.
    """
    x, y = _check_pair(x, y)
    squared = ((x - y) ** 2).mean(axis=-1)
    if mask is None:
        mse = squared.mean(axis=(1, 2))
    else:
        mse = _masked_mean(squared, _as_mask(mask, x.shape))
    with np.errstate(invalid="ignore"):
        return 10.0 * np.log10(data_range**2 / np.maximum(mse, PSNR_MIN_MSE))


def image_metrics(x, y, mask, data_range=1.0):
    """All per-image quality metrics of a translation against its ground truth.

    Args:
        x: translated images in [0, 1], (N, H, W[, C]).
        y: ground-truth images, same shape.
        mask: boolean brain mask, (N, H, W) or (N, H, W, 1).
        data_range: dynamic range of the images.

    Returns:
        dict of float64 arrays (N,): ``ssim``, ``ssim_brain``, ``psnr``, ``psnr_brain``,
        ``mae``, ``mae_brain``.

    Raises:
        ValueError: shapes differ or the mask does not match the images.
    """
    x, y = _check_pair(x, y)
    brain = _as_mask(mask, x.shape)
    full = ssim_map(x, y, data_range=data_range)
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    return {
        "ssim": full[:, pad:-pad, pad:-pad].mean(axis=(1, 2)),
        "ssim_brain": _masked_mean(full, brain),
        "psnr": psnr(x, y, data_range=data_range),
        "psnr_brain": psnr(x, y, brain, data_range=data_range),
        "mae": mae(x, y),
        "mae_brain": mae(x, y, brain),
    }


def _contrast_name(contrast):
    """Accept a contrast ("T1w", "T2w") or a domain ("A", "B")."""
    name = CONTRAST_OF_DOMAIN.get(contrast, contrast)
    if name not in TISSUE_ORDER:
        raise ValueError(
            f"contrast: expected one of {sorted(TISSUE_ORDER) + sorted(CONTRAST_OF_DOMAIN)}, "
            f"found {contrast!r}"
        )
    return name


def segment_tissues(images, mask, contrast):
    """Segment CSF, GM and WM inside the brain mask by three-class Otsu thresholds.

    For each slice, ``skimage.filters.threshold_multiotsu(classes=3)`` (256-bin histogram
    of the intensities inside the mask) splits the brain into dark, middle and bright classes, which are named
    by the contrast: T1w CSF < GM < WM, T2w WM < GM < CSF. Applying the same method
    to a translation and to its ground truth makes their Dice a structure-fidelity score.
    Slices whose brain holds fewer than three distinct intensities cannot be split and
    are left all background (0).

    Args:
        images: images (N, H, W[, C]) (any intensity scale; channels are averaged).
        mask: boolean brain mask (N, H, W) or (N, H, W, 1).
        contrast: "T1w" or "T2w" (or the domain "A" / "B").

    Returns:
        int32 array (N, H, W) with 0 background, 1 CSF, 2 GM, 3 WM.

    Raises:
        ValueError: unknown contrast or mismatched shapes.
    """
    order = TISSUE_ORDER[_contrast_name(contrast)]
    batch = _as_batch(images, "images")
    brain = _as_mask(mask, batch.shape)
    gray = batch.mean(axis=-1)
    class_to_label = np.array([TISSUE_LABELS[tissue] for tissue in order], dtype=np.int32)
    labels = np.zeros(gray.shape, dtype=np.int32)
    for index in range(gray.shape[0]):
        values = gray[index][brain[index]]
        if np.unique(values).size < 3:
            logger.debug("slice %d: fewer than 3 intensities in the brain, not segmented", index)
            continue
        thresholds = threshold_multiotsu(values, classes=3, nbins=OTSU_BINS)
        # skimage returns the centre of the last histogram bin of each lower class; the
        # split Otsu chose is that bin's upper edge, half a bin higher.
        thresholds = thresholds + (values.max() - values.min()) / (2 * OTSU_BINS)
        classes = np.digitize(gray[index], bins=thresholds)
        labels[index] = np.where(brain[index], class_to_label[classes], 0)
    return labels


def tissue_overlap(predicted, reference):
    """Overlap counts per tissue, to pool Dice over many slices.

    Args:
        predicted, reference: integer label maps of the same shape (0 bg, 1 CSF, 2 GM, 3 WM).

    Returns:
        dict tissue name -> array [intersection, predicted voxels, reference voxels].

    Raises:
        ValueError: shapes differ.
    """
    predicted = np.asarray(predicted)
    reference = np.asarray(reference)
    if predicted.shape != reference.shape:
        raise ValueError(
            f"labels: expected predicted and reference of the same shape, "
            f"found {predicted.shape} and {reference.shape}"
        )
    counts = {}
    for tissue, label in TISSUE_LABELS.items():
        in_pred = predicted == label
        in_ref = reference == label
        counts[tissue] = np.array(
            [np.logical_and(in_pred, in_ref).sum(), in_pred.sum(), in_ref.sum()], dtype=np.int64
        )
    return counts


def dice_from_overlap(counts):
    """Dice ``2 |P & R| / (|P| + |R|)`` per tissue from :func:`tissue_overlap` counts.

    Args:
        counts: dict tissue -> [intersection, predicted, reference] (summed over slices).

    Returns:
        dict ``dice_<tissue>`` -> float; NaN for a tissue absent from both.
    """
    scores = {}
    for tissue, (intersection, n_pred, n_ref) in counts.items():
        total = n_pred + n_ref
        scores[f"dice_{tissue}"] = float(2.0 * intersection / total) if total else float("nan")
    return scores


def tissue_dice(predicted, reference):
    """Dice per tissue (CSF, GM, WM) between two label maps, pooled over all pixels.

    Args:
        predicted, reference: integer label maps of the same shape (0 bg, 1 CSF, 2 GM, 3 WM).

    Returns:
        dict with ``dice_csf``, ``dice_gm``, ``dice_wm``; NaN for a tissue absent from both.

    Raises:
        ValueError: shapes differ.
    """
    return dice_from_overlap(tissue_overlap(predicted, reference))
