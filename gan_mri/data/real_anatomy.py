"""The phantom on real anatomy: one of SynthSeg's label maps, deformed, imaged by a simulated scanner.

A subject (:func:`simulate_labelled_subject`):

1. **Anatomy**: label map ``number`` of :mod:`gan_mri.data.anatomy` (a real head at 1 mm, FreeSurfer codes), with
   its brain centred where the MNI152 brain is, a small random affine (rotation, scale, shift) and a smooth random
   deformation, sampled onto the MNI152 box (the old phantom's grid, 1 or 2 mm), so that every subject has the
   same field of view whatever its head size.
2. **Tissue**: every code images as one tissue of :mod:`gan_mri.data.tissues` at the subject's field strength,
   each tissue's T1, T2 and PD jittered per subject (log-normal), and inside every structure a smooth texture of
   its own (log-normal, ``texture``: a few per cent in T1, T2 and PD, varying over 1-2 cm). The extra-cerebral
   soft tissues and the scalp mix muscle (or skin) with fat, the fat share a smooth random field (orbital fat
   around the eyes).
3. **Image formation**: each voxel's signal under the subject's T1w and T2w protocol, computed on the label map's
   1 mm grid. The labels are crisp; partial volume comes from the resampling (a linear interpolation of the
   signal, after a [1/4, 1/2, 1/4] anti-aliasing filter for the 2 mm grid) and the acquisition's point-spread
   blur; then :func:`gan_mri.data.scanner.scan` (bias, thick slices for 2D acquisitions, Rician noise, gain,
   int16).
4. **Labels**: the deformed FreeSurfer codes (``structures``), the three-class ``dseg`` (1 CSF, 2 GM, 3 WM) and
   the brain mask (the brain's structures, its ventricles and the CSF around it, above the cerebellum's lowest
   slice), sampled with the same deformation.

Lesions (``lesions``, ``lesion_kind``) are drawn in the label map's cerebral white matter before the deformation
(:mod:`gan_mri.data.lesion_kinds`).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from . import tissues as tissue_table
from .anatomy import STRUCTURES, load_label_map, lookup
from .lesion_kinds import LESION_KINDS, draw_lesions
from .scanner import random_pose, scan, smooth_field
from .sequences import jitter_timings

GRID = {1: ((197, 233, 189), np.array([[1.0, 0, 0, -98], [0, 1, 0, -134], [0, 0, 1, -72], [0, 0, 0, 1]])),
        2: ((99, 117, 95), np.array([[2.0, 0, 0, -98], [0, 2, 0, -134], [0, 0, 2, -72], [0, 0, 0, 1]]))}
"""resolution (mm) -> (shape, affine): nilearn's MNI152 template grids, those of the MNI152-anatomy phantom."""
BRAIN_CENTRE_MM = np.array([0.0, -22.0, 9.5])
"""Centre of mass of the MNI152 brain mask (mm): where each subject's brain is centred before its own shift."""

FAT_SHARE = {"soft tissue": (0.2, 0.1), "scalp": (0.55, 0.1)}
"""tissue -> (mean, standard deviation) of its fat share, a smooth random field clipped to [0, 0.9]; the rest of
the voxel is the tissue itself (muscle-like soft tissue, skin)."""
ORBIT_MM = 12.0
"""Soft tissue within this distance of an eye is orbital fat (fat share 0.85)."""
TEXTURE_FREQUENCIES = 12
"""Highest cosine frequency per axis of the within-structure texture (over ~20 cm: wavelengths down to ~2 cm)."""
BRAIN_CODES = tuple(s.code for s in STRUCTURES if s.brain)
SUBARACHNOID_MM = 5.0
"""CSF this close to the brain's tissue (mm) is inside the brain mask (the subarachnoid space and cisterns)."""
TISSUE_NAMES = tuple(dict.fromkeys(s.tissue for s in STRUCTURES))
_TISSUE_INDEX = lookup({s.code: TISSUE_NAMES.index(s.tissue) for s in STRUCTURES}, dtype=np.int16)
DSEG = lookup({s.code: s.dseg for s in STRUCTURES}, dtype=np.uint8)
"""FreeSurfer code -> the phantom's three-class label (``DSEG[structures]``)."""


