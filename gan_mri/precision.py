"""Precision policy: the one place in gan_mri that touches Keras's global dtype policy.

"auto" means mixed_float16 on a GPU and float32 otherwise: float16 halves memory and uses tensor
cores on GPUs, while on CPUs reduced precision is slower (mixed_bfloat16 made a UNIT step 15x
slower on this project's CPUs) and float16 has no fast kernels.
"""

from __future__ import annotations

import contextlib
import logging

import keras

logger = logging.getLogger(__name__)

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


def set_global_precision(precision: str) -> str:
    """Sets Keras's global dtype policy from a precision setting.

    Returns:
        The policy name that was set.
    """
    policy = resolve_precision(precision)
    keras.mixed_precision.set_global_policy(policy)
    logger.debug("Keras global dtype policy set to %s", policy)
    return policy


@contextlib.contextmanager
def precision_scope(precision: str):
    """Context manager: layers created inside get the policy; the previous one is restored.

    Keras layers read the global policy when they are constructed, so building a model inside
    this scope gives it the policy without leaving global state behind.

    Yields:
        The concrete policy name ("float32" or "mixed_float16").
    """
    previous = keras.mixed_precision.global_policy()
    policy = set_global_precision(precision)
    try:
        yield policy
    finally:
        keras.mixed_precision.set_global_policy(previous)
