"""Sim-to-real: how a model scores on a real T1w/T2w pair, beside what its training data teaches without a network.

A model trained on the phantom is only useful if it works on real scans. This module translates the real
ICBM 2009c pair that ships with gan-mri (:mod:`gan_mri.data.icbm152`) in both directions, brain-extracted
and whole-head, exactly as ``gan-mri translate`` would (:func:`gan_mri.inference.translate_volume`,
which finds the whole head's brain by registration), and scores it on the pair's 1 mm grid against the
real target, beside references of two kinds:

- fair, knowing no more than the model: ``remap_training``, the unpaired brain-intensity remap fitted on the
  model's own training slices (:class:`gan_mri.baseline.IntensityRemap`, kept with the model as
  ``model.training_remap``), applied to the real pair's slices as the model sees them (sliced and standardized
  as ``translate_volume`` does);
- oracles, knowing the answer: ``oracle_remap``, the source's brain intensities sent to the *real target's*
  inverted quantiles (quantile q of the source -> quantile 1 - q of the target); ``oracle_lookup_table``, the
  target's mean intensity for each of 256 source-intensity bins, fitted on this very pair (the best any pure
  intensity map does in mean squared error);
- ``ceiling``: the target itself cut into slices of the model's size and put back: what a model working at
  that slice size cannot exceed.

Scores, per direction (:func:`score_volume`, :func:`ventricle_ratio`, :func:`structure_ratios`):

- ``ssim_brain``: per axial slice with at least a quarter of the largest brain cross-section, the mean of
  the SSIM map (:func:`gan_mri.metrics.ssim`) inside the brain mask, after each volume is scaled by its
  brain's 1st and 99th percentiles to [0, 1]; averaged over slices;
- ``psnr_brain``: the same slices and scaling, PSNR inside the brain;
- ``ventricle_ratio``: mean intensity of the lateral ventricles over that of white matter, on the same
  [0, 1] scale (real T2w: bright ventricles, a large ratio; real T1w: dark ones, a small ratio), beside
  the truth's (``truth_ventricle_ratio``);
- ``structure_ratios``: the same for the deep grey nuclei, the hippocampus and the cortex
  (:data:`STRUCTURES`, CerebrA labels, over cerebral white matter), beside the truth's
  (``truth_structure_ratios``): whether the translation keeps the pallidum darker than white matter on T2w,
  the putamen between white and grey matter, and so on.

Results written before 2026-12-07 called the oracles ``remap`` and ``lookup_table``; :func:`scores_only`
reads them under the new names.

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
FAIR_REFERENCE = "remap_training"
ORACLES = ("oracle_remap", "oracle_lookup_table")
REFERENCES = (FAIR_REFERENCE, *ORACLES, "ceiling")
RESULTS = ("model", "model_whole_head") + REFERENCES
OLD_NAMES = {"remap": "oracle_remap", "lookup_table": "oracle_lookup_table"}
"""Names of the oracles in results written before 2026-12-07."""
LABELS = {"model": "model", "model_whole_head": "model, whole head",
          FAIR_REFERENCE: "remap of training data (fair)", "oracle_remap": "remap to target histogram (oracle)",
          "oracle_lookup_table": "lookup table fit on pair (oracle)", "ceiling": "ceiling {size} px"}
STRUCTURES = ("thalamus", "caudate", "putamen", "pallidum", "hippocampus", "cerebral cortex")
"""Structures whose mean over cerebral white matter's is compared with the truth's (CerebrA labels)."""
STRUCTURE_COLUMNS = {"thalamus": "thal", "caudate": "caud", "putamen": "put", "pallidum": "pall",
                     "hippocampus": "hipp", "cerebral cortex": "ctx"}


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


def structure_ratios(volume: np.ndarray, pair) -> dict:
    """Mean over each of :data:`STRUCTURES` / mean over cerebral white matter, on the brain's [0, 1] scale
    (``pair``: the :class:`gan_mri.data.icbm152.RealPair` whose grid ``volume`` is on)."""
    unit = scale_to_unit(volume, pair.brain_mask)
    white = max(float(unit[pair.structure_mask("cerebral white matter")].mean()), 1e-6)
    return {name: float(unit[pair.structure_mask(name)].mean()) / white for name in STRUCTURES}


def remap_volume(model, remap, image, direction: Direction) -> np.ndarray:
    """The volume ``image`` translated by the intensity remap ``remap`` (a :class:`gan_mri.baseline.IntensityRemap`
    in the model's input space) instead of by the model: sliced and standardized as ``model`` would see it, the
    brain remapped slice by slice, put back on the volume's grid."""
    from gan_mri.inference import model_slices

    stack, slices = model_slices(model, image, direction)
    remapped = remap.translate(slices, direction, stack.brain_mask)
    return np.asarray(stack.to_volume(remapped).dataobj, dtype=np.float32)


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


def sim_to_real(model, directions=DIRECTIONS, batch_size: int = 16, training_remap=None) -> dict:
    """Scores ``model`` on the shipped real ICBM 2009c pair beside the references (module docstring).

    Args:
        model: a trained gan-mri model (``translate``, ``image_shape``).
        directions: subset of ``("A2B", "B2A")``.
        batch_size: slices per call to the model.
        training_remap: the fair reference's remap; by default ``model.training_remap`` (kept by ``train``). A
            model without one (trained before 2026-12-07) gets no fair reference unless it is given.

    Returns:
        direction -> ``{"model": scores, "model_whole_head": scores, "remap_training": ...,
        "oracle_remap": ..., "oracle_lookup_table": ..., "ceiling": ..., "truth_ventricle_ratio": float,
        "truth_structure_ratios": {structure: float}, "image_shape": [H, W]}``, each ``scores`` a dict with
        ``ssim_brain``, ``psnr_brain``, ``ventricle_ratio`` and ``structure_ratios``; plus ``"volumes"``:
        direction -> ``{"source", "source_whole_head", "model", "model_whole_head", "truth", "truth_whole_head",
        "brain_mask", "basal_ganglia_z"}`` for figures (not for JSON).
    """
    from gan_mri.inference import translate_volume

    pair = load_icbm152()
    mask, ventricles = pair.brain_mask, pair.ventricles
    head_mask = whole_head_brain_mask()
    white_matter = pair.dseg == 3
    image_shape = tuple(int(v) for v in model.image_shape)
    remap = training_remap if training_remap is not None else getattr(model, "training_remap", None)
    if remap is None:
        logger.warning("sim-to-real: the model keeps no remap of its training data (trained before 2026-12-07?): "
                       "no fair reference, only the oracles")
    basal_ganglia = int(np.argmax(pair.structure_mask("putamen").sum(axis=(0, 1))))
    results, arrays = {}, {}
    for direction in directions:
        direction = Direction(direction)
        source_contrast, target_contrast = direction.source_contrast, direction.target_contrast
        source, truth = pair.array(source_contrast), pair.array(target_contrast)
        outputs = {
            "model": np.asarray(translate_volume(model, pair.image(source_contrast), direction,
                                                 batch_size=batch_size).dataobj, dtype=np.float32),
            "model_whole_head": np.asarray(translate_volume(model, pair.image(source_contrast, skull_stripped=False),
                                                            direction, batch_size=batch_size,
                                                            brain_mask=head_mask).dataobj, dtype=np.float32),
        }
        if remap is not None:
            outputs[FAIR_REFERENCE] = remap_volume(model, remap, pair.image(source_contrast), direction)
        outputs.update({
            "oracle_remap": inverse_quantile_remap(source, truth, mask),
            "oracle_lookup_table": lookup_table(source, truth, mask),
            "ceiling": resolution_ceiling(pair.image(target_contrast), image_shape,
                                          slice_settings(getattr(model, "preprocessing", None))["spacing"]),
        })
        entry = {"image_shape": list(image_shape),
                 "truth_ventricle_ratio": ventricle_ratio(truth, mask, ventricles, white_matter),
                 "truth_structure_ratios": structure_ratios(truth, pair)}
        for name, output in outputs.items():
            entry[name] = dict(score_volume(output, truth, mask),
                               ventricle_ratio=ventricle_ratio(output, mask, ventricles, white_matter),
                               structure_ratios=structure_ratios(output, pair))
        results[str(direction)] = entry
        arrays[str(direction)] = {"source": source, "source_whole_head": pair.array(source_contrast, False),
                                  "model": outputs["model"], "model_whole_head": outputs["model_whole_head"],
                                  "truth": truth, "truth_whole_head": pair.array(target_contrast, False),
                                  "brain_mask": mask, "basal_ganglia_z": basal_ganglia}
        fair = entry.get(FAIR_REFERENCE, {}).get("ssim_brain", float("nan"))
        logger.info("sim-to-real %s: brain SSIM %.4f (remap of training data %.4f; oracles %.4f, %.4f; ceiling %.4f)",
                    direction, entry["model"]["ssim_brain"], fair, entry["oracle_remap"]["ssim_brain"],
                    entry["oracle_lookup_table"]["ssim_brain"], entry["ceiling"]["ssim_brain"])
    results["volumes"] = arrays
    return results


def scores_only(results: dict) -> dict:
    """``results`` of :func:`sim_to_real` (or a ``sim_to_real.json``, old or new) without the ``"volumes"`` arrays,
    the oracles under their current names (:data:`OLD_NAMES`)."""
    return {key: {OLD_NAMES.get(name, name): value for name, value in entry.items()}
            for key, entry in results.items() if key != "volumes"}


def format_sim_to_real(results: dict) -> str:
    """The sim-to-real table as the CLI prints it: per direction the model (brain-extracted and whole-head input),
    the fair reference and the oracles, the ceiling: brain SSIM, PSNR and each structure's intensity over white
    matter's (lateral ventricles, then :data:`STRUCTURES`) beside the truth's."""
    columns = ["vent"] + [STRUCTURE_COLUMNS[name] for name in STRUCTURES]
    header = f"{'real ICBM 2009c pair':<37}{'SSIM brain':>11}{'PSNR dB':>9}" + "".join(f"{c:>6}" for c in columns)
    lines = [header, "-" * len(header), f"{'':<57}(each structure's mean / white matter's)"]
    for direction, entry in scores_only(results).items():
        size = "x".join(str(v) for v in entry["image_shape"])
        truth = [entry["truth_ventricle_ratio"]] + [entry.get("truth_structure_ratios", {}).get(n, float("nan"))
                                                    for n in STRUCTURES]
        lines.append(f"{Direction(direction).source_contrast} -> {Direction(direction).target_contrast}"
                     f"{'truth':>{37 + 20 - 12}}" + "".join(f"{v:>6.2f}" for v in truth))
        for key in RESULTS:
            if key not in entry:
                continue
            row = entry[key]
            ratios = [row["ventricle_ratio"]] + [row.get("structure_ratios", {}).get(n, float("nan")) for n in STRUCTURES]
            lines.append(f"  {LABELS[key].format(size=size):<35}{row['ssim_brain']:>11.4f}{row['psnr_brain']:>9.2f}"
                         + "".join(f"{v:>6.2f}" for v in ratios))
    return "\n".join(lines)


def sim_to_real_line(scores: dict) -> str:
    """One line: the model's brain SSIM on the real pair per direction, beside the fair reference (the remap of
    its training data), the better oracle and the resolution ceiling."""
    parts = []
    for direction, entry in scores_only(scores).items():
        oracle = max(entry[name]["ssim_brain"] for name in ORACLES)
        fair = f"remap of training data {entry[FAIR_REFERENCE]['ssim_brain']:.3f}, " if FAIR_REFERENCE in entry else ""
        parts.append(f"{Direction(direction).source_contrast}->{Direction(direction).target_contrast} "
                     f"{entry['model']['ssim_brain']:.3f} (whole head {entry['model_whole_head']['ssim_brain']:.3f}; "
                     f"{fair}oracle intensity map {oracle:.3f}; ceiling {entry['ceiling']['ssim_brain']:.3f})")
    return "sim-to-real, brain SSIM on the real ICBM 2009c pair: " + "; ".join(parts)
