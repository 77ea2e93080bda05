"""Loss terms of the UNIT and CycleGAN models as small pure functions.

Every function casts its inputs to float32, so the terms are computed at full precision even when
the networks run in mixed_float16, and returns a scalar (the mean over every element).
"""

from __future__ import annotations

from keras import ops

# The criterion registry lives with the loss-name lists in gan_mri.config (so that the configs read it
# without importing Keras); this module registers the built-in criteria's terms in it.
from gan_mri.config import (  # noqa: F401  (CRITERION_REGISTRY, GANCriterion, register_gan_criterion: public here too)
    CRITERION_REGISTRY,
    GAN_LOSSES,
    RECON_LOSSES,
    GANCriterion,
    register_gan_criterion,
)


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


def local_correlation_loss(source, translated, window: int = 7, epsilon: float = 1e-3):
    """Structure loss of a translation: 1 - mean over pixels of the squared local correlation.

    With local means, variances and covariance over a ``window`` x ``window`` box (per image and
    channel, "same" padding),

        cc^2 = cov(x, y)^2 / (var(x) var(y) + epsilon)

    is 1 wherever the translation is locally an affine function of its source, whatever the sign
    of the slope: inverting the contrast (T1w <-> T2w) costs nothing, losing or inventing an edge
    does. It needs no ground truth (it compares a translation with its own input), as the
    structure terms of unpaired MR synthesis do (the local cross-correlation of registration; the
    MIND loss of Yang et al. 2018; the gradient consistency of Hiasa et al. 2018).

    Args:
        source, translated: images (B, H, W, C) of the same shape.
        window: side of the local box (odd).
        epsilon: added to the variance product; flat regions (background) then count as
            uncorrelated without dividing by zero.

    Returns:
        Scalar float32 tensor in [0, 1].
    """
    x, y = _f32(source), _f32(translated)
    # The five local means in one pass over stacked channels, the box filter as two 1-D passes
    # (a box is separable, and "same" average pooling divides by the in-image count on each
    # axis): 3.8 ms forward and backward at 4 x 64 x 64 against 11.8 ms for five 2-D poolings.
    stacked = ops.concatenate([x, y, x * x, y * y, x * y], axis=-1)
    for box in ((window, 1), (1, window)):
        stacked = ops.average_pool(stacked, box, strides=1, padding="same")
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = ops.split(stacked, 5, axis=-1)
    var_x = mean_xx - mean_x * mean_x
    var_y = mean_yy - mean_y * mean_y
    cov = mean_xy - mean_x * mean_y
    squared = ops.square(cov) / (ops.relu(var_x) * ops.relu(var_y) + epsilon)
    return 1.0 - ops.mean(squared)


