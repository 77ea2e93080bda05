"""Translate a whole NIfTI volume; the output has the input's affine, shape and orientation.

    python examples/translate_volume.py sub-01_T1w.nii.gz --direction 'T1->T2' --out sub-01_T2w-synth.nii.gz
    python examples/translate_volume.py scan.nii.gz --model saved_models/my-run --direction 'T2->T1' --out t1.nii.gz

Without --model the pretrained phantom model that ships with gan-mri is used.
"""

import argparse

import nibabel as nib
import numpy as np

from gan_mri.inference import load_model, translate_volume
from gan_mri.pretrained import pretrained_model_path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("volume", help="input .nii or .nii.gz")
    parser.add_argument("--direction", default="T1->T2")
    parser.add_argument("--out", required=True, help="output .nii.gz")
    parser.add_argument("--model", help="run folder or .keras file (default: the shipped model)")
    args = parser.parse_args()

    model = load_model(args.model or pretrained_model_path())
    translated = translate_volume(model, args.volume, args.direction)
    nib.save(translated, args.out)
    source = nib.load(args.volume)
    print(f"wrote {args.out}: shape {translated.shape}, orientation "
          f"{''.join(nib.aff2axcodes(translated.affine))} (input {''.join(nib.aff2axcodes(source.affine))}), "
          f"same affine: {np.allclose(translated.affine, source.affine)}")


if __name__ == "__main__":
    main()
