"""Loss terms of the UNIT and CycleGAN models as small pure functions.

Every function casts its inputs to float32, so the terms are computed at full precision even when
the networks run in mixed_float16, and returns a scalar (the mean over every element).
"""

from __future__ import annotations

from typing import Sequence

from keras import ops


def _f32(x):
    return ops.cast(x, "float32")


def bce_from_logits(logits, target: float):
    """Binary cross-entropy of logits against a constant target, averaged over all elements.

    bce(l, y) = max(l, 0) - l * y + log(1 + exp(-|l|)), the numerically safe form of
    -y log(sigmoid(l)) - (1 - y) log(1 - sigmoid(l)).

    Args:
        logits: tensor of discriminator logits, any shape.
        target: 1.0 for "real", 0.0 for "fake".

    Returns:
        Scalar float32 tensor.
    """
    logits = _f32(logits)
    per_element = ops.relu(logits) - logits * target + ops.log1p(ops.exp(-ops.abs(logits)))
    return ops.mean(per_element)


def generator_gan_loss(fake_logits: Sequence):
    """Adversarial loss of the generator: sum over scales of mean bce(D(fake), 1).

    Args:
        fake_logits: one logit map per discriminator scale, for translated images.

    Returns:
        Scalar float32 tensor.
    """
    return sum(bce_from_logits(logits, 1.0) for logits in fake_logits)


def discriminator_gan_loss(real_logits: Sequence, fake_logits: Sequence):
    """Adversarial loss of the discriminator, summed over scales.

    L_D = sum_s [ mean bce(D_s(real), 1) + mean bce(D_s(fake), 0) ].

    Args:
        real_logits: one logit map per scale, for real images of the domain.
        fake_logits: one logit map per scale, for images translated into the domain.

    Returns:
        Scalar float32 tensor.

    Raises:
        ValueError: if the two lists have different lengths.
    """
    if len(real_logits) != len(fake_logits):
        raise ValueError(
            f"real_logits and fake_logits need one entry per scale; found "
            f"{len(real_logits)} and {len(fake_logits)}"
        )
    return sum(
        bce_from_logits(real, 1.0) + bce_from_logits(fake, 0.0)
        for real, fake in zip(real_logits, fake_logits)
    )


def mae(y_true, y_pred):
    """Mean absolute error: mean |y_true - y_pred|.

    Returns:
        Scalar float32 tensor.
    """
    return ops.mean(ops.abs(_f32(y_true) - _f32(y_pred)))


def charbonnier(y_true, y_pred, epsilon: float = 1e-3):
    """Charbonnier penalty, a smooth L1: mean sqrt((y_true - y_pred)^2 + epsilon^2).

    It tends to MAE as epsilon -> 0 and, unlike MAE, has a gradient at zero error.

    Args:
        y_true, y_pred: tensors of the same shape.
        epsilon: smoothing constant (> 0).

    Returns:
        Scalar float32 tensor.
    """
    diff = _f32(y_true) - _f32(y_pred)
    return ops.mean(ops.sqrt(ops.square(diff) + epsilon**2))


def kl_loss(z):
    """KL term of UNIT's VAE on the latent code: mean(z^2).

    For a unit-variance Gaussian posterior N(z, I) against the prior N(0, I) the KL divergence is
    0.5 * sum(z^2) plus a constant; UNIT (and the lineage) use the mean of z^2.

    Returns:
        Scalar float32 tensor.
    """
    return ops.mean(ops.square(_f32(z)))


def reconstruction_loss(kind: str, epsilon: float = 1e-3):
    """Returns the reconstruction penalty `f(y_true, y_pred)` named by a config.

    Args:
        kind: "mae" or "charbonnier".
        epsilon: Charbonnier epsilon (ignored for "mae").

    Raises:
        ValueError: for any other kind.
    """
    if kind == "mae":
        return mae
    if kind == "charbonnier":
        return lambda y_true, y_pred: charbonnier(y_true, y_pred, epsilon)
    raise ValueError(f"recon_loss must be one of ['mae', 'charbonnier']; found {kind!r}")


def least_squares(scores, target: float):
    """Least-squares GAN term (Mao et al. 2017): mean (scores - target)^2 over all elements.

    Args:
        scores: discriminator score map(s) of one scale, any shape.
        target: 1.0 for "real", 0.0 for "fake".

    Returns:
        Scalar float32 tensor.
    """
    return ops.mean(ops.square(_f32(scores) - target))


def _per_scale(scores) -> list:
    """A discriminator's output as a list of score maps (one-scale models return a tensor)."""
    return list(scores) if isinstance(scores, (list, tuple)) else [scores]


def lsgan_generator_loss(fake_scores):
    """Least-squares adversarial loss of a generator: sum over scales of mean (D_s(fake) - 1)^2.

    Args:
        fake_scores: the discriminator's output (a score map or one per scale) for translations.

    Returns:
        Scalar float32 tensor.
    """
    return sum(least_squares(scores, 1.0) for scores in _per_scale(fake_scores))


def lsgan_discriminator_loss(real_scores, fake_scores):
    """Least-squares loss of a discriminator, halved as in CycleGAN, summed over scales.

    L_D = sum_s 0.5 * [ mean (D_s(real) - 1)^2 + mean D_s(fake)^2 ].

    The 0.5 slows the discriminator relative to the generator (Zhu et al. 2017; the lineage's
    discriminator loss weight 0.5).

    Args:
        real_scores: the discriminator's output (a map or one per scale) for real images.
        fake_scores: the same for translated (or pooled translated) images.

    Returns:
        Scalar float32 tensor.

    Raises:
        ValueError: if the two outputs have different numbers of scales.
    """
    real_scores, fake_scores = _per_scale(real_scores), _per_scale(fake_scores)
    if len(real_scores) != len(fake_scores):
        raise ValueError(
            f"real_scores and fake_scores need one entry per scale; found "
            f"{len(real_scores)} and {len(fake_scores)}"
        )
    return sum(
        0.5 * (least_squares(real, 1.0) + least_squares(fake, 0.0))
        for real, fake in zip(real_scores, fake_scores)
    )