def local_contrast_loss(source, translated, window: int = 7):
    """Lesion-aware term of a translation: the local contrast of its input that it loses.

    A pixel's local contrast is its distance from the mean of its ``window`` x ``window`` box,
    c(x) = |x - box(x)|, and the term is mean(relu(c(source) - c(translated))): a spot that stands
    out from its surroundings in the input (a white-matter lesion, dark on T1w and bright on T2w)
    must stand out at least as far in the translation, whatever the sign. Both images are on the
    same scale (each volume's brain percentiles mapped to [-1, 1]), so no rescaling is needed, and
    the term is one-sided: contrast the target has and the source lacks (CSF on T2w) costs nothing.
    `local_correlation_loss` cannot see this: it is blind to the slope of the local map, so a
    lesion translated with a fraction of its contrast costs it nothing (docs/lesions.md).

    Args:
        source, translated: images (B, H, W, C) of the same shape.
        window: side of the local box (odd).

    Returns:
        Scalar float32 tensor, >= 0.
    """
    stacked = ops.concatenate([_f32(source), _f32(translated)], axis=-1)
    means = stacked
    for box in ((window, 1), (1, window)):
        means = ops.average_pool(means, box, strides=1, padding="same")
    contrast_x, contrast_y = ops.split(ops.abs(stacked - means), 2, axis=-1)
    return ops.mean(ops.relu(contrast_x - contrast_y))


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
        kind: a name of `gan_mri.config.RECON_LOSSES`: "mae" or "charbonnier".
        epsilon: Charbonnier epsilon (ignored for "mae").

    Raises:
        ValueError: for any other kind.
    """
    penalties = {"mae": mae, "charbonnier": lambda y_true, y_pred: charbonnier(y_true, y_pred, epsilon)}
    if kind not in RECON_LOSSES:
        raise ValueError(f"recon_loss must be one of {list(RECON_LOSSES)}; found {kind!r}")
    return penalties[kind]


def least_squares(scores, target: float):
    """Least-squares GAN term (Mao et al. 2017): mean (scores - target)^2 over all elements.

    Args:
        scores: discriminator score map(s) of one scale, any shape.
        target: 1.0 for "real", 0.0 for "fake".

    Returns:
        Scalar float32 tensor.
    """
    return ops.mean(ops.square(_f32(scores) - target))


register_gan_criterion(GANCriterion("bce", bce_from_logits, 0.0,
                                    "binary cross-entropy on logits (the GAN-MRI lineage); undecided at logit 0"))
register_gan_criterion(GANCriterion("lsgan", least_squares, 0.5, "least squares (LSGAN; UNIT's and CycleGAN's "
                                    "official code); undecided midway between the targets 0 and 1"))

if set(GAN_LOSSES) - set(CRITERION_REGISTRY):
    # config.GAN_LOSSES names the built-in criteria; each needs its registration above.
    raise ImportError(f"gan_mri.losses registers the criteria {list(CRITERION_REGISTRY)}; config.GAN_LOSSES "
                      f"names {list(GAN_LOSSES)}")

GAN_CRITERIA = CRITERION_REGISTRY.view(lambda criterion: criterion.term)
"""Criterion name -> per-scale term f(outputs, target) (a live view of `CRITERION_REGISTRY`)."""

DECISION_THRESHOLDS = CRITERION_REGISTRY.view(lambda criterion: criterion.threshold)
"""Criterion name -> decision threshold (a live view of `CRITERION_REGISTRY`): logit 0 for BCE, the
midpoint of the targets 0 and 1 for least squares."""


def _criterion(name: str) -> GANCriterion:
    if name not in CRITERION_REGISTRY:
        raise ValueError(f"gan criterion must be one of {list(CRITERION_REGISTRY)}; found {name!r}")
    return CRITERION_REGISTRY[name]


def _per_scale(outputs) -> list:
    """A discriminator's output as a list of maps (single-scale models return one tensor)."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _paired_scales(real_outputs, fake_outputs) -> list:
    real, fake = _per_scale(real_outputs), _per_scale(fake_outputs)
    if len(real) != len(fake):
        raise ValueError(
            f"real and fake discriminator outputs need one entry per scale; found {len(real)} and {len(fake)}")
    return list(zip(real, fake))


def adversarial_loss(outputs, target: float, criterion: str = "bce"):
    """Adversarial term summed over discriminator scales: sum_s mean f(D_s, target).

    The generator's loss is ``adversarial_loss(D(fake), 1.0, criterion)``.

    Args:
        outputs: the discriminator's output: one map, or a list with one map per scale.
        target: 1.0 for "real", 0.0 for "fake".
        criterion: a name of `CRITERION_REGISTRY` ("bce": outputs are logits; "lsgan": scores).

    Returns:
        Scalar float32 tensor.

    Raises:
        ValueError: for an unknown criterion.
    """
    term = _criterion(criterion).term
    return sum(term(scores, target) for scores in _per_scale(outputs))


def discriminator_loss(real_outputs, fake_outputs, criterion: str = "bce"):
    """The discriminator's loss, summed over scales: sum_s [mean f(D_s(real), 1) + mean f(D_s(fake), 0)].

    Args:
        real_outputs: the discriminator's output (a map or one per scale) for real images.
        fake_outputs: the same for translated images.
        criterion: a name of `CRITERION_REGISTRY`.

    Returns:
        Scalar float32 tensor.

    Raises:
        ValueError: for an unknown criterion or outputs with different numbers of scales.
    """
    term = _criterion(criterion).term
    return sum(term(real, 1.0) + term(fake, 0.0) for real, fake in _paired_scales(real_outputs, fake_outputs))


def discriminator_accuracy(real_outputs, fake_outputs, criterion: str = "bce") -> list:
    """How often the discriminator is right, per scale: 0.5 (chance) to 1 (always right).

    acc_s = 0.5 * [ mean(D_s(real) > t) + mean(D_s(fake) < t) ], t = the criterion's ``threshold``,
    over every element of the patch maps. A discriminator that stays near 0.5 gives the generator
    no useful gradient; one near 1.0 is winning the game.

    Returns:
        List of scalar float32 tensors, one per scale.

    Raises:
        ValueError: for an unknown criterion or outputs with different numbers of scales.
    """
    threshold = _criterion(criterion).threshold
    return [0.5 * (ops.mean(ops.cast(_f32(real) > threshold, "float32"))
                   + ops.mean(ops.cast(_f32(fake) < threshold, "float32")))
            for real, fake in _paired_scales(real_outputs, fake_outputs)]
