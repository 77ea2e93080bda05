"""GPU check: UNIT train-step speed in float32 and bfloat16 on JAX, model FLOPs utilisation, epoch time.

Runs with KERAS_BACKEND=jax on a machine with JAX+CUDA and no TensorFlow (it imports none), in
under 5 minutes on an H100/H200 at the defaults: the "unit" preset (the paper's UNIT, base width 64)
at 256x256, batches 1 and 8, float32 and mixed_bfloat16 (4 XLA compilations, 10 timed steps each).

For each (precision, batch) it reports seconds per train step (one discriminator and one
generator update), images/s, the step's FLOPs from XLA's cost analysis of the compiled step,
the achieved TFLOP/s, the model FLOPs utilisation (MFU) against the device's dense peak for that
precision (bfloat16 tensor cores; TF32 tensor cores for float32, which XLA uses for float32
convolutions on Ampere and later by default), and the time of a 900-image epoch (the paper's
training set size per domain) at that speed. Prints ONE JSON line.

Usage:
    KERAS_BACKEND=jax python benchmarks/gpu_check.py                        # 256 px, batches 1 and 8
    KERAS_BACKEND=jax python benchmarks/gpu_check.py --peak-tflops 989      # a device not in PEAK_TFLOPS
    KERAS_BACKEND=jax python benchmarks/gpu_check.py --size 32 --width 4 --batches 1 --steps 1 \
        --set '{"encoder_res_blocks": 0, "generator_res_blocks": 0}'                                # CI, on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_step import build_and_batch, cpu_info, jax_step, peak_rss_mib  # noqa: E402

EPOCH_IMAGES = 900
"""Images per epoch of the paper-size estimate (900 slices of 256x256 per domain)."""

PRECISIONS = ("float32", "mixed_bfloat16")

PEAK_TFLOPS = {
    # device kind (substring of jax's device_kind, first match wins) -> dense peak TFLOP/s by precision,
    # from NVIDIA's data sheets (without sparsity). float32 is TF32 on tensor cores.
    "H200": {"mixed_bfloat16": 989.4, "float32": 494.7},
    "H100 PCIe": {"mixed_bfloat16": 756.0, "float32": 378.0},
    "H100": {"mixed_bfloat16": 989.4, "float32": 494.7},  # SXM ("NVIDIA H100 80GB HBM3")
    "A100": {"mixed_bfloat16": 312.0, "float32": 156.0},
}


def peak_tflops(device_kind: str, override: float | None = None) -> tuple[dict | None, str | None]:
    """The device's dense peak TFLOP/s per precision and where it came from.

    Args:
        device_kind: jax's `device.device_kind`, e.g. "NVIDIA H100 80GB HBM3".
        override: --peak-tflops, used for both precisions.

    Returns:
        ({precision: TFLOP/s}, "flag" or the PEAK_TFLOPS key) or (None, None) for an unknown device.
    """
    if override is not None:
        return {precision: float(override) for precision in PRECISIONS}, "flag"
    for name, peaks in PEAK_TFLOPS.items():
        if all(word.lower() in device_kind.lower() for word in name.split()):
            return dict(peaks), name
    return None, None


def _positive_ints(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, found {text!r}")
    return values


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="unit", help="UNIT preset (default: unit, the paper's model)")
    parser.add_argument("--size", type=int, default=256, help="square image size")
    parser.add_argument("--width", type=int, default=None, help="base width (default: the preset's, unit 64)")
    parser.add_argument("--batches", type=_positive_ints, default=[1, 8], help="comma-separated batch sizes")
    parser.add_argument("--set", default="{}", metavar="JSON",
                        help='other config fields, e.g. \'{"encoder_res_blocks": 0}\' (CI keeps the graph small)')
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's dense peak TFLOP/s (default: from the table of known devices)")
    return parser.parse_args(argv)


def _flops(compiled) -> float | None:
    """FLOPs of a compiled step from XLA's cost analysis, None where the backend gives none."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # not every XLA backend implements it; a missing count is not an error
        return None
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def measure(args, precision: str, batch: int, peaks: dict | None) -> dict:
    """Compiles and times the train step of one (precision, batch)."""
    import jax

    step_args = argparse.Namespace(preset=args.preset, size=args.size, batch=batch, width=args.width, set=args.set,
                                   precision=precision)
    config, model, (x_a, x_b) = build_and_batch(step_args)
    _, state = jax_step(model, x_a, x_b)
    start = time.perf_counter()
    compiled = jax.jit(model.train_step).lower(state, (x_a, x_b)).compile()
    compile_s = time.perf_counter() - start
    flops = _flops(compiled)
    for _ in range(max(args.warmup, 1)):
        logs, state = compiled(state, (x_a, x_b))
    float(logs["g_loss"])
    start = time.perf_counter()
    for _ in range(args.steps):
        logs, state = compiled(state, (x_a, x_b))
    float(logs["g_loss"])  # waits for the last step
    seconds = (time.perf_counter() - start) / args.steps
    tflops = flops / seconds / 1e12 if flops else None
    peak = (peaks or {}).get(precision)
    return {
        "precision": model.precision_policy, "batch": batch, "base_width": config.base_width,
        "compile_s": round(compile_s, 2), "seconds_per_step": round(seconds, 5),
        "images_per_s": round(batch / seconds, 3), "flops_per_step": flops,
        "tflops_per_s": round(tflops, 4) if tflops else None,
        "mfu": round(tflops / peak, 5) if tflops and peak else None,
        "epoch_900_s": round(EPOCH_IMAGES * seconds / batch, 2),
        "g_loss": round(float(logs["g_loss"]), 4),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    import jax
    import keras

    if keras.config.backend() != "jax":
        raise SystemExit(f"gpu_check.py: expected KERAS_BACKEND=jax, found {keras.config.backend()!r}")
    started = time.perf_counter()
    device = jax.devices()[0]
    peaks, peak_source = peak_tflops(device.device_kind, args.peak_tflops)
    results = []
    for precision in PRECISIONS:
        for batch in args.batches:
            results.append(measure(args, precision, batch, peaks))
            keras.backend.clear_session()  # frees the model before the next one is built
    stats = (device.memory_stats() or {}) if device.platform != "cpu" else {}
    fastest = max(results, key=lambda r: r["images_per_s"])
    by_precision = {r["precision"]: r for r in sorted(results, key=lambda r: r["images_per_s"])}
    report = {
        "backend": "jax", "jax": jax.__version__, "device": device.platform.upper(), "device_kind": device.device_kind,
        "preset": args.preset, "image_size": args.size, "base_width": results[0]["base_width"],
        "batches": args.batches, "timed_steps": args.steps,
        "peak_tflops": peaks, "peak_source": peak_source, "epoch_images": EPOCH_IMAGES,
        "results": results,
        "fastest": {key: fastest[key] for key in ("precision", "batch", "images_per_s", "mfu", "epoch_900_s")},
        # The best batch of each precision.
        "bfloat16_speedup": round(by_precision["mixed_bfloat16"]["images_per_s"]
                                  / by_precision["float32"]["images_per_s"], 3),
        "peak_device_mib": round(stats["peak_bytes_in_use"] / 2**20, 1) if "peak_bytes_in_use" in stats else None,
        "peak_rss_mib": peak_rss_mib(), "cpu": cpu_info(),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
