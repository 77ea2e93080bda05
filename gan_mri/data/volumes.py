"""Volumes in: read, validate, reorient, mask, normalize and slice 3D MR volumes, and back again.

The forward path (:func:`volume_to_slices`):

1. reorient to the closest canonical orientation (RAS+) so every input, whatever its voxel order
   (LPS DICOM conversions, sagittal IXI T1s), gives the same axial slices. Where the voxel grid cannot
   be sliced as it is (an oblique acquisition, or voxels that are not square in the axial plane, as an
   IXI T1w's 1.2 x 0.94 mm), or where a slice spacing in millimetres is asked for, the volume is
   resampled through its affine onto a world-aligned RAS grid (:class:`SliceGrid`, nibabel's
   ``resample_from_to``), so that every acquisition of one head gives the same slices;
2. take axial slices (RAS axis 2) and show them radiologist-style: anterior at the top, the
   subject's left on the image's left (array ``canonical[:, ::-1, k].T``);
3. take the brain mask given (callers find it with :func:`gan_mri.data.brain_mask.brain_mask`; without
   one, the imaged object of :func:`gan_mri.data.brain_mask.intensity_mask`) and keep the slices whose
   brain area is at least ``min_brain_fraction`` of the largest axial brain cross-section (or all of
   them with ``keep_all=True``, as whole-volume inference needs);
4. normalize intensities to [-1, 1]: ``low`` is a low percentile of the whole volume (the background
   level, robust to negative interpolation ringing), ``high`` a high percentile inside the brain
   (the brightest tissue, robust to vessels and outliers); ``y = clip(2 (x - low) / (high - low) - 1)``;
5. fit each slice into the configured shape (:mod:`gan_mri.data.resize`).

:class:`SliceStack` keeps the normalization, the kept slice indices, the in-plane fit and the input's
affine, shape, orientation and header, so :meth:`SliceStack.to_volume` writes translated slices
back on the input's grid and intensity scale.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations
from nibabel.processing import resample_from_to

from .brain_mask import intensity_mask
from .resize import PlaneFit, fit_plane, plan_plane_fit, unfit_plane, validate_image_shape

logger = logging.getLogger(__name__)

DEFAULT_PERCENTILES = (1.0, 99.5)
DEFAULT_MIN_BRAIN_FRACTION = 0.25
_RAS = orientations.axcodes2ornt(("R", "A", "S"))
_COMPRESSED_SUFFIXES = tuple(ext for ext in nib.openers.ImageOpener.compress_ext_map if ext)  # .gz, .bz2, .zst, .mgz
OBLIQUE_DEGREES = 0.5
"""An affine whose voxel axes are further than this from the world axes is resampled, not reoriented."""
ANISOTROPY = 0.01
"""Axial-plane voxel sizes that differ by more than this fraction are resampled to square pixels."""
DEFAULT_MAX_VOXELS = 512**3
"""Largest volume :func:`load_volume` reads by default (0.5 GiB as float32); a hostile or broken
header claiming more is refused before any voxel is read (raise it with ``max_voxels``)."""


def load_volume(path, max_voxels: int = DEFAULT_MAX_VOXELS) -> nib.spatialimages.SpatialImage:
    """Read and validate one 3D volume (anything nibabel reads: NIfTI-1/2, Analyze, MGH, ...).

    Args:
        path: file path.
        max_voxels: refuse volumes whose header claims more voxels than this.

    Returns:
        An in-memory image of the same class with float32 data (a trailing axis of length 1 is
        dropped), the input's affine and header.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file, if it is not a readable image, is a surface file (CIFTI-2,
            GIFTI) or another image without a voxel grid and affine, is truncated or corrupt (its
            header claims more voxel data than the file holds), claims more than ``max_voxels``
            voxels, has a singular affine, holds RGB or complex voxels, is not 3D, contains NaN/Inf
            voxels, or is all zero.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    image = _read_image(path)
    _check_header(path, image, max_voxels)
    shape = tuple(int(v) for v in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"{path}: expected a 3D volume, found shape {tuple(image.shape)} ({len(image.shape)}D)")
    try:
        data = np.asarray(image.dataobj, dtype=np.float32).reshape(shape)
    except (EOFError, OSError, zlib.error, ValueError) as error:
        raise ValueError(f"{path}: truncated or corrupt image data: {error}") from None
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise ValueError(f"{path}: expected finite intensities, found {bad} NaN/Inf voxels")
    if not np.any(data):
        raise ValueError(f"{path}: all voxels are zero (expected an image with signal)")
    header = image.header.copy()
    header.set_data_dtype(np.float32)
    try:
        loaded = type(image)(data, image.affine, header)
    except Exception:  # formats whose constructor wants other arguments: fall back to NIfTI-1
        loaded = nib.Nifti1Image(data, image.affine)
    return loaded


