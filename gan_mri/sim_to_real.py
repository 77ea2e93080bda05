"""Sim-to-real: how a model scores on a real T1w/T2w pair, beside what needs no learning.

A model trained on the phantom is only useful if it works on real scans. This module translates the real
ICBM 2009c pair that ships with gan-mri (:mod:`gan_mri.data.icbm152`) in both directions, brain-extracted
and whole-head, exactly as ``gan-mri translate`` would (:func:`gan_mri.inference.translate_volume`,
which finds the whole head's brain by registration), and scores it on the pair's 1 mm grid against the
real target, beside three references:

- ``remap``: the source's brain intensities sent to the target's inverted quantiles (quantile q of the
  source -> quantile 1 - q of the target): no learning, but it knows the target's histogram;
- ``lookup_table``: the target's mean intensity for each of 256 source-intensity bins, fitted on this
  very pair: the best any pure intensity map does in mean squared error;
- ``ceiling``: the target itself cut into slices of the model's size and put back: what a model
  working at that slice size cannot exceed.

Scores, per direction (:func:`score_volume`, :func:`ventricle_ratio`):

- ``ssim_brain``: per axial slice with at least a quarter of the largest brain cross-section, the mean of
  the SSIM map (:func:`gan_mri.metrics.ssim`) inside the brain mask, after each volume is scaled by its
  brain's 1st and 99th percentiles to [0, 1]; averaged over slices;
- ``psnr_brain``: the same slices and scaling, PSNR inside the brain;
- ``ventricle_ratio``: mean intensity of the lateral ventricles over that of white matter, on the same
  [0, 1] scale (real T2w: bright ventricles, a large ratio; real T1w: dark ones, a small ratio), beside
  the truth's (``truth_ventricle_ratio``).

Example:
    >>> from gan_mri.sim_to_real import sim_to_real
    >>> scores = sim_to_real(model)                             # doctest: +SKIP
    >>> scores["A2B"]["model"]["ssim_brain"]                    # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from gan_mri import DIRECTIONS, Direction, metrics
from gan_mri.data import volumes
from gan_mri.data.brain_mask import brain_mask as find_brain_mask
from gan_mri.data.icbm152 import load_icbm152, load_icbm152_mask
from gan_mri.data.preprocessing import slice_settings

logger = logging.getLogger(__name__)

SCALE_PERCENTILES = (1.0, 99.0)
MIN_BRAIN_FRACTION = 0.25
LOOKUP_BINS = 256
REFERENCES = ("remap", "lookup_table", "ceiling")
RESULTS = ("model", "model_whole_head") + REFERENCES


def scale_to_unit(volume: np.ndarray, brain_mask: np.ndarray) -> np.ndarray:
    """``(x - p1) / (p99 - p1)`` clipped to [0, 1], with p1 and p99 the brain's 1st and 99th percentiles."""
    low, high = np.percentile(volume[brain_mask], SCALE_PERCENTILES)
    return np.clip((volume - low) / max(float(high - low), 1e-12), 0.0, 1.0)


def scored_slices(brain_mask: np.ndarray) -> np.ndarray:
    """Axial indices (RAS axis 2) whose brain area is at least a quarter of the largest one."""
    return volumes.select_slices(brain_mask, MIN_BRAIN_FRACTION)


def score_volume(prediction: np.ndarray, truth: np.ndarray, brain_mask: np.ndarray) -> dict:
    """Brain SSIM and PSNR of a translated volume against the real one (see the module docstring).

    Args:
        prediction, truth: 3D arrays in RAS voxel order, same shape.
        brain_mask: boolean brain mask of that shape.

    Returns:
        ``{"ssim_brain": float, "psnr_brain": float}``.

    Raises:
        ValueError: if the shapes differ.
    """
    if np.shape(prediction) != np.shape(truth) or np.shape(truth) != np.shape(brain_mask):
        raise ValueError(f"prediction, truth, brain_mask: expected one shape, found {np.shape(prediction)}, "
                         f"{np.shape(truth)} and {np.shape(brain_mask)}")
    indices = scored_slices(brain_mask)

    def axial(volume):
        return np.moveaxis(np.asarray(volume)[:, :, indices], 2, 0)

    x, y = axial(scale_to_unit(prediction, brain_mask)), axial(scale_to_unit(truth, brain_mask))
    mask = axial(brain_mask)
    return {"ssim_brain": float(np.nanmean(metrics.ssim(x, y, mask=mask))),
            "psnr_brain": float(np.nanmean(metrics.psnr(x, y, mask=mask)))}


