"""Fit 2D slices into the configured image shape, and undo it.

Two methods, both reversible up to interpolation:

- ``"fit"`` (default): scale the plane by one factor (aspect ratio kept) so that it fits inside the
  target shape, then centre-pad. Works for any voxel grid (1 mm HCP, 2 mm phantom, PNGs).
- ``"pad"``: no interpolation; centre-pad or centre-crop to the target shape. Keeps the voxel size
  exactly (what the GAN-MRI lineage did with its 304x256 crops); cropped borders are lost.

The :class:`PlaneFit` records everything needed to map a translated slice back onto the source grid.
Resampling uses :func:`skimage.transform.resize` (bilinear for intensities, nearest for labels and
masks), which is deterministic, so the same input gives the same bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from skimage.transform import resize as _sk_resize

RESIZE_METHODS = ("fit", "pad")


@dataclass(frozen=True)
class PlaneFit:
    """How one in-plane grid maps onto the target image shape.

    Attributes:
        source_shape: ``(h, w)`` of the plane before fitting.
        scaled_shape: ``(h', w')`` after scaling (equal to ``source_shape`` for ``"pad"``).
        target_shape: ``(H, W)`` of the output image.
        offset: ``(top, left)`` of the scaled plane inside the target; negative means cropped.
        method: ``"fit"`` or ``"pad"``.
    """

    source_shape: tuple[int, int]
    scaled_shape: tuple[int, int]
    target_shape: tuple[int, int]
    offset: tuple[int, int]
    method: str

    def to_dict(self) -> dict:
        """Return a JSON-ready dict (lists instead of tuples)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "PlaneFit":
        """Inverse of :meth:`to_dict`."""
        return cls(
            source_shape=tuple(data["source_shape"]),
            scaled_shape=tuple(data["scaled_shape"]),
            target_shape=tuple(data["target_shape"]),
            offset=tuple(data["offset"]),
            method=data["method"],
        )


def validate_image_shape(image_shape) -> tuple[int, int]:
    """Return ``image_shape`` as a tuple of two positive ints.

    Raises:
        ValueError: if it is not two positive integers.
    """
    try:
        height, width = (int(v) for v in image_shape)
    except (TypeError, ValueError):
        raise ValueError(f"image_shape: expected (height, width), found {image_shape!r}") from None
    if height < 8 or width < 8:
        raise ValueError(f"image_shape: expected both sides >= 8, found {image_shape!r}")
    return height, width


def plan_plane_fit(source_shape, target_shape, method: str = "fit") -> PlaneFit:
    """Compute the :class:`PlaneFit` for a plane of ``source_shape`` into ``target_shape``.

    Raises:
        ValueError: for an unknown ``method``.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"resize: expected one of {RESIZE_METHODS}, found {method!r}")
    source = (int(source_shape[0]), int(source_shape[1]))
    target = validate_image_shape(target_shape)
    if method == "fit":
        scale = min(target[0] / source[0], target[1] / source[1])
        scaled = (
            min(target[0], max(1, int(round(source[0] * scale)))),
            min(target[1], max(1, int(round(source[1] * scale)))),
        )
    else:
        scaled = source
    # Floor division keeps the plane centred and gives negative offsets (a crop) when it is larger.
    offset = ((target[0] - scaled[0]) // 2, (target[1] - scaled[1]) // 2)
    return PlaneFit(source, scaled, target, offset, method)


def _place(plane: np.ndarray, out_shape, offset, fill) -> np.ndarray:
    """Copy ``plane`` into a canvas of ``out_shape`` at ``offset`` (negative offsets crop)."""
    canvas = np.full(out_shape, fill, dtype=plane.dtype)
    top, left = offset
    src_r0, src_c0 = max(0, -top), max(0, -left)
    dst_r0, dst_c0 = max(0, top), max(0, left)
    rows = min(plane.shape[0] - src_r0, out_shape[0] - dst_r0)
    cols = min(plane.shape[1] - src_c0, out_shape[1] - dst_c0)
    if rows > 0 and cols > 0:
        canvas[dst_r0 : dst_r0 + rows, dst_c0 : dst_c0 + cols] = plane[src_r0 : src_r0 + rows, src_c0 : src_c0 + cols]
    return canvas


def _resample(plane: np.ndarray, shape, order: int) -> np.ndarray:
    if tuple(plane.shape) == tuple(shape):
        return plane
    downsampling = shape[0] < plane.shape[0] or shape[1] < plane.shape[1]
    resized = _sk_resize(
        plane.astype(np.float64 if order else plane.dtype, copy=False),
        shape,
        order=order,
        mode="edge",
        preserve_range=True,
        # Anti-aliasing only for intensities: labels must stay labels.
        anti_aliasing=bool(order) and downsampling,
    )
    return resized.astype(plane.dtype, copy=False)


def fit_plane(plane: np.ndarray, plan: PlaneFit, order: int = 1, fill=0) -> np.ndarray:
    """Map a 2D ``plane`` of ``plan.source_shape`` onto ``plan.target_shape``.

    Args:
        plane: 2D array.
        plan: from :func:`plan_plane_fit`.
        order: 1 (bilinear) for intensities, 0 (nearest) for masks and labels.
        fill: value for the padded border.

    Returns:
        Array of ``plan.target_shape`` with ``plane``'s dtype.
    """
    scaled = _resample(plane, plan.scaled_shape, order)
    return _place(scaled, plan.target_shape, plan.offset, fill)


def unfit_plane(image: np.ndarray, plan: PlaneFit, order: int = 1, fill=0) -> np.ndarray:
    """Inverse of :func:`fit_plane`: map a target-shape image back to ``plan.source_shape``."""
    scaled = _place(image, plan.scaled_shape, (-plan.offset[0], -plan.offset[1]), fill)
    return _resample(scaled, plan.source_shape, order)
