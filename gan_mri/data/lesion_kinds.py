"""Lesions the phantom can carry: white-matter hyperintensities, fluid-filled cavities and tumours with oedema.

Kinds (:data:`LESION_KINDS`), each placed in cerebral white matter and imaged with its own tissue of
:mod:`gan_mri.data.tissues` (so it keeps its physics under every protocol):

- ``"wmh"``: white-matter hyperintensities (MS plaques, small-vessel disease), ellipsoids 3-20 mm across inside
  white matter (:func:`white_matter_lesions`): darker than white matter on T1w, brighter on T2w.
- ``"cavity"``: a fluid-filled cavity (a resection cavity or a cyst), an ellipsoid 10-30 mm across with CSF-like
  relaxation that replaces whatever tissue it covers inside the brain: black on T1w, white on T2w.
- ``"tumour"``: a solid tumour, an ellipsoid 10-30 mm across (long T1 and T2), and the vasogenic oedema around it,
  the white matter within 4-12 mm of it (longer T1 and T2 still, more water): BraTS-like.

A lesion's voxels have a soft one-voxel edge (partial volume); the label map numbers the lesions 1..n (a tumour's
oedema carries its tumour's number).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

LESION_KINDS = ("wmh", "cavity", "tumour")
CEREBRAL_WHITE_MATTER = (2, 41)
"""FreeSurfer codes of the cerebral white matter."""
FOCAL_DIAMETER_MM = (10.0, 30.0)
"""Range of a cavity's or a tumour's largest diameter."""
OEDEMA_MM = (4.0, 12.0)
"""Range of the oedema's reach beyond its tumour, through white matter."""


LESION_DIAMETER_MM = (3.0, 20.0)
"""Range of the lesions' largest diameter (MS plaques and small-vessel hyperintensities: a few mm to 2 cm)."""


def white_matter_lesions(rng, white_matter: np.ndarray, count: int, voxel_mm: float):
    """Ellipsoidal lesions inside white matter: their partial-volume fraction and their labels.

    Each lesion gets a diameter drawn log-uniformly from :data:`LESION_DIAMETER_MM`, axes 0.6-1 times it
    in random proportions, and a centre in white matter at least its radius deep (a voxel whose
    white-matter fraction is above 0.9 after an erosion by the radius); a lesion takes over the white
    matter it covers, with a one-voxel soft edge. Lesions may touch; the later one keeps the label.

    Args:
        rng: numpy Generator.
        white_matter: white-matter fraction on the subject's grid.
        count: number of lesions (fewer if white matter runs out of room).
        voxel_mm: voxel size in mm.

    Returns:
        ``(fraction float32 of the white matter's share that is lesion, labels uint8 1..count)``.
    """
    core = white_matter > 0.9
    fraction = np.zeros(white_matter.shape, dtype=np.float32)
    labels = np.zeros(white_matter.shape, dtype=np.uint8)
    grid = np.indices(white_matter.shape, dtype=np.float32)
    low, high = np.log(LESION_DIAMETER_MM)
    for number in range(1, count + 1):
        radius = np.exp(rng.uniform(low, high)) / 2.0 / voxel_mm  # voxels
        deep = ndimage.binary_erosion(core, iterations=max(1, int(round(radius))))
        candidates = np.argwhere(deep & (labels == 0))
        if len(candidates) == 0:
            break
        centre = candidates[rng.integers(len(candidates))]
        axes = radius * rng.uniform(0.6, 1.0, size=3)
        axes[rng.integers(3)] = radius
        distance = np.sqrt(sum(((grid[i] - centre[i]) / axes[i]) ** 2 for i in range(3)))
        soft = np.clip((1.0 - distance) * radius + 0.5, 0.0, 1.0)  # about one voxel from 1 to 0
        fraction = np.maximum(fraction, soft)
        labels[soft >= 0.5] = number
    return (fraction * white_matter).astype(np.float32), labels