def _check_header(path: Path, image, max_voxels: int) -> None:
    """Refuses a header that cannot describe a real MR volume, before any voxel is read."""
    _refuse_non_volume(path, image)
    shape = tuple(int(v) for v in image.shape)
    voxels = int(np.prod(shape, dtype=np.int64)) if shape else 0
    if voxels > max_voxels:
        raise ValueError(f"{path}: header claims {voxels} voxels (shape {shape}), more than the limit of "
                         f"{max_voxels} (raise it with --max-voxels if the volume is real)")
    dtype = image.get_data_dtype()
    if dtype.fields is not None or dtype.kind == "V":
        raise ValueError(f"{path}: voxels of type {dtype} (RGB/color), expected one scalar intensity per voxel "
                         f"(convert to grayscale first)")
    if dtype.kind == "c":
        raise ValueError(f"{path}: complex voxels ({dtype}), expected real intensities (store the magnitude, "
                         f"e.g. numpy.abs, first)")
    offset = getattr(image.dataobj, "offset", None)
    file_like = getattr(image.dataobj, "file_like", None)
    if offset is not None and file_like is not None:
        if isinstance(file_like, (str, Path)):  # a compressed file (.mgz too) holds fewer bytes than it decodes to
            compressed = str(file_like).lower().endswith(_COMPRESSED_SUFFIXES)
            size = None if compressed else Path(file_like).stat().st_size
        else:  # in-memory bytes of a decompressed .nii.gz
            size = len(file_like.getbuffer()) if hasattr(file_like, "getbuffer") else None
        claimed = int(offset) + voxels * dtype.itemsize
        if size is not None and claimed > size:
            raise ValueError(f"{path}: truncated or corrupt: the header claims {claimed} bytes of image "
                             f"(shape {shape}, {dtype}), the file holds {size}")
    linear = np.asarray(image.affine, dtype=np.float64)[:3, :3]
    if not np.all(np.isfinite(linear)) or abs(np.linalg.det(linear)) < 1e-12:
        raise ValueError(f"{path}: singular or non-finite affine (voxel-to-world matrix), expected an invertible "
                         f"one: fix the header's qform/sform or pixdim")


_NO_GRID = "with no voxel grid or affine"
_CIFTI_EXTENSION = 32  # NIfTI header extension code of the CIFTI-2 XML


def _refuse_non_volume(path: Path, image) -> None:
    """Refuses what nibabel reads but is no volume: CIFTI-2 and GIFTI surface files, images without an affine.

    A CIFTI-2 ``.nii`` read from gzip bytes is a NIfTI-2 image (shape ``(1, 1, 1, 1, ...)``) that
    carries the CIFTI extension; it is named as CIFTI too, not as a 6D volume.
    """
    if isinstance(image, nib.Cifti2Image) or _has_cifti_extension(image):
        header = image.nifti_header if isinstance(image, nib.Cifti2Image) else image.header
        raise ValueError(f"{path}: expected a 3D volume, found a CIFTI-2 file (intent {header.get_intent()[0]}): "
                         f"data on surface vertices and grayordinates, {_NO_GRID}")
    if isinstance(image, nib.GiftiImage):
        _refuse_gifti(path, image)
    if not isinstance(image, nib.spatialimages.SpatialImage) or image.affine is None:
        raise ValueError(f"{path}: expected a 3D volume with a voxel-to-world affine, found a "
                         f"{type(image).__name__} {_NO_GRID}")


