"""Benchmark a model's train step (one D update + one G update): images/s and FLOPs per step.

Usage:
    python benchmarks/train_step.py --preset sa-enc-cl-sn --size 64 --batch 1 --width 64
    python benchmarks/train_step.py --preset cyclegan --size 64 --batch 1      # lineage width 32
    python benchmarks/train_step.py --backend jax --preset unit --size 64 --batch 4 --width 64

Prints one JSON object. FLOPs come from TensorFlow's graph profiler on the traced train step
(forward and backward ops of both updates, the attention's batched matmuls included), `null` if
the profiler cannot count them. Memory: the process's peak resident set (`peak_rss_mib`) and, on a
GPU, the device's peak allocation (`peak_device_mib`). `cpu` names the CPU and the flags that decide
low-precision speed (AMX-BF16, AVX512-BF16, AVX512-FP16, AVX-512, AVX2), from /proc/cpuinfo.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


PRECISION_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f", "avx2")
"""/proc/cpuinfo flags that decide how fast float32, bfloat16 and float16 convolutions run on a CPU."""


def cpu_info(cpuinfo: str | None = None) -> dict:
    """The CPU's model name and which of `PRECISION_FLAGS` it has (from /proc/cpuinfo on Linux;
    the model name from `platform` and no flags elsewhere)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as stream:
                cpuinfo = stream.read()
        except OSError:
            cpuinfo = ""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name") or platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "flags": [flag for flag in PRECISION_FLAGS if flag in flags]}


def peak_rss_mib() -> float:
    """The process's peak resident set size, MiB (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="unit", help="a UNIT preset or cyclegan")
    parser.add_argument("--size", type=int, default=64, help="square image size")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--width", type=int, default=None,
                        help="base width (default: the preset's lineage width, UNIT 64, CycleGAN 32)")
    parser.add_argument("--set", default="{}", metavar="JSON",
                        help='other config fields, e.g. \'{"attention_pool": 1}\'')
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (the first traces)")
    # No argparse choices: gan_mri.precision.PRECISIONS imports Keras, which must wait for --backend;
    # the config rejects other values and names the valid ones.
    parser.add_argument("--precision", default="auto",
                        help="auto, float32, mixed_float16 or mixed_bfloat16 (gan_mri.precision.PRECISIONS)")
    parser.add_argument("--jit", action="store_true", help="compile the step with XLA (TensorFlow)")
    parser.add_argument("--backend", default="tensorflow", choices=["tensorflow", "jax"],
                        help="Keras backend (set before Keras is imported; JAX always compiles with XLA)")
    return parser.parse_args(argv)


def count_flops(concrete_function):
    """Float operations of a traced function's graph, or None if the profiler is unavailable."""
    try:
        from tensorflow.python.profiler import model_analyzer, option_builder

        options = option_builder.ProfileOptionBuilder(
            option_builder.ProfileOptionBuilder.float_operation()
        ).with_empty_output().build()
        return int(model_analyzer.profile(concrete_function.graph, options=options).total_float_ops)
    except Exception:  # the profiler is a private API; a missing count is not an error
        return None


def jax_step(model, x_a, x_b):
    """(step, state): the JAX backend's stateless train step, jitted, and its initial state."""
    import jax

    state = tuple([v.value for v in variables] for variables in (
        model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
        model.metrics_variables))
    jitted = jax.jit(model.train_step)

    def step(state):
        return jitted(state, (x_a, x_b))

    return step, state


def build_and_batch(args):
    """The compiled model of the benchmark and one random batch per domain (numpy, float32)."""
    from gan_mri.config import get_preset
    from gan_mri.models import build_model

    overrides = json.loads(args.set)
    if args.width is not None:
        overrides["base_width"] = args.width
    config = get_preset(args.preset, image_shape=(args.size, args.size), precision=args.precision, **overrides)
    model = build_model(config, batch_size=args.batch)  # "auto" precision decides at the benchmark's shape
    model.compile()
    rng = np.random.default_rng(0)
    shape = (args.batch, args.size, args.size, config.channels)
    return config, model, tuple(rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(2))


def main(argv=None):
    args = parse_args(argv)
    os.environ["KERAS_BACKEND"] = args.backend
    if args.backend == "jax":
        return main_jax(args)
    import tensorflow as tf

    config, model, (x_a, x_b) = build_and_batch(args)
    x_a, x_b = tf.constant(x_a), tf.constant(x_b)
    step = tf.function(lambda a, b: model.train_step((a, b)), jit_compile=args.jit)

    start = time.perf_counter()
    concrete = step.get_concrete_function(x_a, x_b)
    trace_s = time.perf_counter() - start
    flops = count_flops(concrete)
    start = time.perf_counter()
    for _ in range(max(args.warmup, 1)):
        logs = step(x_a, x_b)
    float(logs["g_loss"])
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        logs = step(x_a, x_b)
    float(logs["g_loss"])  # wait for the last step
    elapsed = time.perf_counter() - start

    devices = [d.device_type for d in tf.config.list_physical_devices()]
    peak_device = (round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
                   if "GPU" in devices else None)
    result = {
        "backend": "tensorflow",
        "preset": args.preset,
        "image_size": args.size,
        "batch": args.batch,
        "base_width": config.base_width,
        "precision": model.precision_policy,
        "jit": args.jit,
        "device": "GPU" if "GPU" in devices else "CPU",
        "trainable_parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "trace_s": round(trace_s, 2),
        "warmup_s": round(warmup_s, 2),
        "timed_steps": args.steps,
        "seconds_per_step": round(elapsed / args.steps, 4),
        "images_per_s": round(args.batch * args.steps / elapsed, 3),
        "flops_per_step": flops,
        "flops_note": "TF graph profiler, forward+backward of both updates",
        "gflops_per_s": round(flops * args.steps / elapsed / 1e9, 1) if flops else None,
        "peak_rss_mib": peak_rss_mib(),
        "peak_device_mib": peak_device,
        "cpu": cpu_info(),
        "losses": {k: round(float(v), 4) for k, v in logs.items()},
    }
    print(json.dumps(result, indent=2))


def main_jax(args):
    """The benchmark on the JAX backend (no FLOP count: TensorFlow's profiler needs a TF graph)."""
    import jax

    config, model, (x_a, x_b) = build_and_batch(args)
    step, state = jax_step(model, x_a, x_b)
    start = time.perf_counter()
    for _ in range(max(args.warmup, 1)):
        logs, state = step(state)
    float(logs["g_loss"])
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(args.steps):
        logs, state = step(state)
    float(logs["g_loss"])
    elapsed = time.perf_counter() - start
    device = jax.devices()[0]
    stats = (device.memory_stats() or {}) if device.platform != "cpu" else {}
    peak_device = round(stats["peak_bytes_in_use"] / 2**20, 1) if "peak_bytes_in_use" in stats else None
    result = {
        "backend": "jax", "preset": args.preset, "image_size": args.size, "batch": args.batch,
        "base_width": config.base_width, "precision": model.precision_policy,
        "device": device.platform.upper(),
        "trainable_parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        "warmup_s": round(warmup_s, 2), "timed_steps": args.steps,
        "seconds_per_step": round(elapsed / args.steps, 4),
        "images_per_s": round(args.batch * args.steps / elapsed, 3),
        "peak_rss_mib": peak_rss_mib(),
        "peak_device_mib": peak_device,
        "cpu": cpu_info(),
        "losses": {k: round(float(v), 4) for k, v in logs.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
