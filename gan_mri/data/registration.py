"""Registration of one volume to another (dipy), and how well two volumes line up.

Used twice: :func:`gan_mri.data.brain_mask.template_mask` registers a template head to a whole-head scan
(affine), and ``prepare --pair register`` registers each test subject's T2w to its T1w (rigid) when the
two were acquired apart, as IXI's were. Both maximise Mattes mutual information with dipy's
``AffineRegistration`` on a coarse working grid, stage by stage (centres of mass, translation, rigid,
then affine if asked), the approach of FSL FLIRT and ANTs' linear stages. The library was chosen by
measurement against SimpleITK and ANTsPy: docs/registration.md.

A transform here is a 4x4 matrix in world (scanner) millimetres mapping a point of the static volume to
the same anatomy in the moving volume, as dipy returns it.
"""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
from nibabel.processing import resample_to_output
from skimage.metrics import normalized_mutual_information

logger = logging.getLogger(__name__)

WORKING_MM = 2.0
"""Voxel size of the registration's working grid for pairs (sub-millimetre results, tests/test_geometry.py)."""
STAGES = ("translation", "rigid", "affine")
NMI_BINS = 32
SHIFT_PROBE_MM = 2.0
"""A pair counts as misaligned when moving one image by this much along an axis makes it match better."""
SHIFT_PROBE_GAIN = 0.002
"""...by more than this (normalized mutual information, which is 1 for independent images and 2 for identical ones)."""


def _data(image) -> np.ndarray:
    return np.asarray(image.dataobj, dtype=np.float32).reshape(image.shape[:3])


def register(static, moving, stages=("translation", "rigid"), working_mm: float = WORKING_MM,
             moving_mask: np.ndarray | None = None, level_iters=(1000, 100), sigmas=(3.0, 1.0),
             factors=(4, 2), sampling: float | None = 0.25, seed: int = 0) -> np.ndarray:
    """The transform that lines ``moving`` up with ``static`` (mutual information, dipy).

    Args:
        static: nibabel image that stays.
        moving: nibabel image that moves (any grid, any contrast).
        stages: the transforms fitted in turn, each starting from the last, after aligning the centres
            of mass: names from :data:`STAGES`.
        working_mm: ``static`` is resampled to this voxel size first (speed; the transform stays exact).
        moving_mask: optional mask on ``moving``'s grid: only its voxels count (e.g. a template's head).
        level_iters, sigmas, factors: per pyramid level, coarse to fine: iterations, smoothing (voxels) and
            shrink factor. The defaults (8 and 4 mm levels of the 2 mm working grid) were chosen by
            measurement (docs/registration.md): 0.2-0.4 mm from a 6 degree, 5 mm motion; a level at
            the working grid itself took 70 % longer for 0.02 mm.
        sampling: share of the working grid's voxels the metric samples (``None``: all of them).
        seed: seed of that sampling; NumPy's global random state, which dipy draws from, is restored after.

    Returns:
        4x4 float64 world transform, static point -> moving point.

    Raises:
        ValueError: for an unknown stage.
    """
    from dipy.align.imaffine import AffineRegistration, MutualInformationMetric, transform_centers_of_mass
    from dipy.align.transforms import AffineTransform3D, RigidTransform3D, TranslationTransform3D

    kinds = {"translation": TranslationTransform3D, "rigid": RigidTransform3D, "affine": AffineTransform3D}
    unknown = [stage for stage in stages if stage not in kinds]
    if unknown:
        raise ValueError(f"register: stages: expected names from {STAGES}, found {unknown}")
    fixed = resample_to_output(nib.Nifti1Image(_data(static), static.affine), voxel_sizes=working_mm, order=1)
    fixed_data, moving_data = _data(fixed), _data(moving)
    registration = AffineRegistration(metric=MutualInformationMetric(nbins=NMI_BINS, sampling_proportion=sampling),
                                      level_iters=list(level_iters), sigmas=list(sigmas), factors=list(factors),
                                      verbosity=0)
    transform = transform_centers_of_mass(fixed_data, fixed.affine, moving_data, moving.affine).affine
    mask = None if moving_mask is None else np.asarray(moving_mask).astype(np.int32)
    state = np.random.get_state()
    np.random.seed(seed)  # dipy samples from NumPy's global generator: same inputs, same transform
    try:
        for stage in stages:
            transform = registration.optimize(fixed_data, moving_data, kinds[stage](), None,
                                              static_grid2world=fixed.affine, moving_grid2world=moving.affine,
                                              starting_affine=transform, moving_mask=mask).affine
    finally:
        np.random.set_state(state)
    return np.asarray(transform, dtype=np.float64)


