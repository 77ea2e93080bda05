"""Draw docs/phantom_vs_icbm152.png: axial slices through the basal ganglia of real-anatomy phantom subjects beside
the real ICBM 2009c pair, T1w above T2w, each scaled by its own brain's 1st-99th percentiles.

Columns: the real pair (brain-extracted, then whole head), then phantom subjects of ``gan-mri simulate --resolution 1
--protocols mixed`` (seed 0), each labelled with its label map and protocol; the slice is the one with the most
putamen. Usage::

    python scripts/make_phantom_figure.py [OUT.png] [--subjects 4]
"""

import argparse
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from gan_mri.data.icbm152 import load_icbm152  # noqa: E402
from gan_mri.data.phantom import simulate  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"


def unit(slice_, mask):
    low, high = np.percentile(slice_[mask], (1, 99))
    return np.clip((slice_ - low) / (high - low), 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=DOCS / "phantom_vs_icbm152.png")
    parser.add_argument("--subjects", type=int, default=4)
    args = parser.parse_args()
    pair = load_icbm152()
    putamen = pair.structure_mask("putamen")
    z = int(np.argmax(putamen.sum(axis=(0, 1))))
    columns = [("real ICBM 2009c", {c: pair.array(c)[:, :, z] for c in ("T1w", "T2w")}, pair.brain_mask[:, :, z]),
               ("real, whole head", {c: pair.array(c, False)[:, :, z] for c in ("T1w", "T2w")}, pair.brain_mask[:, :, z])]
    with tempfile.TemporaryDirectory() as folder:
        subjects = simulate(args.subjects, Path(folder) / "bids", seed=0, resolution=1, protocols="mixed")
        rows = (Path(folder) / "bids" / "participants.tsv").read_text().splitlines()[1:]
        for path, row in zip(subjects, rows):
            fields = row.split("\t")
            name = path.name
            structures = np.asarray(nib.load(path / "anat" / f"{name}_desc-structures_dseg.nii.gz").dataobj)
            mask = np.asarray(nib.load(path / "anat" / f"{name}_desc-brain_mask.nii.gz").dataobj) > 0
            zz = int(np.argmax(np.isin(structures, (12, 51)).sum(axis=(0, 1))))
            images = {c: np.asarray(nib.load(path / "anat" / f"{name}_{c}.nii.gz").dataobj, dtype=np.float32)[:, :, zz]
                      for c in ("T1w", "T2w")}
            columns.append((f"{name}: {fields[2]}\n{fields[4]} {fields[5]}, {fields[3]} T", images, mask[:, :, zz]))
    figure, axes = plt.subplots(2, len(columns), figsize=(2.6 * len(columns), 6.2))
    for column, (title, images, mask) in enumerate(columns):
        for row, contrast in enumerate(("T1w", "T2w")):
            axes[row, column].imshow(np.rot90(unit(images[contrast], mask)), cmap="gray", vmin=0, vmax=1)
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
            if column == 0:
                axes[row, column].set_ylabel(contrast)
        axes[0, column].set_title(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out, dpi=90)
    print(args.out)


if __name__ == "__main__":
    main()
