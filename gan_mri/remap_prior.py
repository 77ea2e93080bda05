"""The remap prior: the unpaired quantile remap as a Keras layer that the generators build on.

Inside the brain, T1w and T2w order the tissues in reverse, so the remap of
`gan_mri.baseline.IntensityRemap` (fitted on the training slices, no learning) is a strong translation
on its own. With ``remap_prior`` set in a `UNITConfig` or `CycleGANConfig`, a model translates on top
of it instead of learning it from scratch (issue 39):

- ``"residual"``: translation = clip(remap(x) + 2 g, -1, 1), g in [-1, 1] the generator's tanh output
  (`with_residual`); the factor 2 lets the correction reach any intensity from any remapped value (a
  scalp voxel remapped with the brain's quantiles may need +1.6);
- ``"channel"``: the generator gets remap(x) as an extra input channel (UNIT: beside the last
  full-resolution features of the decoder path; CycleGAN: beside the source image).

The remap of an image into its own contrast (UNIT's self-reconstruction) is the image itself.

Where the brain is. The remap is the brain's: ``y = F_target^-1(1 - F_source(x))`` for the voxels
above `BRAIN_THRESHOLD` and ``y = x`` elsewhere. The model sees no brain mask, only the image, so the
rule is an intensity one: background is -1 after normalization (`gan_mri.data.volumes`; the
standardization keeps -1 in place) plus the acquisition's noise. Measured on the slices models see
(the demo's MNI152-anatomy phantom, seed 0, standardized; the real ICBM 2009c pair sliced as
`translate_volume` slices it): no brain voxel is at or below -0.9 (the darkest: -0.83 T1w / -0.75 T2w
on the phantom's training slices, -0.82 / -0.86 on the real pair), and 98.7 % of the background of
brain-only phantom slices is (the rest lies within 2 px of the brain mask, its partial-volume rim; none
further out; the real pair's background is -1).
The head around the brain of whole-head scans (scalp, skull, fat: 18-29 % of the non-brain voxels of the
phantom's whole-head slices, 38-45 % on the real whole head) is above the threshold and is remapped with
the brain's quantiles, as no mask separates it; the learned part corrects it (the residual's factor 2
lets it reach any intensity).

The quantiles are non-trainable weights of `QuantileRemap` (with a ``fitted`` flag), so `.keras`
files, checkpoints and SavedModels carry them: translation and serving need no training data.
`gan_mri.training.train` fits them on the training split before `fit`; a model whose remap was never
fitted refuses to train (`gan_mri.models.base.TranslationGAN.fit`).

Example:
    >>> remap = QuantileRemap()
    >>> remap.set_quantiles(IntensityRemap.fit(images, masks).quantiles)   # doctest: +SKIP
    >>> t2w_like = remap(t1w, direction="A2B")                              # doctest: +SKIP
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from gan_mri import DIRECTIONS, DOMAINS, Direction
from gan_mri.baseline import QUANTILE_LEVELS

BRAIN_THRESHOLD = -0.9
"""Voxels above this value are remapped as brain; those at or below it (background at -1 and its noise)
pass through unchanged (module docstring)."""
CORRECTION_RANGE = 2.0
"""The residual prior's correction is CORRECTION_RANGE times the generator's tanh output."""


def interpolate(x, xp, fp):
    """Piecewise-linear interpolation, `numpy.interp` in `keras.ops` (TensorFlow and JAX).

    ``y = fp[j] + (x - xp[j]) (fp[j+1] - fp[j]) / (xp[j+1] - xp[j])`` with ``xp[j] <= x < xp[j+1]``;
    ``fp[0]`` below ``xp[0]`` and ``fp[-1]`` from ``xp[-1]`` on, as numpy does, also where ``xp`` repeats
    a value. Differentiable with respect to ``x`` (slope of its segment; 0 outside ``xp``'s range).

    Args:
        x: float tensor of any shape.
        xp: 1-D non-decreasing float tensor of n >= 2 values.
        fp: 1-D float tensor of n values.

    Returns:
        float tensor of the shape of ``x``.
    """
    n = int(xp.shape[0])
    flat = ops.reshape(x, (-1,))
    # searchsorted wants 1-D values on TensorFlow; "right": xp[upper - 1] <= x < xp[upper].
    upper = ops.clip(ops.searchsorted(xp, ops.stop_gradient(flat), side="right"), 1, n - 1)
    x0, x1 = ops.take(xp, upper - 1), ops.take(xp, upper)
    f0, f1 = ops.take(fp, upper - 1), ops.take(fp, upper)
    span = x1 - x0
    fraction = ops.where(span > 0, (flat - x0) / ops.where(span > 0, span, 1.0), 0.0)
    y = f0 + ops.clip(fraction, 0.0, 1.0) * (f1 - f0)
    y = ops.where(flat >= ops.take(xp, n - 1), ops.take(fp, n - 1), y)
    return ops.reshape(y, ops.shape(x))


def with_residual(remapped, correction):
    """The residual prior's translation: ``clip(remapped + CORRECTION_RANGE * correction, -1, 1)``.

    Args:
        remapped: the prior image (the remap of the source, or the source itself), float32.
        correction: the generator's output in [-1, 1] (tanh).
    """
    return ops.clip(remapped + CORRECTION_RANGE * ops.cast(correction, remapped.dtype), -1.0, 1.0)


@keras.saving.register_keras_serializable(package="gan_mri")
class QuantileRemap(keras.layers.Layer):
    """`gan_mri.baseline.IntensityRemap` as a layer: the brain-intensity quantiles of both contrasts
    as non-trainable weights, the remap of either direction in `keras.ops`.

    ``call(images, direction)`` returns ``F_target^-1(1 - F_source(x))`` for voxels above
    ``brain_threshold`` and ``x`` elsewhere, by piecewise-linear interpolation through the stored
    quantiles (source quantile -> level -> 1 - level -> target quantile): numerically
    `IntensityRemap.translate` with the brain mask ``x > brain_threshold``, and differentiable in ``x``.

    Until `set_quantiles` is called the quantiles are evenly spaced in [-1, 1] (the remap is then
    ``-x`` inside the brain) and `fitted` is False.

    Args:
        levels: quantiles stored per contrast (`gan_mri.baseline.QUANTILE_LEVELS`).
        brain_threshold: see `BRAIN_THRESHOLD`.
        **kwargs: base `Layer` arguments (the dtype is always float32).

    Input and output: float32 (batch, H, W, C) in [-1, 1].
    """

    def __init__(self, levels: int = QUANTILE_LEVELS, brain_threshold: float = BRAIN_THRESHOLD, **kwargs):
        kwargs["dtype"] = "float32"  # quantiles at 5e-4 spacing need float32 under mixed precision
        super().__init__(**kwargs)
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
            raise ValueError(f"QuantileRemap: levels must be an integer >= 2; found {levels!r}")
        self.levels = levels
        self.brain_threshold = float(brain_threshold)
        self.quantiles = {domain: self.add_weight(
            name=f"quantiles_{domain.lower()}", shape=(levels,), trainable=False, dtype="float32",
            initializer=keras.initializers.Constant(np.linspace(-1.0, 1.0, levels)))
            for domain in DOMAINS}
        self.fitted_flag = self.add_weight(name="fitted", shape=(), trainable=False, dtype="float32",
                                           initializer="zeros")
        self.built = True

    @property
    def fitted(self) -> bool:
        """Whether `set_quantiles` has loaded fitted quantiles (saved with the weights)."""
        return bool(ops.convert_to_numpy(self.fitted_flag) > 0)

    def set_quantiles(self, quantiles: dict) -> None:
        """Loads fitted quantiles and marks the layer fitted.

        Args:
            quantiles: domain ("A", "B") -> non-decreasing quantiles at ``levels`` evenly spaced levels
                from 0 to 1 (`IntensityRemap.quantiles`).

        Raises:
            ValueError: naming the domain, for a missing domain or quantiles of the wrong length or order.
        """
        for domain in DOMAINS:
            values = np.asarray(quantiles.get(domain, ()), dtype=np.float64)
            if values.shape != (self.levels,) or np.any(np.diff(values) < 0) or not np.all(np.isfinite(values)):
                raise ValueError(f"QuantileRemap.set_quantiles: domain {domain}: expected {self.levels} finite "
                                 f"non-decreasing quantiles; found shape {values.shape}")
        for domain in DOMAINS:
            self.quantiles[domain].assign(np.asarray(quantiles[domain], dtype=np.float32))
        self.fitted_flag.assign(1.0)

    def get_quantiles(self) -> dict:
        """domain -> the stored quantiles (float64 numpy), what `IntensityRemap(...)` takes."""
        return {domain: ops.convert_to_numpy(variable).astype(np.float64) for domain, variable in self.quantiles.items()}

    def call(self, images, direction: str = "A2B"):
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {list(DIRECTIONS)}; found {direction!r}")
        direction = Direction(direction)
        images = ops.cast(images, "float32")
        levels = ops.convert_to_tensor(np.linspace(0.0, 1.0, self.levels), "float32")
        source = ops.convert_to_tensor(self.quantiles[direction.source])
        target = ops.convert_to_tensor(self.quantiles[direction.target])
        level = interpolate(images, source, levels)
        remapped = interpolate(1.0 - level, levels, target)
        return ops.where(images > self.brain_threshold, remapped, images)

    def prior(self, images, source: str, target: str):
        """The prior image of a translation from ``source`` into ``target``: the remap, or the
        images themselves when ``source == target``."""
        if source == target:  # a tensor either way: a functional generator refuses a numpy/tensor mix
            return ops.cast(ops.convert_to_tensor(images), "float32")
        return self(images, direction=f"{source}2{target}")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(levels=self.levels, brain_threshold=self.brain_threshold)
        return config
