"""A head around the phantom's brain: extra-cerebral CSF, skull and scalp as partial-volume layers.

Real T1w/T2w scans come with the head on; a network that has only seen brains floating in noise turns
the skull and scalp of a real scan into a muddy texture. This module wraps a brain mask in the
layers a scalp-to-brain line crosses, from the inside out (mean thickness in mm, from MRI and CT
anatomy of adult heads):

====================  =========  =========================================================
layer                 thickness  tissue (see :data:`gan_mri.data.sequences.TISSUES`)
====================  =========  =========================================================
subarachnoid CSF      1.5        CSF (dark on T1w, bright on T2w)
inner table           1.5        cortical bone (dark on both)
diploë                2.5        fatty marrow (bright on both)
outer table           1.5        cortical bone
galea and muscle      1.5        muscle; the temporalis adds up to 6 mm at the temples
subcutaneous fat      4.0        fat
skin                  1.5        muscle (soft tissue)
====================  =========  =========================================================

Each layer's thickness varies smoothly over the head (a log-normal factor from a low-frequency random
field), so no two phantom heads are alike. Layers start at the boundary of a smoothed brain envelope
(the mask closed over its sulci) and are measured along the Euclidean distance from it; a voxel cut by a
boundary is shared between the two layers in proportion (partial volume).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: (layer, tissue, mean thickness mm), inside out.
LAYERS = (
    ("subarachnoid CSF", "CSF", 1.5),
    ("inner table", "bone", 1.5),
    ("diploe", "marrow", 2.5),
    ("outer table", "bone", 1.5),
    ("galea and muscle", "muscle", 1.5),
    ("subcutaneous fat", "fat", 4.0),
    ("skin", "muscle", 1.5),
)
HEAD_TISSUES = tuple(dict.fromkeys(tissue for _, tissue, _ in LAYERS))
TEMPORALIS_MM = 6.0
#: The meninges: within ``MENINGES_MM`` of the brain mask's edge, the template's "CSF" (mask minus grey
#: and white matter) is largely pia-arachnoid, dura and surface vessels, dark on T2w. A share falling
#: linearly from ``MENINGES_SHARE`` at the edge to 0 at that depth is given to the tissue ``meninges``
#: (calibrated on the real ICBM 2009c T2w, docs/phantom.md).
MENINGES_MM = 3.0
MENINGES_SHARE = 0.6


def _smoothstep(x, low, high):
    t = np.clip((x - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def meninges_fraction(csf: np.ndarray, brain_mask: np.ndarray, voxel_mm: float) -> np.ndarray:
    """The part of the brain's CSF fraction ``csf`` that is meninges (see :data:`MENINGES_MM`)."""
    depth = ndimage.distance_transform_edt(np.asarray(brain_mask, dtype=bool)).astype(np.float32) * voxel_mm
    share = MENINGES_SHARE * np.clip(1.0 - (depth - 0.5 * voxel_mm) / MENINGES_MM, 0.0, 1.0)
    return (np.asarray(csf, dtype=np.float32) * share).astype(np.float32)


def head_fractions(brain_mask: np.ndarray, voxel_mm: float, thickness_fields: np.ndarray | None = None,
                   thickness_variation: float = 0.25) -> dict:
    """Partial-volume fractions of the head tissues around a brain.

    Args:
        brain_mask: boolean 3D brain mask in RAS voxel order (the phantom's template grid).
        voxel_mm: isotropic voxel size in mm.
        thickness_fields: ``(len(LAYERS), X, Y, Z)`` smooth fields with unit standard deviation (one per
            layer) that vary the thickness; ``None`` gives every layer its mean thickness everywhere.
        thickness_variation: log standard deviation of the thickness factor.

    Returns:
        tissue name -> float32 fraction map (each in [0, 1], summing to at most 1 outside the brain
        envelope and to 0 inside it).

    Raises:
        ValueError: for an empty mask or fields of the wrong shape.
    """
    mask = np.asarray(brain_mask, dtype=bool)
    if mask.ndim != 3 or not mask.any():
        raise ValueError(f"brain_mask: expected a non-empty 3D mask, found shape {mask.shape} with "
                         f"{int(mask.sum())} voxels")
    expected = (len(LAYERS), *mask.shape)
    if thickness_fields is not None and tuple(np.shape(thickness_fields)) != expected:
        raise ValueError(f"thickness_fields: expected shape {expected}, found {np.shape(thickness_fields)}")
    # The envelope closes the sulci, as the skull does: a Gaussian of 3 mm, thresholded at one half.
    envelope = ndimage.gaussian_filter(mask.astype(np.float32), sigma=3.0 / voxel_mm) > 0.5
    envelope = ndimage.binary_fill_holes(envelope | mask)
    distance = ndimage.distance_transform_edt(~envelope).astype(np.float32) * voxel_mm

    # The temporalis: lateral (the head's left-right axis is RAS axis 0), from the skull base to
    # about two thirds of the brain's height.
    centre = np.array(ndimage.center_of_mass(mask))
    x, y, z = np.indices(mask.shape, dtype=np.float32)
    lateral = np.abs(x - centre[0]) / np.maximum(np.hypot(x - centre[0], y - centre[1]), 1e-6)
    z_extent = np.flatnonzero(mask.any(axis=(0, 1)))
    height = (z - z_extent[0]) / max(z_extent[-1] - z_extent[0], 1)
    temporalis = TEMPORALIS_MM * _smoothstep(lateral, 0.6, 0.9) * (1.0 - _smoothstep(height, 0.45, 0.7))
    del x, y, z, lateral, height

    fractions = {tissue: np.zeros(mask.shape, dtype=np.float32) for tissue in HEAD_TISSUES}
    outside = distance > 0
    # The envelope's surface lies half a voxel out from the centres of its outermost voxels (distance 0);
    # a voxel's share inside a boundary is linear over the voxel across it.
    boundary = np.full(mask.shape, 0.5 * voxel_mm, dtype=np.float32)
    inside_previous = np.zeros(mask.shape, dtype=np.float32)
    for index, (name, tissue, mean_mm) in enumerate(LAYERS):
        thickness = np.full(mask.shape, mean_mm, dtype=np.float32)
        if thickness_fields is not None:
            thickness *= np.exp(thickness_variation * thickness_fields[index]).astype(np.float32)
        if name == "galea and muscle":
            thickness += temporalis
        boundary += thickness
        inside = np.clip((boundary - distance) / voxel_mm + 0.5, 0.0, 1.0)
        fractions[tissue] += np.where(outside, inside - inside_previous, 0.0).astype(np.float32)
        inside_previous = inside
    return fractions
