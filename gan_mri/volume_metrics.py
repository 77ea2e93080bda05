"""Whole-volume metrics: is a 2D model's translated volume right, and consistent from slice to slice?

Per-slice axial SSIM cannot see stripes: a 2D model translates each axial slice on its own, and slices
that are each plausible can disagree with their neighbours, which shows in sagittal and coronal views.
:func:`evaluate_volumes` stacks each test subject's slices (all of its prepared test slices, in slice
order: the brain's extent on the dataset's slice grid), translates them, and scores the stack as a volume
against the truth:

- ``ssim3d_brain``: 3D SSIM (Gaussian window, sigma 1.5 voxels, scikit-image), its map averaged over the
  brain; ``psnr_brain``, ``mae_brain`` over the brain voxels of the volume;
- ``ssim_axial``, ``ssim_coronal``, ``ssim_sagittal``: 2D SSIM maps of the volume cut along each axis
  (:func:`gan_mri.metrics.ssim_map`), averaged over all brain pixels of those planes. Through-plane
  planes mix in-plane pixels with slice steps; a model with stripes scores lower there than axially;
- ``neighbour_ratio``: mean |slice k+1 - slice k| over the brain, of the translation divided by that of
  the truth: 1 is ideal, above 1 the translation changes more from slice to slice than anatomy does;
- for test subjects with lesion labels, lesion fidelity (:mod:`gan_mri.lesions`): lesion contrast against
  the truth's, the share of lesions still detectable, hallucinated lesion-like spots.

Intensities as in the slice metrics: model space [-1, 1] mapped to [0, 1], data range 1.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from gan_mri import DIRECTIONS, Direction, metrics
from gan_mri.lesions import lesion_fidelity

PROTOCOL = {
    "unit": "volume: each test subject's prepared slices stacked in slice order",
    "mask": "brain (the test set's brain mask)",
    "normalization": "model space [-1, 1] mapped to [0, 1]: the dataset's per-volume percentile normalization, "
                     "standardized as the model's training data when it was",
    "data_range": 1.0,
    "ssim_window": "Gaussian, sigma 1.5 voxels (3D for ssim3d_brain, 2D per plane otherwise)",
}
SLICE_PROTOCOL = ("per 2D axial slice, averaged over slices; brain: the test set's brain mask; intensities: model "
                  "space [-1, 1] mapped to [0, 1]; data_range 1")
"""The protocol of :func:`gan_mri.evaluation.evaluate`'s per-slice metrics, written beside them."""
STRIPE_RATIO = 1.2
"""A neighbour ratio above this is stripes (issue 19: then a 2.5D input is worth trying)."""
_SSIM_3D = dict(data_range=1.0, gaussian_weights=True, sigma=metrics.SSIM_SIGMA, use_sample_covariance=False)
_MIN_SLICES = 11  # the 3D Gaussian window's extent


def _subject_rows(dataset) -> dict[str, np.ndarray]:
    """Test-set rows of each subject, in slice order."""
    index = dataset.manifest["test_index"]
    subjects, slices = np.asarray(index["subject"]), np.asarray(index["slice"])
    return {str(name): np.flatnonzero(subjects == name)[np.argsort(slices[subjects == name], kind="stable")]
            for name in dict.fromkeys(index["subject"])}


def _plane_ssim(translated: np.ndarray, truth: np.ndarray, mask: np.ndarray, axis: int) -> float:
    """SSIM of the volume's planes across ``axis``, averaged over their brain pixels."""
    planes = [np.moveaxis(volume, axis, 0) for volume in (translated, truth, mask)]
    keep = planes[2].any(axis=(1, 2))
    if not keep.any():
        return float("nan")
    values = metrics.ssim_map(planes[0][keep], planes[1][keep])
    return float(values[planes[2][keep]].mean())