def _has_cifti_extension(image) -> bool:
    extensions = getattr(getattr(image, "header", None), "extensions", None) or ()
    return any(extension.get_code() == _CIFTI_EXTENSION for extension in extensions)


def _refuse_gifti(path: Path, image=None) -> None:
    """Refuses a GIFTI surface file, naming its data arrays' intents when ``image`` was parsed."""
    found = "a GIFTI surface file"
    if image is not None:
        labels = nib.nifti1.intent_codes.label
        intents = sorted({labels.get(array.intent, str(array.intent)) for array in image.darrays})
        count = len(image.darrays)
        found += f" ({count} data array{'s' if count != 1 else ''}: {', '.join(intents)})"
    raise ValueError(f"{path}: expected a 3D volume, found {found}: data on surface vertices, {_NO_GRID}")


def _refuse_gifti_bytes(path: Path, data: bytes | None = None) -> None:
    """Refuses a GIFTI file that nibabel did not read because its name is a volume's (``*_T1w.nii``).

    Args:
        path: the file.
        data: its (decompressed) bytes; default: read from ``path`` once its start looks like GIFTI.
    """
    if data is None:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    else:
        head = data[:4096]
    if not (head.lstrip().startswith(b"<?xml") and b"<GIFTI" in head):
        return
    try:
        image = nib.GiftiImage.from_bytes(data if data is not None else path.read_bytes())
    except Exception:  # an unreadable GIFTI is still a GIFTI: name it without its arrays
        image = None
    _refuse_gifti(path, image)


def _read_image(path: Path):
    """nibabel image of ``path``; gzip files are decompressed to the end first.

    nibabel reads a .nii.gz lazily and stops after the voxels it needs, so it never reaches the gzip
    CRC and a corrupted stream can decode into garbage voxels. Reading to the end checks the CRC and
    the length (one decompression, not two: the NIfTI is then parsed from the bytes).
    """
    if path.name.lower().endswith(".gz"):
        with open(path, "rb") as handle:
            magic = handle.read(2)
        if magic != b"\x1f\x8b":
            raise ValueError(f"{path}: not a readable image (named .gz but not gzip-compressed)")
        try:
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        except (EOFError, OSError, zlib.error) as error:
            raise ValueError(f"{path}: truncated or corrupt gzip data: {error}") from None
        # The header size says the NIfTI flavour; trying the other one first makes nibabel log
        # "sizeof_hdr should be ..." lines to stderr.
        sizeof_hdr = {int.from_bytes(raw[:4], order) for order in ("little", "big")}
        image_class = nib.Nifti1Image if 348 in sizeof_hdr else nib.Nifti2Image if 540 in sizeof_hdr else None
        if image_class is not None:
            try:
                return image_class.from_bytes(raw)
            except Exception:  # a damaged NIfTI header: nibabel's own loader below says what is wrong
                pass
        _refuse_gifti_bytes(path, raw)
    try:
        return nib.load(str(path))
    except Exception as error:  # nibabel raises several types for non-images
        _refuse_gifti_bytes(path)
        raise ValueError(f"{path}: not a readable image (expected NIfTI or another nibabel format): {error}") from None


