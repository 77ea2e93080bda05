"""Which uncertainty map points at what a translation gets wrong? (issue 20: pick by measurement)

Usage:
    python benchmarks/confidence_maps.py                        # the shipped model, its own phantom kind
    python benchmarks/confidence_maps.py --model gan-mri-demo/run --resolution 2

Simulates ``--subjects`` phantom subjects with ``--lesions`` white-matter hyperintensities each (the
model never saw one), prepares them at the model's image size as a test-only dataset, and for each
direction and method of :mod:`gan_mri.confidence` prints one JSON line:

- ``lesion_auc``: ROC AUC of the uncertainty separating lesion voxels from normal white matter (0.5: no
  better than chance);
- ``error_spearman``: Spearman correlation between the uncertainty and the translation's absolute error
  over the brain;
- ``seconds``: time to compute the maps;

and the lesion fidelity and whole-volume scores of the translation itself (:mod:`gan_mri.lesions`,
:mod:`gan_mri.volume_metrics`).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> None:
    from scipy import ndimage, stats

    from gan_mri.confidence import CONFIDENCE_METHODS, uncertainty_map
    from gan_mri.data.dataset import prepare
    from gan_mri.data.phantom import simulate
    from gan_mri.inference import load_model, translate_slices
    from gan_mri.volume_metrics import evaluate_volumes, without_volumes
    from gan_mri.pretrained import pretrained_model_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="run folder or .keras file (default: the shipped model)")
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--lesions", type=int, default=8)
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--sequences", default="mprage,tse", help="T1w,T2w phantom sequences (default: the shipped "
                        "model's, mprage,tse)")
    parser.add_argument("--resolution", type=int, choices=(1, 2), default=1,
                        help="phantom voxel size in mm (default: the shipped model's, 1; the demo's: 2)")
    parser.add_argument("--head", action="store_true", help="simulate heads (default: brain only)")
    args = parser.parse_args(argv)

    model = load_model(args.model or pretrained_model_path())
    t1w, t2w = args.sequences.split(",")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        simulate(args.subjects, root / "bids", seed=args.seed, lesions=args.lesions, lesions_in="all",
                 t1w_sequence=t1w, t2w_sequence=t2w, head=args.head, resolution=args.resolution)
        dataset = prepare(root / "bids", root / "data", image_shape=model.image_shape, test_fraction=1.0,
                          seed=0, spacing=(model.preprocessing or {}).get("spacing"))
        standardization = model.standardization
        lesions = np.asarray(dataset.array("test_lesions")) > 0
        white = (np.asarray(dataset.array("test_labels")) == 3) & ~ndimage.binary_dilation(lesions)
        brain = np.asarray(dataset.array("test_mask"))
        volumes = without_volumes(evaluate_volumes(model, dataset, standardization))
        for direction in ("A2B", "B2A"):
            source, target = direction[0].lower(), direction[2].lower()
            inputs = dataset.images(f"test_{source}", standardization) if standardization else dataset.array(
                f"test_{source}")
            slices = np.repeat(np.asarray(inputs[:])[..., None], model.channels, axis=-1).astype(np.float32)
            translated = translate_slices(model, slices, direction).mean(axis=-1)
            truth = np.asarray(dataset.array(f"test_{target}"))
            error = np.abs(translated - truth)
            print(json.dumps({"direction": direction, "lesion_fidelity": volumes[direction]["lesions"]["all"],
                              "volume": volumes[direction]["mean"]}), flush=True)
            for method in CONFIDENCE_METHODS:
                start = time.perf_counter()
                uncertainty = uncertainty_map(model, slices, direction, method)
                seconds = time.perf_counter() - start
                u = stats.mannwhitneyu(uncertainty[lesions], uncertainty[white])
                auc = float(u.statistic) / (lesions.sum() * white.sum())
                rho = float(stats.spearmanr(uncertainty[brain], error[brain]).statistic)
                print(json.dumps({"direction": direction, "method": method, "lesion_auc": round(auc, 4),
                                  "error_spearman": round(rho, 4), "seconds": round(seconds, 2),
                                  "lesion_voxels": int(lesions.sum()), "white_matter_voxels": int(white.sum())}),
                      flush=True)


if __name__ == "__main__":
    main()
