"""Where is a translation unsure? Per-pixel uncertainty maps (higher: trust the translation less).

Three candidates, each from the trained model alone:

- ``"cycle"``: the cycle residual ``|x - G_BA(G_AB(x))|``: what does not survive the way there and back;
- ``"latent"``: the spread (standard deviation) of the translations of ``samples`` latent codes drawn
  around the encoder's mean with the model's own latent noise (UNIT is a VAE; UNIT models only). The
  draws are the same for every slice and come from ``seed`` alone through a stateless generator
  (:func:`latent_draws`), so a slice's map does not depend on the batch it is in, and the SavedModel's
  ``*_uncertainty`` signatures (:mod:`gan_mri.export`) compute the same map as :func:`uncertainty_map`;
- ``"flip"``: test-time augmentation, ``|G(x) - flip(G(flip(x)))|`` for a left-right flip.

Which one to trust was decided by measurement (``benchmarks/confidence_maps.py``, docs/lesions.md): how
well each separates lesion voxels, which the model never saw, from normal white matter (ROC AUC), and
how well it ranks the translation's error (Spearman); :func:`default_method` picks the winner.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from gan_mri import Direction
from gan_mri.translation import checked_slices, parse_direction

CONFIDENCE_METHODS = ("cycle", "latent", "flip")
DEFAULT_SAMPLES = 8
"""Latent codes drawn for ``"latent"`` (the 8 measured in docs/lesions.md)."""


def default_method(model) -> str:
    """The measured best method a model supports: ``"latent"`` for UNIT models, ``"cycle"`` otherwise
    (docs/lesions.md)."""
    return "latent" if _has_latent_space(model) else "cycle"


def _has_latent_space(model) -> bool:
    return hasattr(model, "encode") and hasattr(model, "decode")


def checked_method(model, method: str | None) -> str:
    """``method``, or the model's :func:`default_method` for ``None``, after checking that ``model`` has it.

    Raises:
        ValueError: for an unknown method, or ``"latent"`` with a model that has no latent space.
    """
    method = default_method(model) if method is None else method
    if method not in CONFIDENCE_METHODS:
        raise ValueError(f"method: expected one of {CONFIDENCE_METHODS}, found {method!r}")
    if method == "latent" and not _has_latent_space(model):
        raise ValueError(f"method 'latent': {type(model).__name__} has no latent space (UNIT models have)")
    return method


def latent_draws(latent_shape, samples: int, seed: int):
    """``samples`` standard-normal fields of shape ``latent_shape``: the latent noise of every slice.

    Drawn by Keras's stateless generator from ``seed`` alone (with TensorFlow,
    ``tf.random.stateless_normal``: the same values in eager code and in a traced graph).

    Returns:
        float32 tensor ``(samples, *latent_shape)``.
    """
    return keras.random.normal((int(samples), *latent_shape), seed=int(seed))


def translate_with_uncertainty(model, images, direction: str, method: str, samples: int = DEFAULT_SAMPLES,
                               seed: int = 0):
    """One batch's translation and uncertainty map, in Keras ops only (traceable in a ``tf.function``).

    Args:
        model: a gan-mri model.
        images: float32 tensor ``(B, H, W, C)`` in [-1, 1].
        direction: ``"A2B"`` or ``"B2A"``.
        method: one of :data:`CONFIDENCE_METHODS` (checked by :func:`checked_method`).
        samples: latent codes drawn for ``"latent"``.
        seed: seed of those draws (:func:`latent_draws`).

    Returns:
        ``(translated, uncertainty)``: float32 tensors ``(B, H, W, C)`` and ``(B, H, W)`` (the channel mean).
    """
    source, target = Direction(direction).source, Direction(direction).target
    images = ops.convert_to_tensor(images, "float32")
    translated = model.translate(images, direction)
    if method == "cycle":
        spread = ops.abs(images - model.translate(translated, f"{target}2{source}"))
    elif method == "flip":
        flipped = ops.flip(model.translate(ops.flip(images, axis=2), direction), axis=2)
        spread = ops.abs(translated - flipped)
    else:
        mean, _ = model.encode(images, source)
        draws = ops.cast(latent_draws(tuple(mean.shape[1:]), samples, seed), mean.dtype)
        noise_std = float(getattr(model.config, "latent_noise_std", 1.0))
        # A model with a remap prior decodes on top of the prior image of the translation.
        prior = ({"prior": model.prior_image(images, source, target)}
                 if getattr(model, "intensity_remap", None) is not None else {})
        decoded = [ops.cast(model.decode(mean + noise_std * draws[i], target, **prior), "float32")
                   for i in range(int(samples))]
        spread = ops.std(ops.stack(decoded), axis=0)
    return translated, ops.mean(ops.cast(spread, "float32"), axis=-1)


def uncertainty_map(model, slices, direction: str, method: str | None = None, samples: int = DEFAULT_SAMPLES,
                    seed: int = 0, batch_size: int = 16) -> np.ndarray:
    """Per-pixel uncertainty of ``model``'s translation of ``slices`` (module docstring).

    Args:
        model: a gan-mri model.
        slices: float32 ``(N, H, W, C)`` in [-1, 1], as for :func:`gan_mri.translation.translate_slices`.
        direction: any spelling accepted by `parse_direction`.
        method: one of :data:`CONFIDENCE_METHODS`; default: :func:`default_method`.
        samples: latent codes drawn for ``"latent"``.
        seed: seed of those draws.
        batch_size: slices per call to the model.

    Returns:
        float32 ``(N, H, W)``, >= 0, in model-space units (the [-1, 1] range of the images).

    Raises:
        ValueError: for an unknown method, ``"latent"`` with a model that has no latent space, or bad
            slices or batch size.
    """
    method = checked_method(model, method)
    direction = parse_direction(direction)
    slices = checked_slices(model, slices, batch_size)
    maps = np.empty(slices.shape[:3], dtype=np.float32)
    for start in range(0, len(slices), batch_size):
        batch = slices[start:start + batch_size]
        _, spread = translate_with_uncertainty(model, batch, direction, method, samples, seed)
        maps[start:start + len(batch)] = ops.convert_to_numpy(spread)
    return maps