def native_brain_mask(labels: np.ndarray) -> np.ndarray:
    """The brain mask of a label map: the brain's structures and ventricles, and the CSF within
    :data:`SUBARACHNOID_MM` of them, above the lowest axial slice of the cerebellar cortex; holes filled.

    The CSF label also covers the sheaths of the optic nerves in the orbits and the spinal canal down the neck;
    a brain mask (as brain extraction draws it) stops at the subarachnoid space."""
    parenchyma = np.isin(labels, BRAIN_CODES) & (labels != 24)
    near = ndimage.distance_transform_edt(~parenchyma) <= SUBARACHNOID_MM
    mask = parenchyma | ((labels == 24) & near)
    cerebellum = np.flatnonzero(np.isin(labels, (8, 47)).any(axis=(0, 1)))
    if cerebellum.size:
        mask[:, :, :cerebellum[0]] = False
    return ndimage.binary_fill_holes(mask)


def _log_gradients(sequence, parameters: np.ndarray) -> np.ndarray:
    """``d ln S / d ln (T1, T2)`` of each tissue row of ``parameters`` (finite differences); PD's is 1."""
    base = sequence.signal(*parameters.T)
    gradients = []
    for column in (0, 1):
        moved = parameters.copy()
        moved[:, column] *= np.exp(1e-3)
        gradients.append((np.log(np.maximum(sequence.signal(*moved.T), 1e-30)) - np.log(np.maximum(base, 1e-30)))
                         / 1e-3)
    return np.stack(gradients, axis=1)


def native_signal(sequence, parameters: np.ndarray, tissue: np.ndarray, texture: np.ndarray | None,
                  fat: np.ndarray | None, fat_parameters: np.ndarray | None) -> np.ndarray:
    """Each voxel's signal on the label grid.

    ``S = S_tissue exp(g1 t1 + g2 t2 + t3)``, the log-linear expansion of the signal equation in the voxel's
    texture ``t`` (log deviations of T1, T2, PD: a few per cent, so the expansion is exact to a few tenths of a
    per cent), and where
    ``fat`` is given the voxel is ``(1 - fat) S + fat S_fat``.

    Args:
        sequence: a sequence of :mod:`gan_mri.data.sequences`.
        parameters: ``(tissues, 3)`` T1, T2, PD per tissue.
        tissue: int tissue index per voxel.
        texture: ``(3, *tissue.shape)`` log deviations, or ``None``.
        fat, fat_parameters: fat share per voxel and fat's T1, T2, PD, or ``None``.
    """
    signals = sequence.signal(*parameters.T).astype(np.float32)
    signal = signals[tissue]
    if texture is not None:
        gradients = _log_gradients(sequence, parameters).astype(np.float32)
        signal = signal * np.exp(gradients[tissue, 0] * texture[0] + gradients[tissue, 1] * texture[1] + texture[2])
    if fat is not None:
        signal = signal * (1.0 - fat) + float(sequence.signal(*fat_parameters)) * fat
    return signal.astype(np.float32)


def orbital_fat(labels: np.ndarray) -> np.ndarray:
    """The soft tissue within :data:`ORBIT_MM` of an eye (1 mm voxels)."""
    eyes = labels == 506
    if not eyes.any():
        return np.zeros(labels.shape, dtype=bool)
    return (ndimage.distance_transform_edt(~eyes) <= ORBIT_MM) & (labels == 507)


@functools.lru_cache(maxsize=4)
def map_masks(number: int) -> tuple[np.ndarray, np.ndarray]:
    """``(brain mask, orbital fat)`` of label map ``number`` (they depend on the map only; cached, read-only)."""
    labels, _ = load_label_map(number)
    masks = native_brain_mask(labels), orbital_fat(labels)
    for mask in masks:
        mask.setflags(write=False)
    return masks