def normalize_intensities(data: np.ndarray, mask: np.ndarray, percentiles=DEFAULT_PERCENTILES):
    """Map intensities to [-1, 1] robustly.

    ``low = percentile(data, p_low)`` over the whole volume, ``high = percentile(data[mask], p_high)``,
    ``y = clip(2 (x - low) / (high - low) - 1, -1, 1)``.

    Args:
        data: array of intensities.
        mask: boolean brain mask of the same shape.
        percentiles: ``(p_low, p_high)``.

    Returns:
        ``(normalized float32 array, normalization dict)`` with keys ``low``, ``high``,
        ``low_percentile``, ``high_percentile``.

    Raises:
        ValueError: if the mask is empty or the volume has no contrast between the percentiles.
    """
    p_low, p_high = (float(p) for p in percentiles)
    if not 0.0 <= p_low < p_high <= 100.0:
        raise ValueError(f"percentiles: expected 0 <= low < high <= 100, found {percentiles!r}")
    if not np.any(mask):
        raise ValueError("brain_mask: expected at least one brain voxel, found none")
    low = float(np.percentile(data, p_low))
    high = float(np.percentile(data[mask], p_high))
    if not high > low:
        raise ValueError(
            f"intensities: expected the {p_high} percentile inside the brain ({high}) above the "
            f"{p_low} percentile of the volume ({low}); the volume has no contrast"
        )
    params = {"low": low, "high": high, "low_percentile": p_low, "high_percentile": p_high}
    return apply_normalization(data, params), params


def apply_normalization(data: np.ndarray, params: dict) -> np.ndarray:
    """Apply a normalization dict from :func:`normalize_intensities` (clipped to [-1, 1])."""
    low, high = params["low"], params["high"]
    scaled = 2.0 * (np.asarray(data, dtype=np.float64) - low) / (high - low) - 1.0
    return np.clip(scaled, -1.0, 1.0).astype(np.float32)


def invert_normalization(normalized: np.ndarray, params: dict) -> np.ndarray:
    """Inverse of :func:`apply_normalization`: ``x = (y + 1) / 2 (high - low) + low`` (float32)."""
    low, high = params["low"], params["high"]
    values = np.clip(np.asarray(normalized, dtype=np.float64), -1.0, 1.0)
    return ((values + 1.0) * 0.5 * (high - low) + low).astype(np.float32)


def _axial_plane(canonical: np.ndarray, index: int) -> np.ndarray:
    # RAS axis 1 runs posterior -> anterior; reversed and transposed puts anterior at the top.
    return canonical[:, ::-1, index].T


def _plane_to_axial(plane: np.ndarray) -> np.ndarray:
    return plane.T[:, ::-1]


def _as_array(image_or_array, name: str) -> np.ndarray:
    if isinstance(image_or_array, nib.spatialimages.SpatialImage):
        return np.asarray(image_or_array.dataobj)
    if isinstance(image_or_array, np.ndarray):
        return image_or_array
    raise ValueError(f"{name}: expected a nibabel image or a numpy array, found {type(image_or_array).__name__}")


@dataclass(frozen=True)
class SliceGrid:
    """A world-aligned RAS voxel grid that axial slices are taken from: axis 0 runs to the right,
    axis 1 to the front, axis 2 upwards, with square axial pixels.

    Attributes:
        shape: ``(x, y, z)`` voxel counts.
        affine: 4x4 voxel-to-world affine, diagonal in its upper 3x3.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray = field(compare=False)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel sizes in mm (in-plane, in-plane, between slices)."""
        return tuple(float(v) for v in np.diag(self.affine)[:3])

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"shape": list(self.shape), "affine": np.round(self.affine, 6).tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "SliceGrid":
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(int(v) for v in data["shape"]), np.asarray(data["affine"], dtype=np.float64))

    def resample(self, array: np.ndarray, affine: np.ndarray, order: int, fill: float) -> np.ndarray:
        """``array`` (on the grid of ``affine``) resampled onto this grid (nibabel, spline ``order``)."""
        source = nib.Nifti1Image(np.asarray(array, dtype=np.float32), np.asarray(affine, dtype=np.float64))
        return np.asarray(resample_from_to(source, (self.shape, self.affine), order=order, cval=fill).dataobj)

    def resample_back(self, array: np.ndarray, shape, affine: np.ndarray, order: int, fill: float) -> np.ndarray:
        """Inverse of :meth:`resample`: ``array`` on this grid, resampled onto ``(shape, affine)``."""
        source = nib.Nifti1Image(np.asarray(array, dtype=np.float32), self.affine)
        target = (tuple(int(v) for v in shape), np.asarray(affine, dtype=np.float64))
        return np.asarray(resample_from_to(source, target, order=order, cval=fill).dataobj)