def resample_onto(moving, static, transform: np.ndarray | None = None, order: int = 1) -> np.ndarray:
    """``moving``'s data on ``static``'s grid, through ``transform`` (identity: through the two affines).

    Args:
        moving, static: nibabel images.
        transform: from :func:`register`, or ``None``.
        order: 1 (linear) for intensities, 0 (nearest) for labels.

    Returns:
        float32 array of ``static``'s shape; 0 outside ``moving``'s field of view.
    """
    from dipy.align.imaffine import AffineMap

    warp = AffineMap(np.eye(4) if transform is None else transform,
                     domain_grid_shape=static.shape[:3], domain_grid2world=static.affine,
                     codomain_grid_shape=moving.shape[:3], codomain_grid2world=moving.affine)
    return warp.transform(_data(moving), interpolation="linear" if order else "nearest").astype(np.float32)


def nmi(first: np.ndarray, second: np.ndarray, mask: np.ndarray) -> float:
    """Normalized mutual information of two volumes on one grid, over ``mask`` (scikit-image)."""
    mask = np.asarray(mask, dtype=bool)
    return float(normalized_mutual_information(first[mask], second[mask], bins=NMI_BINS))


def misalignment(static, moving_on_static: np.ndarray, mask: np.ndarray) -> dict:
    """Whether moving one volume by :data:`SHIFT_PROBE_MM` along an axis lines it up better with the other.

    Both volumes (``static``, and the other already on its grid) are resampled to :data:`SHIFT_PROBE_MM`
    mm; the other is shifted by one voxel in each of the six directions; the normalized mutual
    information inside ``mask`` (static's grid) is compared with that of the pair as it is.

    Returns:
        ``{"nmi": as it is, "best_shift_mm": [x, y, z] world mm of the best shift (zeros if none is
        better), "nmi_gain": the best shift's gain, "aligned": gain <= SHIFT_PROBE_GAIN}``.
    """
    def coarse(array, order):
        image = nib.Nifti1Image(np.asarray(array, dtype=np.float32), static.affine)
        return _data(resample_to_output(image, voxel_sizes=SHIFT_PROBE_MM, order=order))

    first, second, region = coarse(_data(static), 1), coarse(moving_on_static, 1), coarse(mask, 0) > 0.5
    region[[0, -1]] = region[:, [0, -1]] = region[:, :, [0, -1]] = False  # rolled edges wrap around
    base = nmi(first, second, region)
    best, gain = np.zeros(3), 0.0
    for axis in range(3):
        for step in (-1, 1):
            score = nmi(first, np.roll(second, step, axis=axis), region) - base
            if score > gain:
                best, gain = np.eye(3)[axis] * step * SHIFT_PROBE_MM, score
    return {"nmi": round(base, 4), "best_shift_mm": [float(v) for v in best], "nmi_gain": round(gain, 4),
            "aligned": bool(gain <= SHIFT_PROBE_GAIN)}


def transform_error(found: np.ndarray, truth: np.ndarray, points_mm: np.ndarray) -> tuple[float, float]:
    """How far apart two transforms put ``points_mm`` (max, mm) and the angle between their rotations (deg)."""
    points = np.asarray(points_mm, dtype=np.float64)
    moved = nib.affines.apply_affine(found, points) - nib.affines.apply_affine(truth, points)
    relative = found[:3, :3] @ np.linalg.inv(truth[:3, :3])
    cosine = np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.max(np.linalg.norm(moved, axis=1))), float(np.degrees(np.arccos(cosine)))
