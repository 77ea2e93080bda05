"""Benchmark: seconds to translate one 1 mm MNI-size volume (about 190 axial slices).

Translates nilearn's MNI152 template at 1 mm (197 x 233 x 189 voxels, shipped with nilearn, no
download) with `gan_mri.inference.translate_volume`: brain mask, normalization, all axial slices
fitted into the model's image shape, batched translation, restacking. Prints one JSON object.

Usage:
    python benchmarks/translate_volume.py                          # a fresh narrow model, 256x256
    python benchmarks/translate_volume.py --model saved_models/<run>   # a trained model
    python benchmarks/translate_volume.py --image-size 128 --base-width 16 --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="run folder or .keras file (default: a freshly built model)")
    parser.add_argument("--preset", default="sa-enc-cl-sn", help="preset of the fresh model")
    parser.add_argument("--image-size", type=int, default=256, help="image side of the fresh model")
    parser.add_argument("--base-width", type=int, default=8, help="base width of the fresh model")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--direction", default="A2B")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up run")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = _arguments(argv)
    import keras
    import numpy as np
    import tensorflow as tf
    from nilearn.datasets import load_mni152_template

    from gan_mri.config import get_preset
    from gan_mri.inference import load_model, translate_volume
    from gan_mri.models import build_model

    if args.model:
        model = load_model(args.model)
        source = str(args.model)
    else:
        keras.utils.set_random_seed(0)
        size = (args.image_size, args.image_size)
        model = build_model(get_preset(args.preset, image_shape=size, base_width=args.base_width))
        source = f"fresh {args.preset} base_width={args.base_width}"
    volume = load_mni152_template(resolution=1)

    started = time.perf_counter()
    output = translate_volume(model, volume, args.direction, batch_size=args.batch_size)
    warmup = time.perf_counter() - started  # includes tracing the translation graph
    timings = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        output = translate_volume(model, volume, args.direction, batch_size=args.batch_size)
        timings.append(time.perf_counter() - started)
    assert output.shape == volume.shape and np.array_equal(output.affine, volume.affine)

    seconds = statistics.median(timings) if timings else warmup
    slices = int(volume.shape[2])
    result = {
        "seconds_per_volume": round(seconds, 3),
        "slices_per_second": round(slices / seconds, 2),
        "warmup_seconds": round(warmup, 3),
        "timed_runs": [round(t, 3) for t in timings],
        "volume_shape": list(volume.shape),
        "axial_slices": slices,
        "model": source,
        "image_shape": list(model.image_shape),
        "channels": int(model.channels),
        "parameters": int(model.count_params()),
        "batch_size": args.batch_size,
        "direction": args.direction,
        "device": "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)",
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
