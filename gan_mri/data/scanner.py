"""What a scanner does to the phantom's noise-free image: point-spread blur, thick slices, bias, noise, gain, int16.

Both anatomies of the phantom (:mod:`gan_mri.data.phantom`) hand a noise-free signal volume to :func:`scan`:

1. a Gaussian point-spread blur (``blur`` voxels; the finite k-space of the acquisition);
2. a smooth multiplicative bias field (receive-coil sensitivity), ``exp(bias_field x unit field)``;
3. for a 2D acquisition, axial slices of ``slice_mm`` thickness (a Gaussian slice profile whose full width at half
   maximum is the thickness) every ``slice_mm + gap_mm``, the noise added per acquired slice, then resampled
   to the output grid by linear interpolation along the slice axis, as clinical scans are before they reach a
   research pipeline (BraTS ships them resampled to 1 mm);
4. Rician noise of standard deviation ``sigma`` (complex Gaussian noise, magnitude);
5. a scanner gain that puts ``brightest`` near 1000 (+-20 %), rounded and stored as int16.

:func:`smooth_field` makes the random smooth fields (bias, deformation, texture), :func:`random_pose` a subject's
random rotation and scaling.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.interpolate import interp1d

INT16_MAX = np.iinfo(np.int16).max


def smooth_field(rng, shape, components: int, frequencies: int) -> np.ndarray:
    """Smooth random fields with unit standard deviation, from a low-frequency cosine (DCT) basis.

    ``field(x, y, z) = sum_klm c_klm cos(pi k x') cos(pi l y') cos(pi m z')`` over frequencies
    ``1..frequencies`` per axis (plus 0 on the others), with ``c ~ N(0, 1) / (1 + k^2 + l^2 + m^2)``,
    ``x' = (x + 0.5) / X``. Separable, so it costs a few small tensor products (as SPM's bias basis).
    """
    bases = []
    for size in shape:
        position = (np.arange(size) + 0.5) / size
        bases.append(np.cos(np.pi * np.outer(position, np.arange(frequencies + 1))))
    k = np.arange(frequencies + 1)
    weights = 1.0 / (1.0 + k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    weights[0, 0, 0] = 0.0  # no constant offset
    fields = []
    for _ in range(components):
        coefficients = rng.standard_normal(weights.shape) * weights
        field = np.einsum("klm,xk->xlm", coefficients, bases[0])
        field = np.einsum("xlm,yl->xym", field, bases[1])
        field = np.einsum("xym,zm->xyz", field, bases[2])
        fields.append(field / max(float(field.std()), 1e-12))
    return np.stack(fields).astype(np.float32)


def random_pose(rng, rotation_deg: float, scale_jitter: float) -> np.ndarray:
    """A random 3x3 rotation (each axis up to ``rotation_deg``) after a per-axis scaling (up to ``scale_jitter``):
    how a subject lies in the scanner and how its head's size differs. Draws the three angles, then the scales."""
    angles = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, size=3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx @ np.diag(1.0 + rng.uniform(-scale_jitter, scale_jitter, size=3))


def thick_slices(volume: np.ndarray, voxel_mm: float, slice_mm: float, gap_mm: float, offset_mm: float):
    """Axial slices (along the last axis) of a 2D acquisition: ``(stack, centres)``, the slice images and their
    centres in voxels of ``volume``. A slice is ``volume`` seen through a Gaussian profile of full width at half
    maximum ``slice_mm``; centres every ``slice_mm + gap_mm`` from ``offset_mm``."""
    profile = ndimage.gaussian_filter1d(volume, slice_mm / 2.3548 / voxel_mm, axis=2, mode="nearest")
    length = volume.shape[2]
    centres = np.arange(offset_mm / voxel_mm, length - 1 + 1e-6, (slice_mm + gap_mm) / voxel_mm)
    sampled = interp1d(np.arange(length), profile, axis=2, assume_sorted=True)(centres)
    return sampled.astype(np.float32), centres


def scan(rng, clean: np.ndarray, blur: float, bias_field: float, sigma: float, brightest: float,
         slices: tuple[float, float, float] | None = None, voxel_mm: float = 1.0) -> np.ndarray:
    """The acquired int16 image of a noise-free signal volume (module docstring).

    Args:
        rng: numpy Generator; draws, in order: the bias field, the noise (real, then imaginary part), the gain.
        clean: float32 noise-free signal.
        blur: Gaussian point-spread standard deviation in voxels (0: none).
        bias_field: log standard deviation of the bias field.
        sigma: noise standard deviation, in signal units.
        brightest: the signal that the gain puts near 1000.
        slices: ``(slice_mm, gap_mm, offset_mm)`` of a 2D acquisition, or ``None`` for 3D.
        voxel_mm: voxel size of ``clean`` along the slice axis.

    Returns:
        int16 volume of ``clean``'s shape.
    """
    shape = clean.shape
    if blur > 0:
        clean = ndimage.gaussian_filter(clean, blur)
    bias = np.exp(bias_field * smooth_field(rng, shape, 1, frequencies=3)[0])
    signal = clean * bias
    centres = None
    if slices is not None:
        signal, centres = thick_slices(signal, voxel_mm, *slices)
    real = signal + rng.normal(0.0, sigma, size=signal.shape).astype(np.float32)
    imaginary = rng.normal(0.0, sigma, size=signal.shape).astype(np.float32)
    magnitude = np.sqrt(real * real + imaginary * imaginary)
    if centres is not None:
        # Resampled to the output grid, as clinical 2D scans are before a research pipeline reads them.
        magnitude = interp1d(centres, magnitude, axis=2, bounds_error=False,
                             fill_value=(magnitude[:, :, 0], magnitude[:, :, -1]),
                             assume_sorted=True)(np.arange(shape[2])).astype(np.float32)
    # Scanner gain: the brightest brain tissue lands near 1000 +- 20 % of the int16 range.
    gain = 1000.0 * rng.uniform(0.8, 1.2) / float(brightest)
    return np.clip(np.round(magnitude * gain), 0, INT16_MAX).astype(np.int16)