def ventricle_ratio(volume: np.ndarray, brain_mask: np.ndarray, ventricles: np.ndarray,
                    white_matter: np.ndarray) -> float:
    """Mean over the ventricles / mean over white matter, on the brain's [0, 1] scale."""
    unit = scale_to_unit(volume, brain_mask)
    return float(unit[ventricles].mean() / max(float(unit[white_matter].mean()), 1e-6))


def inverse_quantile_remap(source: np.ndarray, target: np.ndarray, brain_mask: np.ndarray) -> np.ndarray:
    """Brain voxels of ``source`` at quantile q get the ``target``'s brain quantile 1 - q; 0 elsewhere."""
    values = source[brain_mask]
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    quantile = ranks / max(values.size - 1, 1)
    ordered = np.sort(target[brain_mask])
    output = np.zeros(source.shape, dtype=np.float32)
    output[brain_mask] = ordered[np.round((1.0 - quantile) * (ordered.size - 1)).astype(np.int64)]
    return output


def lookup_table(source: np.ndarray, target: np.ndarray, brain_mask: np.ndarray, bins: int = LOOKUP_BINS) -> np.ndarray:
    """Each brain voxel of ``source`` gets the mean ``target`` intensity of its source-intensity bin (bins of
    equal voxel count), fitted on this pair; 0 elsewhere."""
    values, goal = source[brain_mask], target[brain_mask]
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1))
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    means = np.bincount(index, weights=goal, minlength=bins) / np.maximum(np.bincount(index, minlength=bins), 1)
    output = np.zeros(source.shape, dtype=np.float32)
    output[brain_mask] = means[index]
    return output


def resolution_ceiling(target_image, image_shape, spacing: float | None = None) -> np.ndarray:
    """The target cut into axial slices of ``image_shape`` (as a model sees them: ``spacing`` mm pixels, or
    the volume's field of view fitted in) and put back on its grid."""
    stack = volumes.volume_to_slices(target_image, image_shape, keep_all=True, spacing=spacing)
    return np.asarray(stack.to_volume(stack.slices).dataobj, dtype=np.float32)


WHOLE_HEAD_MASK = "whole_head_brain_mask"
"""Name of the shipped registered brain mask of the whole-head T1w (``gan_mri/data/icbm152/<name>.nii.xz``)."""


def registered_whole_head_mask() -> np.ndarray:
    """The brain of the whole-head ICBM 2009c T1w as ``gan-mri translate`` finds it: the registration of
    the phantom's template (:func:`gan_mri.data.brain_mask.brain_mask`, 15-30 s on 2 CPU cores)."""
    pair = load_icbm152()
    mask, source = find_brain_mask(pair.image("T1w", skull_stripped=False), "T1w")
    logger.info("whole-head ICBM 2009c T1w: brain mask by %s, Dice %.3f with the template's", source,
                2.0 * np.sum(mask & pair.brain_mask) / (np.sum(mask) + np.sum(pair.brain_mask)))
    return mask


@functools.lru_cache(maxsize=1)
def whole_head_brain_mask() -> np.ndarray:
    """:func:`registered_whole_head_mask`, as shipped with the pair (the registration is deterministic, so
    every evaluation would compute the same mask; tests/test_brain_mask.py checks the shipped one against
    a fresh registration). Both directions use it, as a user with a T1w/T2w pair of one session would."""
    return load_icbm152_mask(WHOLE_HEAD_MASK)