def _soft_ellipsoid(rng, shape, centre, radius: float) -> np.ndarray:
    """A float32 ellipsoid of largest semi-axis ``radius`` voxels (others 0.6-1 times it) around ``centre``,
    1 inside and 0 outside with a one-voxel soft edge, computed on its bounding box only."""
    axes = radius * rng.uniform(0.6, 1.0, size=3)
    axes[rng.integers(3)] = radius
    low = np.maximum(np.floor(centre - radius - 2).astype(int), 0)
    high = np.minimum(np.ceil(centre + radius + 3).astype(int), shape)
    grid = np.indices(tuple(high - low), dtype=np.float32) + low[:, None, None, None]
    distance = np.sqrt(sum(((grid[i] - centre[i]) / axes[i]) ** 2 for i in range(3)))
    fraction = np.zeros(shape, dtype=np.float32)
    fraction[tuple(slice(a, b) for a, b in zip(low, high))] = np.clip((1.0 - distance) * radius + 0.5, 0.0, 1.0)
    return fraction


def _focal_centres(rng, white_matter: np.ndarray, count: int, radius_mm) -> list:
    """``count`` (centre, radius in voxels) pairs, each centre in white matter at least half its radius deep."""
    picks = []
    low, high = np.log(FOCAL_DIAMETER_MM)
    for _ in range(count):
        radius = np.exp(rng.uniform(low, high)) / 2.0 / radius_mm
        deep = ndimage.binary_erosion(white_matter, iterations=max(1, int(round(radius / 2))))
        candidates = np.argwhere(deep)
        if len(candidates) == 0:
            break
        picks.append((candidates[rng.integers(len(candidates))].astype(np.float32), radius))
    return picks


def draw_lesions(rng, labels: np.ndarray, count: int, kind: str, voxel_mm: float = 1.0):
    """Lesions of ``kind`` on a label map of FreeSurfer codes (module docstring).

    Args:
        rng: numpy Generator.
        labels: the label map (FreeSurfer codes).
        count: number of lesions (fewer if white matter runs out of room).
        kind: one of :data:`LESION_KINDS`.
        voxel_mm: the map's voxel size.

    Returns:
        ``(fractions, lesion_labels, tissues)``: tissue name -> float32 share of each voxel that is that lesion
        tissue, uint8 labels 1..n, and the tissue names.

    Raises:
        ValueError: for an unknown kind.
    """
    if kind not in LESION_KINDS:
        raise ValueError(f"lesion_kind: expected one of {list(LESION_KINDS)}, found {kind!r}")
    white_matter = np.isin(labels, CEREBRAL_WHITE_MATTER)
    if kind == "wmh":
        fraction, lesion_labels = white_matter_lesions(rng, white_matter.astype(np.float32), count, voxel_mm)
        return {"white-matter lesion": fraction}, lesion_labels, ("white-matter lesion",)
    brain = labels > 0
    lesion_labels = np.zeros(labels.shape, dtype=np.uint8)
    if kind == "cavity":
        fraction = np.zeros(labels.shape, dtype=np.float32)
        for number, (centre, radius) in enumerate(_focal_centres(rng, white_matter, count, voxel_mm), start=1):
            cavity = _soft_ellipsoid(rng, labels.shape, centre, radius) * brain
            fraction = np.maximum(fraction, cavity)
            lesion_labels[cavity >= 0.5] = number
        return {"cavity": fraction}, lesion_labels, ("cavity",)
    core = np.zeros(labels.shape, dtype=np.float32)
    oedema = np.zeros(labels.shape, dtype=np.float32)
    for number, (centre, radius) in enumerate(_focal_centres(rng, white_matter, count, voxel_mm), start=1):
        tumour = _soft_ellipsoid(rng, labels.shape, centre, radius) * brain
        reach = rng.uniform(*OEDEMA_MM) / voxel_mm
        distance = ndimage.distance_transform_edt(tumour < 0.5)
        around = np.clip(reach - distance + 0.5, 0.0, 1.0) * white_matter * (1.0 - tumour)
        core = np.maximum(core, tumour)
        oedema = np.maximum(oedema, around)
        lesion_labels[(tumour >= 0.5) | (around >= 0.5)] = number
    oedema = np.minimum(oedema, 1.0 - core)
    return {"tumour": core, "oedema": oedema}, lesion_labels, ("tumour", "oedema")
