"""Benchmark: seconds to simulate phantom subjects and to prepare them as a dataset.

Simulates ``--subjects`` phantom subjects (2 mm MNI152 grid, written as BIDS .nii.gz), timing the
one-off template load apart from the per-subject cost, then runs ``prepare`` at ``--image-size``
(128x128 by default) and one pass over the training pipeline, as stored and with the per-volume
intensity standardization applied while reading. Prints one JSON object.

Usage:
    python benchmarks/data_pipeline.py
    python benchmarks/data_pipeline.py --subjects 20 --image-size 128 --workdir /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--resolution", type=int, default=2, help="phantom voxel size in mm (1 or 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of the timed pipeline pass")
    parser.add_argument("--workdir", help="folder for the files (default: a temporary folder, removed)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = _arguments(argv)
    from gan_mri.data import phantom, prepare

    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gan-mri-bench-"))
    try:
        start = time.perf_counter()
        phantom.load_templates(args.resolution)
        template_s = time.perf_counter() - start

        start = time.perf_counter()
        phantom.simulate(1, workdir / "one", seed=0, resolution=args.resolution, overwrite=True)
        one_subject_s = time.perf_counter() - start

        start = time.perf_counter()
        phantom.simulate(args.subjects, workdir / "bids", seed=0, resolution=args.resolution, overwrite=True)
        cohort_s = time.perf_counter() - start

        out_dir = workdir / "prepared"
        start = time.perf_counter()
        dataset = prepare(workdir / "bids", out_dir, image_shape=(args.image_size, args.image_size),
                          seed=0, overwrite=True)
        prepare_s = time.perf_counter() - start

        next(iter(dataset.train_dataset(args.batch_size, flip=True, seed=0)))  # TensorFlow's start-up, untimed
        start = time.perf_counter()
        batches = sum(1 for _ in dataset.train_dataset(args.batch_size, flip=True, seed=0))
        epoch_s = time.perf_counter() - start
        # The same pass with every volume standardized as it is read (what `train` does by default).
        start = time.perf_counter()
        sum(1 for _ in dataset.train_dataset(args.batch_size, flip=True, seed=0,
                                             standardization=dataset.standardization))
        standardized_epoch_s = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in out_dir.iterdir()) / 2**20
        result = {
            "benchmark": "data_pipeline",
            "subjects": args.subjects,
            "resolution_mm": args.resolution,
            "image_shape": [args.image_size, args.image_size],
            "template_load_s": round(template_s, 3),
            "simulate_one_subject_s": round(one_subject_s, 3),
            "simulate_per_subject_s": round(cohort_s / args.subjects, 3),
            "simulate_cohort_s": round(cohort_s, 3),
            "prepare_s": round(prepare_s, 3),
            "prepare_per_subject_s": round(prepare_s / args.subjects, 3),
            "counts": dataset.counts,
            "prepared_mb": round(size_mb, 1),
            "train_epoch_batches": batches,
            "train_epoch_s": round(epoch_s, 3),
            "train_epoch_standardized_s": round(standardized_epoch_s, 3),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
        }
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
