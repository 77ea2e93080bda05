"""Precision policy: which Keras dtype policy the networks get (passed per layer, never set globally).

"auto" means mixed_float16 on a GPU and float32 otherwise: float16 halves memory and uses tensor
cores on GPUs, while on CPUs reduced precision is slower (mixed_bfloat16 made a UNIT step 15x
slower on this project's CPUs) and float16 has no fast kernels.
"""

from __future__ import annotations

import keras

PRECISIONS = ("auto", "float32", "mixed_float16")


def resolve_precision(precision: str) -> str:
    """Maps a precision setting to a concrete Keras dtype policy name.

    Args:
        precision: "auto", "float32" or "mixed_float16".

    Returns:
        "float32" or "mixed_float16".

    Raises:
        ValueError: for any other value.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}; found {precision!r}")
    if precision != "auto":
        return precision
    return "mixed_float16" if _has_gpu() else "float32"


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
