"""Where is a translation unsure? Per-pixel uncertainty maps (higher: trust the translation less).

Three candidates, each from the trained model alone:

- ``"cycle"``: the cycle residual ``|x - G_BA(G_AB(x))|``: what does not survive the way there and back;
- ``"latent"``: the spread (standard deviation) of the translations of ``samples`` latent codes drawn
  around the encoder's mean with the model's own latent noise (UNIT is a VAE; UNIT models only);
- ``"flip"``: test-time augmentation, ``|G(x) - flip(G(flip(x)))|`` for a left-right flip.

Which one to trust was decided by measurement (``benchmarks/confidence_maps.py``, docs/lesions.md): how
well each separates lesion voxels, which the model never saw, from normal white matter (ROC AUC), and
how well it ranks the translation's error (Spearman); :func:`default_method` picks the winner.
"""

from __future__ import annotations

import numpy as np

from gan_mri.inference import parse_direction, translate_slices

CONFIDENCE_METHODS = ("cycle", "latent", "flip")


def default_method(model) -> str:
    """The measured best method a model supports: ``"latent"`` for UNIT models, ``"cycle"`` otherwise
    (docs/lesions.md)."""
    return "latent" if hasattr(model, "encode") and hasattr(model, "decode") else "cycle"


def uncertainty_map(model, slices, direction: str, method: str | None = None, samples: int = 8, seed: int = 0,
                    batch_size: int = 16) -> np.ndarray:
    """Per-pixel uncertainty of ``model``'s translation of ``slices`` (module docstring).

    Args:
        model: a gan-mri model.
        slices: float32 ``(N, H, W, C)`` in [-1, 1], as for :func:`gan_mri.inference.translate_slices`.
        direction: any spelling accepted by `parse_direction`.
        method: one of :data:`CONFIDENCE_METHODS`; default: :func:`default_method`.
        samples: latent codes drawn for ``"latent"``.
        seed: seed of those draws.
        batch_size: slices per call to the model.

    Returns:
        float32 ``(N, H, W)``, >= 0, in model-space units (the [-1, 1] range of the images).

    Raises:
        ValueError: for an unknown method, or ``"latent"`` with a model that has no latent space.
    """
    method = default_method(model) if method is None else method
    if method not in CONFIDENCE_METHODS:
        raise ValueError(f"method: expected one of {CONFIDENCE_METHODS}, found {method!r}")
    direction = parse_direction(direction)
    slices = np.asarray(slices, dtype=np.float32)
    translated = translate_slices(model, slices, direction, batch_size)
    if method == "cycle":
        back = translate_slices(model, translated, direction[2] + "2" + direction[0], batch_size)
        return np.abs(slices - back).mean(axis=-1)
    if method == "flip":
        flipped = translate_slices(model, slices[:, :, ::-1], direction, batch_size)[:, :, ::-1]
        return np.abs(translated - flipped).mean(axis=-1)
    if not hasattr(model, "encode") or not hasattr(model, "decode"):
        raise ValueError(f"method 'latent': {type(model).__name__} has no latent space (UNIT models have)")
    rng = np.random.default_rng(seed)
    noise_std = float(getattr(model.config, "latent_noise_std", 1.0))
    draws = []
    for start in range(0, len(slices), batch_size):
        mean, _ = model.encode(slices[start:start + batch_size], direction[0])
        mean = np.asarray(mean)
        draws.append(np.stack([np.asarray(model.decode(mean + noise_std * rng.standard_normal(mean.shape).astype(
            np.float32), direction[2])) for _ in range(int(samples))]))
    return np.concatenate(draws, axis=1).std(axis=0).mean(axis=-1).astype(np.float32)
