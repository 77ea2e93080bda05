"""Real anatomy for the phantom: SynthSeg's 20 whole-head label maps of real subjects.

SynthSeg (Billot et al., Medical Image Analysis 86, 2023, 102789) trains on images synthesized from label
maps; its repository (github.com/BBillot/SynthSeg, Apache-2.0) distributes 20 of its training label maps. They
ship in ``gan_mri/data/synthseg/`` (with SynthSeg's licence, ``LICENSE.txt``), built by
``scripts/make_synthseg_fixture.py``: cropped to the head, codes stored as indices into :data:`CODES` (uint8),
xz-compressed, about 6 MB for all 20 (the repository's files are 32 MB).

Each map labels one real head at 1 mm: the brain structures with FreeSurfer's codes (cortex, white matter,
ventricles, the deep grey nuclei, hippocampus, amygdala, cerebellum, brainstem, and the subjects' own white-matter
lesions, FreeSurfer's ``Left/Right-Lesion``), the choroid plexus, and 11 extra-cerebral codes 5xx. SynthSeg's code
names only 507 ("extra-cerebral soft tissues", its tutorial 2) and the choroid plexus codes are not FreeSurfer's
(SynthSeg issue #119: 136/137 left, 163/164 right); what the others are was read off the maps (docs/phantom.md,
"The anatomies"): each label's volume, position relative to the brain, shape and neighbours in all 20 maps.

:data:`STRUCTURES` says, per code, what it is, which tissue of :mod:`gan_mri.data.tissues` images it, its class
in the phantom's three-class ``dseg`` and whether it lies inside the brain mask.

Example:
    >>> labels, affine = load_label_map(1)          # FreeSurfer codes, RAS voxel order, 1 mm
    >>> structure(labels[80, 100, 120]).name        # doctest: +SKIP
"""

from __future__ import annotations

import functools
import lzma
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np

LABEL_MAPS = 20
"""How many label maps ship (``training_seg_01`` .. ``training_seg_20``)."""


@dataclass(frozen=True)
class Structure:
    """One code of the label maps.

    Attributes:
        code: FreeSurfer code (as in the maps).
        name: what it is.
        tissue: the tissue of :data:`gan_mri.data.tissues.TISSUES` that images it.
        dseg: class in the phantom's tissue labels: 0 outside the brain, 1 CSF, 2 grey matter, 3 white matter.
    """

    code: int
    name: str
    tissue: str
    dseg: int

    @property
    def brain(self) -> bool:
        """Whether the structure is inside the brain mask (brain, ventricles and the CSF around the brain)."""
        return self.dseg > 0