def _world_box(shape, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest world coordinates of the voxel centres of a grid."""
    corners = np.array(np.meshgrid(*[(0, int(n) - 1) for n in shape], indexing="ij")).reshape(3, -1)
    world = nib.affines.apply_affine(affine, corners.T)
    return world.min(axis=0), world.max(axis=0)


def slice_grid(image, image_shape=None, spacing: float | None = None, brain_mask=None) -> SliceGrid | None:
    """The grid a volume's axial slices are taken from, or ``None`` where its own voxel grid serves.

    - ``spacing`` given (millimetres per pixel): ``image_shape`` pixels at ``spacing`` mm, centred on the
      brain mask's centre of mass (``brain_mask``, else the whole volume), slices every
      ``spacing`` mm through the volume's extent; pixels and slices lie on the world's ``spacing``-mm
      lattice. Every acquisition of a head then gives the same slices,
      whatever its voxel size, field of view or obliquity.
    - ``spacing`` not given: ``None`` for an axis-aligned volume with square axial voxels (sliced as it is,
      then fitted into the image shape); otherwise the volume's extent on a world-aligned grid whose
      axial pixels are the smallest in-plane voxel size and whose slice spacing is the voxel size closest
      to the superior axis (oblique: the smallest voxel size).

    Args:
        image: a 3D nibabel image.
        image_shape: ``(H, W)`` of the slices; needed with ``spacing``.
        spacing: in-plane and through-plane spacing in mm, or ``None``.
        brain_mask: optional mask on the image's grid, to centre the slices on.

    Raises:
        ValueError: for a spacing that is not a positive number, or a spacing without ``image_shape``.
    """
    affine = np.asarray(image.affine, dtype=np.float64)
    shape = tuple(int(v) for v in image.shape[:3])
    low, high = _world_box(shape, affine)
    if spacing is not None:
        try:
            step = float(spacing)
        except (TypeError, ValueError):
            step = float("nan")
        if not step > 0 or not np.isfinite(step):
            raise ValueError(f"spacing: expected a positive number of millimetres, found {spacing!r}")
        if image_shape is None:
            raise ValueError("spacing: needs the image shape of the slices")
        height, width = validate_image_shape(image_shape)
        if brain_mask is not None and np.any(brain_mask):
            # The centre of mass moves with the head, whatever the grid (a bounding box of voxels does not).
            centre = nib.affines.apply_affine(affine, np.argwhere(np.asarray(brain_mask) > 0).mean(axis=0))
        else:
            centre = (low + high) / 2.0
        # Pixels and slices on the world's lattice of `step` mm, so that two acquisitions of a head in one
        # world frame give the same planes even when their masks' centres differ by part of a voxel.
        centre = np.round(centre / step) * step
        bottom = np.ceil(low[2] / step - 1e-6) * step
        count = int(np.floor((high[2] - bottom) / step)) + 1
        origin = [centre[0] - (width - 1) / 2.0 * step, centre[1] - (height - 1) / 2.0 * step, bottom]
        return SliceGrid((width, height, count), nib.affines.from_matvec(np.diag([step] * 3), origin))
    sizes = nib.affines.voxel_sizes(affine)
    ornt = orientations.io_orientation(affine)
    axis_of = {int(world): voxel_axis for voxel_axis, world in enumerate(ornt[:, 0])}
    oblique = float(np.degrees(np.max(nib.affines.obliquity(affine)))) > OBLIQUE_DEGREES
    in_plane = (sizes[axis_of[0]], sizes[axis_of[1]])
    if not oblique and abs(in_plane[0] - in_plane[1]) <= ANISOTROPY * max(in_plane):
        return None
    step = float(np.min(sizes)) if oblique else float(min(in_plane))
    through = step if oblique else float(sizes[axis_of[2]])
    counts = [int(np.floor((high[i] - low[i]) / size)) + 1 for i, size in enumerate((step, step, through))]
    logger.debug("slicing on a %s grid of %.2f x %.2f x %.2f mm", "world-aligned" if oblique else "square-pixel",
                 step, step, through)
    return SliceGrid(tuple(counts), nib.affines.from_matvec(np.diag([step, step, through]), low))


def to_slice_grid(image, array: np.ndarray, grid: SliceGrid | None, order: int = 1, fill: float = 0.0) -> np.ndarray:
    """``array`` (the image's voxel order) as the RAS volume the axial slices are cut from: reoriented when
    ``grid`` is ``None``, resampled onto ``grid`` (spline ``order``, ``fill`` outside) otherwise."""
    if grid is None:
        return to_canonical(image, array)
    return grid.resample(array, image.affine, order, fill)


@dataclass
class SliceStack:
    """Axial slices of one volume, with everything needed to put translated slices back.

    Attributes:
        slices: float32 ``(N, H, W, C)`` in [-1, 1].
        brain_mask: bool ``(N, H, W)``.
        slice_indices: int ``(N,)`` axial indices in the canonical (RAS) volume.
        normalization: ``{"low", "high", "low_percentile", "high_percentile"}``.
        plane_fit: in-plane mapping onto ``(H, W)``.
        affine: the input's 4x4 affine.
        shape: the input's 3D shape.
        header: the input's header (copied into the output of :meth:`to_volume`).
        grid: the :class:`SliceGrid` the slices were resampled onto, or ``None`` (the input's own voxels,
            reoriented).
    """

    slices: np.ndarray
    brain_mask: np.ndarray
    slice_indices: np.ndarray
    normalization: dict
    plane_fit: PlaneFit
    affine: np.ndarray
    shape: tuple[int, int, int]
    header: object = field(default=None, repr=False)
    grid: SliceGrid | None = None

    @property
    def orientation(self) -> tuple[str, str, str]:
        """Axis codes of the input volume, e.g. ``("L", "P", "S")``."""
        return tuple(nib.aff2axcodes(self.affine))

    @property
    def canonical_shape(self) -> tuple[int, int, int]:
        """Shape of the volume the slices are cut from: the slice grid, or the input reoriented to RAS."""
        if self.grid is not None:
            return self.grid.shape
        ornt = orientations.io_orientation(self.affine)
        return tuple(int(self.shape[int(axis)]) for axis in np.argsort(ornt[:, 0]))

    def to_volume(self, translated_slices, intensities: bool = True) -> nib.Nifti1Image:
        """Write slices (e.g. translations of :attr:`slices`) back on the input's grid.

        Args:
            translated_slices: ``(N, H, W)`` or ``(N, H, W, C)`` in [-1, 1], N = ``len(slice_indices)``;
                with C > 1 the channel mean is used.
            intensities: map them back to the input's intensity scale (inverse normalization); with
                ``False`` the values are written as they are (e.g. an uncertainty map), 0 where no slice is.

        Returns:
            A float32 ``Nifti1Image`` with the input's shape, affine and orientation, intensities on
            the input's scale (inverse normalization). Axial slices that were not kept hold the
            background level ``normalization["low"]``.

        Raises:
            ValueError: if the slice count or the image shape do not match.
        """
        array = np.asarray(translated_slices, dtype=np.float32)
        if array.ndim == 4:
            array = array.mean(axis=-1)
        expected = (len(self.slice_indices), *self.plane_fit.target_shape)
        if array.ndim != 3 or tuple(array.shape) != expected:
            raise ValueError(
                f"translated_slices: expected shape {expected} (+ channels), found {tuple(np.shape(translated_slices))}"
            )
        low = self.normalization["low"] if intensities else 0.0
        canonical = np.full(self.canonical_shape, low, dtype=np.float32)
        for image, index in zip(array, self.slice_indices):
            plane = unfit_plane(image, self.plane_fit, order=1, fill=-1.0 if intensities else 0.0)
            if intensities:
                plane = invert_normalization(plane, self.normalization)
            canonical[:, :, int(index)] = _plane_to_axial(plane)
        if self.grid is not None:
            data = self.grid.resample_back(canonical, self.shape, self.affine, order=1, fill=low).astype(np.float32)
        else:
            to_input = orientations.ornt_transform(_RAS, orientations.io_orientation(self.affine))
            data = orientations.apply_orientation(canonical, to_input).astype(np.float32)
        header = self.header.copy() if isinstance(self.header, nib.Nifti1Header) else None
        output = nib.Nifti1Image(data, self.affine, header=header)
        output.set_data_dtype(np.float32)
        output.header.set_slope_inter(1.0, 0.0)
        return output


def select_slices(canonical_mask: np.ndarray, min_brain_fraction: float) -> np.ndarray:
    """Axial indices whose brain area is >= ``min_brain_fraction`` of the largest cross-section."""
    if not 0.0 <= min_brain_fraction <= 1.0:
        raise ValueError(f"min_brain_fraction: expected a value in [0, 1], found {min_brain_fraction}")
    areas = canonical_mask.reshape(-1, canonical_mask.shape[2]).sum(axis=0)
    if areas.max() == 0:
        return np.zeros(0, dtype=np.int64)
    keep = (areas > 0) & (areas >= min_brain_fraction * areas.max())
    return np.flatnonzero(keep).astype(np.int64)


def to_canonical(image, array: np.ndarray | None = None) -> np.ndarray:
    """Reorder ``array`` (default: the image's data) from the image's voxel order to RAS."""
    data = np.asarray(image.dataobj) if array is None else array
    return orientations.apply_orientation(data, orientations.io_orientation(image.affine))


def volume_to_slices(
    image,
    image_shape,
    channels: int = 1,
    brain_mask=None,
    min_brain_fraction: float = DEFAULT_MIN_BRAIN_FRACTION,
    keep_all: bool = False,
    percentiles=DEFAULT_PERCENTILES,
    resize: str = "fit",
    slice_indices=None,
    spacing: float | None = None,
    grid: SliceGrid | None = None,
) -> SliceStack:
    """Turn one volume into normalized axial slices of ``image_shape``.

    Args:
        image: a nibabel image (e.g. from :func:`load_volume`).
        image_shape: ``(H, W)`` of the output slices.
        channels: 1, or 3 to replicate the gray channel for RGB presets.
        brain_mask: optional mask (image or array, input voxel order); the imaged object
            (:func:`gan_mri.data.brain_mask.intensity_mask`) when ``None``.
        min_brain_fraction: keep slices whose brain area is at least this fraction of the largest one.
        keep_all: keep every axial slice (whole-volume inference).
        percentiles: ``(p_low, p_high)`` for :func:`normalize_intensities`.
        resize: ``"fit"`` or ``"pad"`` (see :mod:`gan_mri.data.resize`).
        slice_indices: explicit canonical axial indices to keep (e.g. the same slices of a T1w/T2w
            pair); overrides ``min_brain_fraction`` and ``keep_all``.
        spacing: slice pixels of this many millimetres, centred on the brain (:func:`slice_grid`); by
            default the volume's own voxels, resampled only when oblique or not square in-plane.
        grid: the :class:`SliceGrid` to slice on (e.g. the T1w's, for its T2w); overrides ``spacing``.

    Returns:
        A :class:`SliceStack`.

    Raises:
        ValueError: for a bad ``channels``, ``image_shape``, ``spacing``, mask shape or slice index.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, found {channels!r}")
    target = validate_image_shape(image_shape)
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"image: expected a 3D volume, found shape {data.shape}")
    if brain_mask is None:
        mask = intensity_mask(data)
    else:
        given = np.asarray(_as_array(brain_mask, "brain_mask"))
        if given.ndim == 4 and given.shape[3] == 1:
            given = given[..., 0]
        if tuple(given.shape) != tuple(data.shape):
            raise ValueError(f"brain_mask: expected shape {data.shape} (the image's), found {given.shape}")
        mask = given > 0
    normalized, params = normalize_intensities(data, mask, percentiles)
    grid = grid if grid is not None else slice_grid(image, target, spacing, mask)
    canonical = to_slice_grid(image, normalized, grid, order=1, fill=-1.0)
    canonical_mask = to_slice_grid(image, mask, grid, order=0) > 0
    if slice_indices is not None:
        indices = np.asarray(slice_indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= canonical.shape[2]):
            raise ValueError(
                f"slice_indices: expected values in [0, {canonical.shape[2]}), found {indices.min()}..{indices.max()}"
            )
    elif keep_all:
        indices = np.arange(canonical.shape[2], dtype=np.int64)
    else:
        indices = select_slices(canonical_mask, min_brain_fraction)
    plan = plan_plane_fit(_axial_plane(canonical, 0).shape, target, resize)
    slices = np.empty((len(indices), *target), dtype=np.float32)
    masks = np.empty((len(indices), *target), dtype=bool)
    for row, index in enumerate(indices):
        slices[row] = fit_plane(_axial_plane(canonical, index), plan, order=1, fill=-1.0)
        masks[row] = fit_plane(_axial_plane(canonical_mask, index), plan, order=0, fill=False)
    np.clip(slices, -1.0, 1.0, out=slices)
    stacked = np.repeat(slices[..., None], channels, axis=-1)
    return SliceStack(
        slices=stacked,
        brain_mask=masks,
        slice_indices=indices,
        normalization=params,
        plane_fit=plan,
        affine=np.asarray(image.affine, dtype=np.float64),
        shape=tuple(int(v) for v in data.shape),
        header=image.header.copy() if hasattr(image, "header") else None,
        grid=grid,
    )


def label_slices(labels, stack: SliceStack, reference=None) -> np.ndarray:
    """Resample a label (or mask) volume onto the slices of ``stack`` (nearest neighbour).

    Args:
        labels: image or array in the voxel order of the volume ``stack`` came from (or of
            ``reference`` when given).
        stack: the :class:`SliceStack` whose slices the labels must match.
        reference: image whose affine gives the voxel order of ``labels``; default: ``stack.affine``.

    Returns:
        ``(N, H, W)`` array of the labels' dtype.

    Raises:
        ValueError: if the label volume's shape differs from the stack's input shape.
    """
    array = np.asarray(_as_array(labels, "labels"))
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if tuple(array.shape) != tuple(stack.shape):
        raise ValueError(f"labels: expected shape {tuple(stack.shape)} (the image's), found {tuple(array.shape)}")
    affine = stack.affine if reference is None else reference.affine
    if stack.grid is not None:
        canonical = stack.grid.resample(array, affine, order=0, fill=0).astype(array.dtype)
    else:
        canonical = orientations.apply_orientation(array, orientations.io_orientation(affine))
    out = np.empty((len(stack.slice_indices), *stack.plane_fit.target_shape), dtype=array.dtype)
    for row, index in enumerate(stack.slice_indices):
        out[row] = fit_plane(_axial_plane(canonical, int(index)), stack.plane_fit, order=0, fill=0)
    return out