def fat_share(rng, labels: np.ndarray, orbit: np.ndarray) -> np.ndarray:
    """The fat share of every voxel: a smooth random field inside the tissues of :data:`FAT_SHARE`, 0.85 in the
    orbital fat ``orbit``, 0 elsewhere."""
    field = smooth_field(rng, labels.shape, 1, frequencies=6)[0]
    share = np.zeros(labels.shape, dtype=np.float32)
    for name, (mean, spread) in FAT_SHARE.items():
        inside = np.isin(labels, [s.code for s in STRUCTURES if s.tissue == name])
        share[inside] = np.clip(mean + spread * field[inside], 0.0, 0.9)
    share[orbit] = 0.85
    return share


def _grid_coordinates(rng, shape, grid_affine, label_affine, label_centre_mm, deformation_mm, rotation_deg,
                      scale_jitter, translation_mm) -> np.ndarray:
    """Label-map voxel coordinates ``(3, N)`` of each output voxel: the output grid's millimetres, a random
    affine about the brain centre, a smooth random warp, into the label map's voxels."""
    matrix = random_pose(rng, rotation_deg, scale_jitter)
    shift = rng.uniform(-translation_mm, translation_mm, size=3)
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = grid_affine[:3, :3].astype(np.float32) @ grid + grid_affine[:3, 3:4].astype(np.float32)
    warp = smooth_field(rng, shape, 3, frequencies=8).reshape(3, -1) * deformation_mm
    subject = (matrix @ (world - BRAIN_CENTRE_MM[:, None]) + (label_centre_mm + shift)[:, None]) + warp
    inverse = np.linalg.inv(label_affine)
    return (inverse[:3, :3] @ subject + inverse[:3, 3:4]).astype(np.float32)


