"""Precision policy: which Keras dtype policy the networks get (passed per layer, never set globally).

Settings (`PRECISIONS`):

- "float32": every layer computes in float32.
- "mixed_float16": variables in float32, layers compute in float16; both optimizers scale the
  loss (float16's range is narrow). For GPUs with tensor cores.
- "mixed_bfloat16": variables in float32, layers compute in bfloat16, no loss scaling (bfloat16
  has float32's range). For CPUs with bfloat16 matrix units (Intel AMX-BF16, AVX512-BF16) and TPUs.
- "auto": mixed_float16 on a GPU; on a CPU, mixed_bfloat16 where a short convolution probe
  (`probe_conv_speed`, once per process) finds bfloat16 at least `BF16_MIN_SPEEDUP` times faster
  than float32, float32 elsewhere. No fixed rule fits every CPU: on a Xeon with AMX a UNIT step
  ran 2.9x faster in bfloat16, on an AMD EPYC without it 15x slower.

``GAN_MRI_AUTO_PRECISION`` (environment) pins what "auto" becomes, e.g. ``float32`` for runs that must
match bit for bit across machines (the test suite sets it).

Under either mixed policy the losses, the attention's softmax, the generators' tanh and the
discriminators' logits stay float32 (see `gan_mri.losses`, `gan_mri.layers.SelfAttention`,
`gan_mri.networks`), and spectral normalization's power iteration runs in float32.
"""

from __future__ import annotations

import functools
import logging
import os
import time

import keras

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
AUTO_ENV = "GAN_MRI_AUTO_PRECISION"
"""Environment variable that, when set to a concrete precision, is what "auto" resolves to."""

LOSS_SCALED = ("mixed_float16",)
"""Policies whose optimizers scale the loss: float16 underflows small gradients, bfloat16 does not."""

BF16_MIN_SPEEDUP = 1.3
"""How much faster the probe's bfloat16 convolution must be than float32 for "auto" to pick it."""

PROBE_SHAPE = (1, 32, 32, 64)
"""The probe's input (batch, height, width, channels); 3x3 convolutions to as many channels."""


def resolve_precision(precision: str) -> str:
    """Maps a precision setting to a concrete Keras dtype policy name.

    Args:
        precision: one of `PRECISIONS`.

    Returns:
        "float32", "mixed_float16" or "mixed_bfloat16" ("auto" resolved as the module docstring
        says, logged at INFO with the probe's numbers).

    Raises:
        ValueError: for any other value.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}; found {precision!r}")
    if precision != "auto":
        return precision
    pinned = os.environ.get(AUTO_ENV)
    if pinned:
        if pinned not in PRECISIONS[1:]:
            raise ValueError(f"{AUTO_ENV}: expected one of {list(PRECISIONS[1:])}; found {pinned!r}")
        logger.info("precision auto: %s (pinned by %s)", pinned, AUTO_ENV)
        return pinned
    if _has_gpu():
        logger.info("precision auto: mixed_float16 (the %s backend sees a GPU)", keras.config.backend())
        return "mixed_float16"
    probe = probe_conv_speed()
    choice = "mixed_bfloat16" if probe["speedup"] >= BF16_MIN_SPEEDUP else "float32"
    logger.info("precision auto: %s (CPU probe, 3x3 conv + conv_transpose on %s, %s backend: float32 %.3f ms, "
                "bfloat16 %.3f ms, bfloat16 %.2fx faster; mixed_bfloat16 needs >= %.1fx)", choice,
                "x".join(map(str, PROBE_SHAPE)),
                probe["backend"], probe["float32_ms"], probe["bfloat16_ms"], probe["speedup"], BF16_MIN_SPEEDUP)
    return choice


@functools.cache
def probe_conv_speed(repeats: int = 3) -> dict:
    """Times a small 3x3 convolution and its transpose in float32 and bfloat16 on the active backend
    (once per process).

    The transpose is the convolution's input gradient, the kernel a train step runs as often as the
    forward one; on CPUs without bfloat16 units TensorFlow's bfloat16 gradient kernels are 20x slower
    than float32's while its forward convolution is as fast, so the forward alone would mislead.
    Each dtype runs once to warm up (kernel selection, JAX compilation), then `repeats` times,
    alternating between the dtypes so load from other processes falls on both alike; the fastest
    run of each counts. About 0.15 s on a 2-core CPU without bfloat16 units (TensorFlow), a few ms
    with them.

    Args:
        repeats: timed runs per dtype.

    Returns:
        {"backend", "float32_ms", "bfloat16_ms", "speedup"}: the time of one convolution plus one
        transposed convolution per dtype, and speedup = float32 / bfloat16 time.
    """
    import numpy as np

    ops = keras.ops
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal(PROBE_SHAPE).astype("float32")
    kernel = rng.standard_normal((3, 3, PROBE_SHAPE[-1], PROBE_SHAPE[-1])).astype("float32")
    operands = {dtype: (ops.convert_to_tensor(inputs, dtype=dtype), ops.convert_to_tensor(kernel, dtype=dtype))
                for dtype in ("float32", "bfloat16")}
    best = {dtype: float("inf") for dtype in operands}
    for run in range(repeats + 1):
        for dtype, (x, k) in operands.items():
            start = time.perf_counter()
            forward = ops.conv(x, k, padding="same")
            backward = ops.conv_transpose(forward, k, padding="same")
            # Reading one value back waits for the result (JAX dispatches asynchronously).
            ops.convert_to_numpy(ops.cast(backward[0, 0, 0, 0], "float32"))
            if run:  # run 0 warms up
                best[dtype] = min(best[dtype], time.perf_counter() - start)
    return {"backend": keras.config.backend(), "float32_ms": round(best["float32"] * 1e3, 4),
            "bfloat16_ms": round(best["bfloat16"] * 1e3, 4), "speedup": round(best["float32"] / best["bfloat16"], 3)}


def _has_gpu() -> bool:
    """Whether the active Keras backend sees a GPU (asks only that backend's framework)."""
    backend = keras.config.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    return False
