"""Lesion fidelity: does a translation keep a lesion the model never saw, and does it invent new ones?

Unpaired translation learns to make outputs look like its training data, and can add or remove
pathology (Cohen et al. 2018, "Distribution matching losses can hallucinate features"). Given lesion
labels (the phantom's ``--lesions``, or a user's BIDS ``*_label-lesion*``), :func:`lesion_fidelity` scores
one translated volume against its truth, inside white matter:

- **contrast**: a lesion's mean over the normal white matter's mean, minus 1 (T2w lesions above 0, T1w
  lesions below), in the translation and in the truth; their ratio is 1 when the lesion is kept, 0
  when it is gone, negative when it is inverted (averaged over the lesions detectable in the truth: a
  lesion the truth barely shows has no meaningful ratio);
- **detectable**: by one fixed rule, a lesion (or spot) is detectable when its mean differs from normal
  white matter by more than :data:`DETECTION_SD` standard deviations of normal white matter, on the
  side the truth's lesions lie; ``detected_share`` is the share of the lesions detectable in the truth
  that are detectable in the translation;
- **spots**: connected groups of at least :data:`MIN_SPOT_VOXELS` normal white-matter voxels (outside
  the lesions, dilated by a voxel) beyond the same threshold; ``hallucinated_spots`` are those of the
  translation that touch no spot of the truth (noise makes a few spots in the truth too).

Normal white matter is the tissue labels' white matter where the dataset has labels, else the truth's
own segmentation (:func:`gan_mri.metrics.segment_tissues`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DETECTION_SD = 2.0
MIN_SPOT_VOXELS = 8
"""Smallest spot counted: with 3 voxels, noise alone made 100-200 spots per phantom truth at 64 px."""


def _spots(image: np.ndarray, normal: np.ndarray, level: float, sign: float) -> tuple[np.ndarray, int]:
    """Labelled groups of normal white-matter voxels beyond ``level`` on the lesions' side, and their count."""
    beyond = normal & (sign * (image - level) > 0)
    labels, count = ndimage.label(beyond)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    small = sizes < MIN_SPOT_VOXELS
    small[0] = True
    labels[small[labels]] = 0
    return labels, int(np.count_nonzero(~small))


def lesion_fidelity(translated: np.ndarray, truth: np.ndarray, lesions: np.ndarray, white_matter: np.ndarray) -> dict:
    """Lesion contrast, detectability and spots of one translated volume (module docstring).

    Args:
        translated, truth: ``(slices, H, W)`` intensities (e.g. in [0, 1]).
        lesions: lesion labels of the same shape (0 outside; one value per lesion).
        white_matter: bool white matter of the same shape (lesions may lie inside it).

    Returns:
        ``{"lesions": [per lesion: label, voxels, contrast_truth, contrast_translation, contrast_ratio,
        detectable_truth, detectable_translation], "n_lesions", "mean_contrast_ratio", "detected_share",
        "spots_truth", "spots_translation", "hallucinated_spots", "hallucinated_share"}``; ratios and shares
        are NaN where undefined (no lesion, no detectable lesion, no spot).
    """
    translated, truth = np.asarray(translated, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    lesions = np.asarray(lesions)
    inside = lesions > 0
    normal = np.asarray(white_matter, dtype=bool) & ~ndimage.binary_dilation(inside)
    reference = {name: (float(image[normal].mean()), float(image[normal].std()))
                 for name, image in (("truth", truth), ("translation", translated))}
    records = []
    for value in np.unique(lesions[inside]):
        region = lesions == value
        record = {"label": int(value), "voxels": int(region.sum())}
        for name, image in (("truth", truth), ("translation", translated)):
            mean, sd = reference[name]
            record[f"contrast_{name}"] = float(image[region].mean() / mean - 1.0)
        records.append(record)
    sign = float(np.sign(np.mean([r["contrast_truth"] for r in records]))) if records else 1.0
    for record in records:
        for name in ("truth", "translation"):
            mean, sd = reference[name]
            record[f"detectable_{name}"] = bool(sign * record[f"contrast_{name}"] * mean > DETECTION_SD * sd)
        record["contrast_ratio"] = (record["contrast_translation"] / record["contrast_truth"]
                                    if record["contrast_truth"] else float("nan"))
    spots = {name: _spots(image, normal, reference[name][0] + sign * DETECTION_SD * reference[name][1], sign)
             for name, image in (("truth", truth), ("translation", translated))}
    truth_spots, translation_spots = spots["truth"][0] > 0, spots["translation"][0]
    detectable = [r for r in records if r["detectable_truth"]]
    invented = {int(v) for v in np.unique(translation_spots[translation_spots > 0])} - {
        int(v) for v in np.unique(translation_spots[truth_spots & (translation_spots > 0)])}
    return {
        "lesions": records,
        "n_lesions": len(records),
        "mean_contrast_ratio": (float(np.mean([r["contrast_ratio"] for r in detectable])) if detectable
                                else float("nan")),
        "detected_share": (float(np.mean([r["detectable_translation"] for r in detectable])) if detectable
                           else float("nan")),
        "spots_truth": spots["truth"][1],
        "spots_translation": spots["translation"][1],
        "hallucinated_spots": len(invented),
        "hallucinated_share": len(invented) / spots["translation"][1] if spots["translation"][1] else float("nan"),
    }
