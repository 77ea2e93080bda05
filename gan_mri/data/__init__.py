"""Data for gan-mri: volumes in and out, folder layouts, prepared datasets, and the brain phantom.

Nothing here imports model code. Domain A is T1-weighted, domain B T2-weighted; images are float32,
channels-last, in [-1, 1].

- :mod:`.volumes`: :func:`load_volume`, :func:`volume_to_slices`, :class:`SliceStack` (and back to NIfTI).
- :mod:`.brain_mask`: :func:`brain_mask` (given, the imaged object, or a registered template for a whole head).
- :mod:`.layouts`: BIDS, HCP, IXI, BraTS, explicit globs, GAN-MRI PNG folders; subject-level split.
- :mod:`.dataset`: :func:`prepare` -> :class:`PreparedDataset` (manifest + .npy, tf.data pipelines).
- :mod:`.png`: read/write PNG slices.
- :mod:`.phantom`: :func:`simulate`, the multi-contrast brain phantom: real anatomies by default
  (:mod:`.anatomy`, :mod:`.real_anatomy`, :mod:`.tissues`, :mod:`.protocols`, :mod:`.lesion_kinds`,
  :mod:`.scanner`), the MNI152 template's with ``anatomy="mni152"`` (:mod:`.sequences`, :mod:`.head`).
- :mod:`.icbm152`: the real ICBM 2009c T1w/T2w pair that ships with the package.
"""

from .brain_mask import brain_mask, intensity_mask
from .dataset import DEFAULT_IMAGE_SHAPE, PreparedDataset, prepare
from .layouts import LAYOUTS, VolumeSet, detect_layout, discover, split_subjects
from .phantom import LABELS, TISSUE_PARAMETERS, mni_t1_correlation, simulate, simulate_subject
from .png import read_png, read_png_folder, write_png_slices
from .volumes import SliceStack, label_slices, load_volume, volume_to_slices

__all__ = [
    "DEFAULT_IMAGE_SHAPE",
    "LABELS",
    "LAYOUTS",
    "PreparedDataset",
    "SliceStack",
    "TISSUE_PARAMETERS",
    "VolumeSet",
    "brain_mask",
    "detect_layout",
    "discover",
    "intensity_mask",
    "label_slices",
    "load_volume",
    "mni_t1_correlation",
    "prepare",
    "read_png",
    "read_png_folder",
    "simulate",
    "simulate_subject",
    "split_subjects",
    "volume_to_slices",
    "write_png_slices",
]