def sim_to_real(model, directions=DIRECTIONS, batch_size: int = 16) -> dict:
    """Scores ``model`` on the shipped real ICBM 2009c pair beside the references (module docstring).

    Args:
        model: a trained gan-mri model (``translate``, ``image_shape``).
        directions: subset of ``("A2B", "B2A")``.
        batch_size: slices per call to the model.

    Returns:
        direction -> ``{"model": scores, "model_whole_head": scores, "remap": ..., "lookup_table": ...,
        "ceiling": ..., "truth_ventricle_ratio": float, "image_shape": [H, W]}``, each ``scores`` a dict
        with ``ssim_brain``, ``psnr_brain`` and ``ventricle_ratio``; plus ``"volumes"``: direction ->
        ``{"source", "source_whole_head", "model", "model_whole_head", "truth", "truth_whole_head",
        "brain_mask"}`` arrays for figures (not for JSON).
    """
    from gan_mri.inference import translate_volume

    pair = load_icbm152()
    mask, ventricles = pair.brain_mask, pair.ventricles
    head_mask = whole_head_brain_mask()
    white_matter = pair.dseg == 3
    image_shape = tuple(int(v) for v in model.image_shape)
    results, arrays = {}, {}
    for direction in directions:
        source_contrast, target_contrast = Direction(direction).source_contrast, Direction(direction).target_contrast
        source, truth = pair.array(source_contrast), pair.array(target_contrast)
        outputs = {
            "model": np.asarray(translate_volume(model, pair.image(source_contrast), direction,
                                                 batch_size=batch_size).dataobj, dtype=np.float32),
            "model_whole_head": np.asarray(translate_volume(model, pair.image(source_contrast, skull_stripped=False),
                                                            direction, batch_size=batch_size,
                                                            brain_mask=head_mask).dataobj, dtype=np.float32),
            "remap": inverse_quantile_remap(source, truth, mask),
            "lookup_table": lookup_table(source, truth, mask),
            "ceiling": resolution_ceiling(pair.image(target_contrast), image_shape,
                                          slice_settings(getattr(model, "preprocessing", None))["spacing"]),
        }
        entry = {"image_shape": list(image_shape),
                 "truth_ventricle_ratio": ventricle_ratio(truth, mask, ventricles, white_matter)}
        for name, output in outputs.items():
            entry[name] = dict(score_volume(output, truth, mask),
                               ventricle_ratio=ventricle_ratio(output, mask, ventricles, white_matter))
        results[direction] = entry
        arrays[direction] = {"source": source, "source_whole_head": pair.array(source_contrast, False),
                             "model": outputs["model"], "model_whole_head": outputs["model_whole_head"],
                             "truth": truth, "truth_whole_head": pair.array(target_contrast, False),
                             "brain_mask": mask}
        logger.info("sim-to-real %s: brain SSIM %.4f (remap %.4f, lookup table %.4f, ceiling %.4f)", direction,
                    entry["model"]["ssim_brain"], entry["remap"]["ssim_brain"], entry["lookup_table"]["ssim_brain"],
                    entry["ceiling"]["ssim_brain"])
    results["volumes"] = arrays
    return results


def scores_only(results: dict) -> dict:
    """``results`` of :func:`sim_to_real` without the ``"volumes"`` arrays (what JSON holds)."""
    return {key: value for key, value in results.items() if key != "volumes"}


def format_sim_to_real(results: dict) -> str:
    """The sim-to-real table as the CLI prints it: per direction the model (brain-extracted and whole-head
    input) and the three references, brain SSIM, PSNR and the ventricle/white-matter ratio beside the truth's."""
    header = f"{'real ICBM 2009c pair':<24}{'SSIM brain':>11}{'PSNR dB':>9}{'vent/WM':>9}"
    lines = [header, "-" * len(header)]
    names = {"model": "model", "model_whole_head": "model, whole head", "remap": "remap (no learning)",
             "lookup_table": "lookup table (fit)", "ceiling": "ceiling {size} px"}
    for direction, entry in scores_only(results).items():
        size = "x".join(str(v) for v in entry["image_shape"])
        lines.append(f"{Direction(direction).source_contrast} -> {Direction(direction).target_contrast}"
                     f"{'truth':>{len(header) - 12}}{entry['truth_ventricle_ratio']:>9.2f}")
        for key in RESULTS:
            row = entry[key]
            lines.append(f"  {names[key].format(size=size):<22}{row['ssim_brain']:>11.4f}{row['psnr_brain']:>9.2f}"
                         f"{row['ventricle_ratio']:>9.2f}")
    return "\n".join(lines)


def sim_to_real_line(scores: dict) -> str:
    """One line: the model's brain SSIM on the real pair per direction, beside the best no-learning reference
    (the better of the remap and the lookup table) and the resolution ceiling."""
    parts = []
    for direction, entry in scores_only(scores).items():
        best = max(entry["remap"]["ssim_brain"], entry["lookup_table"]["ssim_brain"])
        parts.append(f"{Direction(direction).source_contrast}->{Direction(direction).target_contrast} "
                     f"{entry['model']['ssim_brain']:.3f} (whole head {entry['model_whole_head']['ssim_brain']:.3f}, "
                     f"intensity map {best:.3f}, ceiling {entry['ceiling']['ssim_brain']:.3f})")
    return "sim-to-real, brain SSIM on the real ICBM 2009c pair: " + "; ".join(parts)