def volume_scores(translated: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict:
    """The metrics of the module docstring for one volume.

    Args:
        translated, truth: ``(slices, H, W)`` in [0, 1].
        mask: bool ``(slices, H, W)``.
    """
    translated, truth = np.asarray(translated, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    scores = {"n_slices": int(len(truth))}
    if len(truth) >= _MIN_SLICES:
        _, ssim_volume = structural_similarity(translated, truth, full=True, **_SSIM_3D)
        scores["ssim3d_brain"] = float(ssim_volume[mask].mean())
    else:
        scores["ssim3d_brain"] = float("nan")
    # One image of all slices side by side: the brain PSNR and MAE of the whole volume.
    flat = [array.reshape(1, -1, array.shape[-1]) for array in (translated, truth, mask)]
    scores["psnr_brain"] = float(metrics.psnr(flat[0], flat[1], flat[2])[0])
    scores["mae_brain"] = float(metrics.mae(flat[0], flat[1], flat[2])[0])
    for name, axis in (("axial", 0), ("coronal", 1), ("sagittal", 2)):
        scores[f"ssim_{name}"] = _plane_ssim(translated, truth, mask, axis)
    both = mask[1:] & mask[:-1]
    steps = [np.abs(np.diff(volume, axis=0))[both].mean() for volume in (translated, truth)]
    scores["neighbour_ratio"] = float(steps[0] / steps[1]) if both.any() and steps[1] > 0 else float("nan")
    return scores


def evaluate_volumes(model, dataset, standardization=None, directions=DIRECTIONS, batch_size: int = 16,
                     keep_volumes: bool = False) -> dict:
    """Translates each test subject's slices as a volume and scores it (module docstring).

    Args:
        model: a gan-mri model.
        dataset: a `gan_mri.data.PreparedDataset` with a test set.
        standardization: the model's intensity standardization (its inputs), or None.
        directions: subset of ``("A2B", "B2A")``.
        batch_size: slices per call to the model.
        keep_volumes: also return the first subject's volumes, for figures.

    Returns:
        ``{"protocol": PROTOCOL, direction: {"mean": {metric: mean over subjects}, "subjects": {name:
        scores}, "stripes": bool}}`` with ``stripes`` true where the mean neighbour ratio is above
        :data:`STRIPE_RATIO` or sagittal or coronal SSIM is 0.05 below axial; with ``keep_volumes`` each
        direction also has ``"volumes"``: ``{"subject", "input", "translation", "truth"}`` (arrays in
        [-1, 1], ``(slices, H, W)``; not for JSON, see :func:`without_volumes`).
    """
    from gan_mri.inference import translate_slices

    results = {"protocol": PROTOCOL}
    lesion_subjects = set(dataset.lesion_subjects)
    lesion_rows = dataset.array("test_lesions") if lesion_subjects else None
    tissue_rows = dataset.array("test_labels") if dataset.has_labels else None
    truths = {"A": dataset.array("test_a"), "B": dataset.array("test_b")}
    inputs = {domain: dataset.images(f"test_{domain.lower()}", standardization) if standardization is not None
              else truths[domain] for domain in "AB"}
    mask_rows = dataset.array("test_mask")
    for direction in directions:
        source, target = Direction(direction).source, Direction(direction).target
        subjects, fidelity = {}, {}
        for name, rows in _subject_rows(dataset).items():
            slices = np.repeat(np.asarray(inputs[source][rows])[..., None], model.channels, axis=-1)
            translated = translate_slices(model, slices.astype(np.float32), direction, batch_size).mean(axis=-1)
            truth = np.asarray(truths[target][rows])
            subjects[name] = volume_scores(metrics.to_unit_range(translated), metrics.to_unit_range(truth),
                                           np.asarray(mask_rows[rows]))
            if keep_volumes and len(subjects) == 1:
                example = {"subject": name, "input": slices[..., 0], "translation": translated, "truth": truth}
            if name in lesion_subjects:
                lesions, mask = np.asarray(lesion_rows[rows]), np.asarray(mask_rows[rows])
                unit_truth, unit_translation = metrics.to_unit_range(truth), metrics.to_unit_range(translated)
                white = (np.asarray(tissue_rows[rows]) == 3 if tissue_rows is not None
                         else metrics.segment_tissues(unit_truth, mask, target) == 3)
                fidelity[name] = lesion_fidelity(unit_translation, unit_truth, lesions, white)
                if keep_volumes and "lesion_volumes" not in results.get(direction, {}):
                    results.setdefault(direction, {})["lesion_volumes"] = {
                        "subject": name, "input": slices[..., 0], "translation": translated, "truth": truth,
                        "lesions": lesions}
        keys = [key for key in next(iter(subjects.values())) if key != "n_slices"]
        mean = {key: float(np.nanmean([scores[key] for scores in subjects.values()])) for key in keys}
        through = min(mean["ssim_coronal"], mean["ssim_sagittal"])
        results.setdefault(direction, {}).update(
            mean=mean, subjects=subjects,
            stripes=bool(mean["neighbour_ratio"] > STRIPE_RATIO or through < mean["ssim_axial"] - 0.05))
        if fidelity:
            results[direction]["lesions"] = {"subjects": fidelity, "all": _pooled(fidelity)}
        if keep_volumes:
            results[direction]["volumes"] = example
    return results


def _pooled(fidelity: dict) -> dict:
    """Lesion fidelity over every lesion of every subject."""
    lesions = [record for scores in fidelity.values() for record in scores["lesions"]]
    detectable = [record for record in lesions if record["detectable_truth"]]
    spots = {key: int(sum(scores[key] for scores in fidelity.values()))
             for key in ("spots_truth", "spots_translation", "hallucinated_spots")}
    return {"n_lesions": len(lesions),
            "mean_contrast_ratio": (float(np.mean([r["contrast_ratio"] for r in detectable])) if detectable
                                    else float("nan")),
            "detected_share": float(np.mean([r["detectable_translation"] for r in detectable])) if detectable
            else float("nan"),
            **spots,
            "hallucinated_share": (spots["hallucinated_spots"] / spots["spots_translation"]
                                   if spots["spots_translation"] else float("nan"))}


def without_volumes(results: dict) -> dict:
    """:func:`evaluate_volumes` results without their arrays, NaN as None (what ``volumes.json`` holds)."""
    def clean(value):
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items() if key not in ("volumes", "lesion_volumes")}
        if isinstance(value, list):
            return [clean(item) for item in value]
        return None if isinstance(value, float) and np.isnan(value) else value

    return clean(results)