STRUCTURES = (
    Structure(0, "background", "air", 0),
    Structure(2, "left cerebral white matter", "cerebral white matter", 3),
    Structure(3, "left cerebral cortex", "cerebral cortex", 2),
    Structure(4, "left lateral ventricle", "CSF", 1),
    Structure(5, "left inferior lateral ventricle", "CSF", 1),
    Structure(7, "left cerebellum white matter", "cerebellar white matter", 3),
    Structure(8, "left cerebellum cortex", "cerebellar cortex", 2),
    Structure(10, "left thalamus", "thalamus", 2),
    Structure(11, "left caudate", "caudate", 2),
    Structure(12, "left putamen", "putamen", 2),
    Structure(13, "left pallidum", "pallidum", 2),
    Structure(14, "3rd ventricle", "CSF", 1),
    Structure(15, "4th ventricle", "CSF", 1),
    Structure(16, "brainstem", "brainstem", 3),
    Structure(17, "left hippocampus", "hippocampus", 2),
    Structure(18, "left amygdala", "amygdala", 2),
    Structure(24, "CSF (sulci, cisterns, around the brain)", "CSF", 1),
    Structure(25, "left white-matter lesion", "white-matter lesion", 3),
    Structure(26, "left accumbens area", "accumbens", 2),
    Structure(28, "left ventral diencephalon", "ventral diencephalon", 3),
    Structure(30, "left vessel", "blood", 2),
    Structure(41, "right cerebral white matter", "cerebral white matter", 3),
    Structure(42, "right cerebral cortex", "cerebral cortex", 2),
    Structure(43, "right lateral ventricle", "CSF", 1),
    Structure(44, "right inferior lateral ventricle", "CSF", 1),
    Structure(46, "right cerebellum white matter", "cerebellar white matter", 3),
    Structure(47, "right cerebellum cortex", "cerebellar cortex", 2),
    Structure(49, "right thalamus", "thalamus", 2),
    Structure(50, "right caudate", "caudate", 2),
    Structure(51, "right putamen", "putamen", 2),
    Structure(52, "right pallidum", "pallidum", 2),
    Structure(53, "right hippocampus", "hippocampus", 2),
    Structure(54, "right amygdala", "amygdala", 2),
    Structure(57, "right white-matter lesion", "white-matter lesion", 3),
    Structure(58, "right accumbens area", "accumbens", 2),
    Structure(60, "right ventral diencephalon", "ventral diencephalon", 3),
    Structure(62, "right vessel", "blood", 2),
    Structure(72, "5th ventricle (cavum septi pellucidi)", "CSF", 1),
    Structure(85, "optic chiasm", "nerve", 3),
    Structure(136, "left choroid plexus", "choroid plexus", 1),
    Structure(137, "left choroid plexus (inferior horn)", "choroid plexus", 1),
    Structure(163, "right choroid plexus", "choroid plexus", 1),
    Structure(164, "right choroid plexus (inferior horn)", "choroid plexus", 1),
    Structure(502, "large vessels of the neck and skull base (carotids, jugulars)", "blood", 0),
    Structure(506, "eyes (vitreous body)", "vitreous", 0),
    Structure(507, "extra-cerebral soft tissues (muscle, glands, orbital and deep fat)", "soft tissue", 0),
    Structure(508, "extraocular muscles", "muscle", 0),
    Structure(509, "nasal cavity mucosa and turbinates", "mucosa", 0),
    Structure(511, "skin and subcutaneous fat", "scalp", 0),
    Structure(512, "spinal cord", "nerve", 0),
    Structure(514, "dural venous sinuses and extra-cerebral vessels", "blood", 0),
    Structure(515, "cortical bone (skull, skull base, vertebrae)", "bone", 0),
    Structure(516, "bone marrow (diploe, skull base, vertebral bodies)", "marrow", 0),
    Structure(530, "optic nerves", "nerve", 0),
)
CODES = tuple(s.code for s in STRUCTURES)
"""The FreeSurfer codes of the maps, ascending: the shipped files store each voxel's index into this tuple."""
_BY_CODE = {s.code: s for s in STRUCTURES}
assert list(CODES) == sorted(CODES), "STRUCTURES must be in ascending code order (the files index into it)"


def structure(code: int) -> Structure:
    """The :class:`Structure` of a FreeSurfer code of the maps.

    Raises:
        ValueError: for a code the maps do not use.
    """
    try:
        return _BY_CODE[int(code)]
    except KeyError:
        raise ValueError(f"code: expected one of the label maps' codes {list(CODES)}, found {code!r}") from None


def lookup(values: dict, default=0, dtype=np.float32) -> np.ndarray:
    """A table indexed by FreeSurfer code (``table[labels]`` maps a label volume): ``values`` code -> value,
    ``default`` elsewhere."""
    table = np.full(max(CODES) + 1, default, dtype=dtype)
    for code, value in values.items():
        table[int(code)] = value
    return table


def label_map_path(number: int, folder=None) -> Path:
    """Where label map ``number`` (1..20) lives: ``folder`` or the package's ``gan_mri/data/synthseg``."""
    if not 1 <= int(number) <= LABEL_MAPS:
        raise ValueError(f"label map: expected a number from 1 to {LABEL_MAPS}, found {number!r}")
    folder = Path(folder) if folder is not None else Path(str(resources.files("gan_mri.data") / "synthseg"))
    return folder / f"training_seg_{int(number):02d}.nii.xz"


@functools.lru_cache(maxsize=4)
def load_label_map(number: int) -> tuple[np.ndarray, np.ndarray]:
    """One shipped label map (about 0.3 s; the last few are cached).

    Args:
        number: 1..20.

    Returns:
        ``(labels, affine)``: int16 FreeSurfer codes in RAS voxel order (1 mm, cropped to the head) and the 4x4
        voxel-to-scanner affine. The array is read-only (shared by the cache).

    Raises:
        ValueError: for a number outside 1..20.
    """
    image = nib.Nifti1Image.from_bytes(lzma.decompress(label_map_path(number).read_bytes()))
    labels = np.asarray(CODES, dtype=np.int16)[np.asarray(image.dataobj)]
    labels.setflags(write=False)
    return labels, image.affine.copy()


def structures_tsv(codes) -> str:
    """The BIDS lookup table (``index``, ``name``, ``tissue``) of ``codes``, for ``*_desc-structures_dseg.tsv``."""
    rows = "".join(f"{s.code}\t{s.name}\t{s.tissue}\n" for s in STRUCTURES if s.code in set(int(c) for c in codes))
    return "index\tname\ttissue\n" + rows
