"""Build gan_mri/data/synthseg/ (the phantom's real anatomies) from SynthSeg's 20 training label maps.

SynthSeg (Billot et al., Medical Image Analysis 86, 2023, 102789; github.com/BBillot/SynthSeg, Apache-2.0)
distributes 20 whole-head label maps, ``data/training_label_maps/training_seg_01..20.nii.gz``: 256^3 voxels of
1 mm, float32 FreeSurfer codes (about 30 brain structures and 11 extra-cerebral codes 5xx; about 32 MB in all).
This script, run once by a maintainer, writes for each map ``training_seg_XX.nii.xz``:

- reoriented to RAS, cropped to the head (the bounding box of non-zero labels; the affine keeps the crop's
  origin), about 160 x 215 x 210 voxels;
- the FreeSurfer codes replaced by their index in :data:`gan_mri.data.anatomy.CODES` (uint8);
- xz-compressed (about 0.3 MB per map, 6 MB for all 20).

It also copies SynthSeg's licence next to them. :mod:`gan_mri.data.anatomy` reads them back. Usage::

    git clone --depth 1 https://github.com/BBillot/SynthSeg /tmp/SynthSeg     # or any copy of the repository
    python scripts/make_synthseg_fixture.py /tmp/SynthSeg
"""

import argparse
import lzma
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

from gan_mri.data.anatomy import CODES, LABEL_MAPS, label_map_path

OUT = Path(__file__).resolve().parent.parent / "gan_mri" / "data" / "synthseg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("synthseg", type=Path, help="a copy of the SynthSeg repository")
    root = parser.parse_args().synthseg
    OUT.mkdir(parents=True, exist_ok=True)
    codes = np.asarray(CODES)
    for number in range(1, LABEL_MAPS + 1):
        image = nib.as_closest_canonical(nib.load(root / "data" / "training_label_maps" /
                                                  f"training_seg_{number:02d}.nii.gz"))
        labels = np.rint(np.asarray(image.dataobj)).astype(np.int32)
        unknown = sorted(set(np.unique(labels).tolist()) - set(CODES))
        if unknown:
            raise ValueError(f"training_seg_{number:02d}: codes {unknown} are not in gan_mri.data.anatomy.CODES")
        inside = np.argwhere(labels > 0)
        low, high = inside.min(axis=0), inside.max(axis=0) + 1
        cropped = labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        affine = image.affine.copy()
        affine[:3, 3] = image.affine[:3, :3] @ low + image.affine[:3, 3]
        compact = nib.Nifti1Image(np.searchsorted(codes, cropped).astype(np.uint8), affine)
        compact.set_qform(affine, code=1)
        compact.set_sform(affine, code=1)
        compact.header.set_xyzt_units("mm")
        path = label_map_path(number, OUT)
        path.write_bytes(lzma.compress(compact.to_bytes(), preset=9 | lzma.PRESET_EXTREME))
        print(f"{path.name}: {cropped.shape}, {path.stat().st_size / 1e6:.2f} MB")
    shutil.copyfile(root / "LICENSE.txt", OUT / "LICENSE.txt")


if __name__ == "__main__":
    main()