def simulate_labelled_subject(
    rng: np.random.Generator,
    number: int,
    resolution: int = 2,
    deformation_mm: float = 2.0,
    rotation_deg: float = 3.0,
    scale_jitter: float = 0.03,
    translation_mm: float = 2.0,
    bias_field: float = 0.1,
    noise: float = 0.02,
    tissue_jitter: float = 0.05,
    texture: float = 0.03,
    protocols=None,
    sequence_jitter: float = 0.08,
    head: bool = True,
    blur_mm: float = 1.0,
    lesions: int = 0,
    lesion_kind: str = "wmh",
):
    """Simulate one subject on real anatomy in memory (module docstring).

    Args:
        rng: numpy Generator (its draws define the subject).
        number: label map 1..20 of :mod:`gan_mri.data.anatomy`.
        resolution: output voxel size in mm (1 or 2).
        deformation_mm, rotation_deg, scale_jitter, translation_mm: the random deformation and affine.
        bias_field, noise, blur_mm, sequence_jitter: as for the MNI152 phantom
            (:func:`gan_mri.data.phantom.simulate_subject`).
        tissue_jitter: log-normal standard deviation of each tissue's T1, T2 and PD per subject.
        texture: log-normal standard deviation of the smooth within-structure texture of T1, T2 and PD.
        protocols: :class:`gan_mri.data.protocols.Protocols` (sequences, field, 2D slices), default research 3 T.
        head: image the head around the brain; without it, everything outside the brain mask is air.
        lesions: number of lesions of ``lesion_kind`` (:data:`gan_mri.data.lesion_kinds.LESION_KINDS`); drawn
            from a generator spawned from ``rng``, so the subject is otherwise the same as without them.

    Returns:
        ``{"T1w", "T2w": int16, "dseg": uint8, "structures": int16 FreeSurfer codes, "brain_mask": bool,
        "affine": 4x4, "protocols": Protocols}``, and with ``lesions`` ``"lesions"``: uint8 labels 1..n.

    Raises:
        ValueError: for a negative variation parameter, an unknown lesion kind or a bad label-map number.
    """
    from .protocols import Protocols

    protocols = protocols if protocols is not None else Protocols()
    for name, value in (("deformation_mm", deformation_mm), ("rotation_deg", rotation_deg),
                        ("scale_jitter", scale_jitter), ("translation_mm", translation_mm),
                        ("bias_field", bias_field), ("noise", noise), ("tissue_jitter", tissue_jitter),
                        ("texture", texture), ("sequence_jitter", sequence_jitter), ("blur_mm", blur_mm),
                        ("lesions", lesions)):
        if not value >= 0:
            raise ValueError(f"{name}: expected a value >= 0, found {value!r}")
    if lesion_kind not in LESION_KINDS:
        raise ValueError(f"lesion_kind: expected one of {list(LESION_KINDS)}, found {lesion_kind!r}")
    if resolution not in GRID:
        raise ValueError(f"resolution: expected 1 or 2 (mm), found {resolution!r}")
    labels, label_affine = load_label_map(number)
    mask, orbit = map_masks(number)
    if not head:
        labels = np.where(mask, labels, 0).astype(np.int16)
    centre = label_affine[:3, :3] @ np.array(ndimage.center_of_mass(mask)) + label_affine[:3, 3]
    shape, affine = GRID[resolution]
    coords = _grid_coordinates(rng, shape, affine, label_affine, centre, deformation_mm, rotation_deg,
                               scale_jitter, translation_mm)

    tissue = _TISSUE_INDEX[labels]
    parameters = tissue_table.parameter_table(TISSUE_NAMES, protocols.field)
    parameters = parameters * np.exp(rng.normal(0.0, tissue_jitter, size=parameters.shape))
    fat_parameters = np.array(tissue_table.parameters("fat", protocols.field)) * np.exp(
        rng.normal(0.0, tissue_jitter, size=3))
    fields = smooth_field(rng, labels.shape, 3, frequencies=TEXTURE_FREQUENCIES) * np.float32(texture)
    fat = fat_share(rng, labels, orbit) if head else None
    lesion_fraction = lesion_labels = None
    if lesions:
        lesion_rng = rng.spawn(1)[0]  # spawning draws nothing from rng: the rest of the subject is unchanged
        lesion_fraction, lesion_labels, lesion_tissues = draw_lesions(lesion_rng, labels, int(lesions), lesion_kind)
        lesion_parameters = {name: np.array(tissue_table.parameters(name, protocols.field)) * np.exp(
            lesion_rng.normal(0.0, tissue_jitter, size=3)) for name in lesion_tissues}

    def sample(volume, order):
        if resolution == 2 and order == 1:
            for axis in range(3):
                volume = ndimage.convolve1d(volume, [0.25, 0.5, 0.25], axis=axis, mode="nearest")
        return ndimage.map_coordinates(volume, coords, order=order, mode="constant", cval=0.0).reshape(shape)

    structures = sample(labels.astype(np.float32), 0).astype(np.int16)
    brain_mask = sample(mask.astype(np.float32), 1) > 0.5
    dseg = np.where(brain_mask, np.maximum(DSEG[structures], 1), 0).astype(np.uint8)
    blur = rng.uniform(0.3, max(blur_mm, 0.3)) / resolution if blur_mm > 0 else 0.0
    noise_level = noise * rng.uniform(0.25, 1.0)
    white_matter = TISSUE_NAMES.index("cerebral white matter")
    brain_tissues = [TISSUE_NAMES.index(s.tissue) for s in STRUCTURES if s.brain]
    volumes = {}
    acquired = {}
    for contrast in ("T1w", "T2w"):
        sequence = jitter_timings(rng, protocols.sequence(contrast), sequence_jitter)
        acquired[contrast] = sequence
        native = native_signal(sequence, parameters, tissue, fields, fat, fat_parameters)
        if lesion_fraction is not None:
            for name, fraction in lesion_fraction.items():
                native = native * (1.0 - fraction) + float(sequence.signal(*lesion_parameters[name])) * fraction
        clean = sample(native, 1)
        signals = sequence.signal(*parameters.T)
        volumes[contrast] = scan(rng, clean, blur, bias_field, noise_level * float(signals[white_matter]),
                                 float(signals[brain_tissues].max()), protocols.slices(contrast, rng),
                                 float(resolution))
    subject = {"T1w": volumes["T1w"], "T2w": volumes["T2w"], "dseg": dseg, "structures": structures,
               "brain_mask": brain_mask, "affine": affine.copy(), "protocols": protocols.with_sequences(acquired)}
    if lesion_labels is not None:
        subject["lesions"] = sample(lesion_labels.astype(np.float32), 0).astype(np.uint8)
    return subject
