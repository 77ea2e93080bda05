"""Typed configuration of the model families (UNIT, CycleGAN), presets as data, JSON round trip.

Every architectural and training choice of the model family lives in one `UNITConfig`, passed whole
to `gan_mri.models.build_model`. The defaults are the library's training recipe
(docs/training_recipe.md); the lineage's values (GAN-MRI's UNIT, Welander et al. 2018) are the
"lineage" recipe (`RECIPES`). The eight variants of Maheshwari and Pant's Table 7(a) are named
presets that override a few fields. CycleGAN, the lineage's other model, has its own `CycleGANConfig` and the preset
"cyclegan"; `get_preset` and `config_from_dict` return the right class.

Model families and training recipes are registered once (`gan_mri.registry`): `register_family(Family(...))`
gives a family its config class, its model class and its presets, and `get_preset`, `all_preset_names`,
`config_from_dict`, `gan_mri.models.build_model` and the CLI's ``train --family`` choices read
`FAMILY_REGISTRY`; `register_recipe(Recipe(...))` does the same for ``--recipe`` (`RECIPE_REGISTRY`).

Example:
    >>> from gan_mri.config import get_preset
    >>> config = get_preset("sa-enc-cl-sn", image_shape=(32, 32), base_width=8)
    >>> config.attention, config.recon_loss
    ('encoder', 'charbonnier')
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

from gan_mri.registry import Registry

NORMS = ("instance", "layer", "batch")
CONV_NORMS = ("none", "instance", "layer")
UPSAMPLING = ("transpose", "nearest")
GAN_LOSSES = ("bce", "lsgan")
"""The built-in adversarial criteria, each registered with its per-scale term and decision threshold
in `CRITERION_REGISTRY` by `gan_mri.losses`; a config's ``gan_loss`` may name any registered criterion."""
ATTENTION_PLACEMENTS = ("none", "encoder", "generator")
SPECTRAL_NORM_SCOPES = ("encoder", "generator", "discriminator")
RECON_LOSSES = ("mae", "charbonnier")
"""Reconstruction penalties; `gan_mri.losses.reconstruction_loss` maps each name to its function."""
UPDATE_ORDERS = ("d_then_g", "g_then_d")
"""UNIT's two updates per step: the lineage's D then G (each with its own generator forward), or
G then D on the translations the G update made (one generator forward per step)."""
CHANNELS = (1, 3)
REMAP_PRIORS = ("none", "residual", "channel")
"""How a generator builds on the unpaired quantile remap fitted on the training split
(`gan_mri.remap_prior`): not at all, as a residual it corrects, or as an extra input channel."""
DISTRIBUTIONS = ("none", "mirrored", "multi-worker")
"""The values of `--distribute` / `train(distribute=...)`; `gan_mri.distribute` implements them."""
# CycleGAN's generator halves the resolution twice, then doubles it twice.
SPATIAL_MULTIPLE = 4


@dataclasses.dataclass(frozen=True)
class GANCriterion:
    """An adversarial criterion: its per-scale term and the output at which its discriminator is undecided.

    Attributes:
        name: the value of a config's ``gan_loss`` and of the loss functions' ``criterion=``.
        term: f(outputs, target) -> scalar float32, the mean over one scale's map against the
            target 1.0 ("real") or 0.0 ("fake").
        threshold: the discriminator output at which "real" and "fake" are equally likely
            (`gan_mri.losses.discriminator_accuracy` counts outputs above it as "real").
        description: a few words for the docs.
    """

    name: str
    term: Callable
    threshold: float
    description: str


CRITERION_REGISTRY: Registry[GANCriterion] = Registry("GAN criterion")
"""Criterion name -> `GANCriterion`, read by the loss functions of `gan_mri.losses` (which registers the
built-in ones, `GAN_LOSSES`, with their Keras terms) and by the configs' validation of ``gan_loss``. It
lives here, beside the loss-name lists, so that the configs read it without importing the losses."""


def register_gan_criterion(criterion: GANCriterion, replace: bool = False) -> GANCriterion:
    """Registers an adversarial criterion (`Registry.register`; `CRITERION_REGISTRY.registered` for a
    ``with`` block); configs accept its name as ``gan_loss`` from then on.

    Raises:
        ValueError: for a name already registered (without ``replace``).
    """
    return CRITERION_REGISTRY.register(criterion, replace=replace)


PRESETS: dict[str, dict[str, Any]] = {
    "unit-rgb": {"channels": 3},
    "unit": {},
    "unit-cl": {"recon_loss": "charbonnier"},
    "unit-sn": {"spectral_norm": SPECTRAL_NORM_SCOPES},
    "sa-gen": {"attention": "generator"},
    "sa-gen-cl": {"attention": "generator", "recon_loss": "charbonnier"},
    "sa-gen-cl-sn": {
        "attention": "generator",
        "recon_loss": "charbonnier",
        "spectral_norm": SPECTRAL_NORM_SCOPES,
    },
    "sa-enc-cl-sn": {
        "attention": "encoder",
        "recon_loss": "charbonnier",
        "spectral_norm": SPECTRAL_NORM_SCOPES,
    },
}
"""Preset name -> what defines the variant (attention placement, spectral-norm scopes,
Charbonnier penalty, channels); everything else comes from the recipe."""

LINEAGE_RECIPE: dict[str, Any] = {
    "conv_norm": "none",
    "upsample": "transpose",
    "gan_loss": "bce",
    "g_learning_rate": 1e-4,
    "d_learning_rate": 1e-4,
    "decay_start": 1.0,
    "update_order": "d_then_g",
    "attention_pool": 1,
    "latent_noise_std": 1.0,
    "dropout": 0.5,
    "downsampling": 2,
    "encoder_res_blocks": 3,
    "shared_res_blocks": 1,
    "generator_res_blocks": 3,
    "gan_weight": 10.0,
    "kl_weight": 0.1,
    "recon_weight": 100.0,
    "cycle_kl_weight": 0.1,
    "cycle_weight": 100.0,
    "structure_weight": 0.0,
    "remap_prior": "none",
}
"""GAN-MRI's published UNIT training setting (Welander et al. 2018; the paper's Table 7 runs)."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A named training setting: the config fields it sets under a preset's defining fields.

    A recipe sets the fields of the families whose config records its recipe (a ``recipe`` field:
    UNIT); the others keep their defaults (CycleGAN's are already the lineage's).

    Attributes:
        name: the value of `get_preset(..., recipe=name)` and ``--recipe``.
        fields: config field -> value.
        description: a few words for ``--help`` and the docs.
    """

    name: str
    fields: dict[str, Any]
    description: str


RECIPE_REGISTRY: Registry[Recipe] = Registry("recipe")
"""Recipe name -> `Recipe`, read by `get_preset`, `UNITConfig.recipe`'s validation and ``--recipe``."""


def register_recipe(recipe: Recipe, replace: bool = False) -> Recipe:
    """Registers a training recipe (`Registry.register`; `RECIPE_REGISTRY.registered` for a ``with`` block).

    Raises:
        ValueError: for a name already registered (without ``replace``).
    """
    return RECIPE_REGISTRY.register(recipe, replace=replace)


register_recipe(Recipe("default", {}, "this library's, docs/training_recipe.md"))
register_recipe(Recipe("lineage", LINEAGE_RECIPE, "the GAN-MRI paper's setting"))

RECIPES = RECIPE_REGISTRY.view(lambda recipe: recipe.fields)
"""Recipe name -> the `UNITConfig` fields it sets (a live view of `RECIPE_REGISTRY`). "default" is the
dataclass defaults (the recipe this library trains with, see docs/training_recipe.md); "lineage" is the
paper's setting, so the published runs can be repeated as published. A recipe never touches what
defines a preset."""


def preset_names() -> tuple[str, ...]:
    """Returns the names of the built-in presets, in the paper's table order."""
    return tuple(PRESETS)


PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
"""The one list of precision settings (what they do: `gan_mri.precision`, which imports it from here).
Here, not there, so that validating a config needs no Keras: precision.py imports Keras, and with it
TensorFlow (seconds), at module level, while this module stays stdlib-only and a bad setting on the
command line is reported at once."""


def _gan_criteria() -> tuple[str, ...]:
    """The adversarial criteria a config may name: the built-in `GAN_LOSSES` (registered with their Keras
    terms when `gan_mri.losses` is imported, which need not have happened yet), then any other
    `CRITERION_REGISTRY` entry, in registration order."""
    return GAN_LOSSES + tuple(name for name in CRITERION_REGISTRY if name not in GAN_LOSSES)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Rule:
    """One check of a config field: `accepts(value)` and the `expected` text of its error message.

    The error reads "<Class>.<field> must be <expected>; found <value>", the same sentence for every
    field of every config class.
    """

    def __init__(self, accepts, expected: str):
        self.accepts = accepts
        self._expected = expected

    @property
    def expected(self) -> str:
        return self._expected

    def found(self, value: Any) -> str:
        return repr(value)


class _OneOf(_Rule):
    """A value from a fixed enumeration (a tuple, or a function returning one when the
    enumeration lives in a module this one must not import at load time). Types must match too,
    so neither True nor 1.0 passes for 1."""

    def __init__(self, allowed):
        self._allowed = allowed
        super().__init__(self._accepts, "")

    @property
    def allowed(self) -> tuple:
        return self._allowed() if callable(self._allowed) else self._allowed

    def _accepts(self, value: Any) -> bool:
        return any(type(value) is type(choice) and value == choice for choice in self.allowed)

    @property
    def expected(self) -> str:
        return f"one of {list(self.allowed)}"


class _SubsetOf(_OneOf):
    """A tuple of distinct values from an enumeration (e.g. the spectral-norm scopes)."""

    def _accepts(self, value: Any) -> bool:
        return (isinstance(value, tuple) and len(set(value)) == len(value)
                and all(super(_SubsetOf, self)._accepts(item) for item in value))

    @property
    def expected(self) -> str:
        return f"a subset (no repeats) of {list(self.allowed)}"

    def found(self, value: Any) -> str:
        return repr(list(value) if isinstance(value, tuple) else value)


def _exactly(name: str) -> _Rule:
    return _Rule(lambda value: value == name, repr(name))


def _integer(low: int, high: int | None = None) -> _Rule:
    if high is None:
        return _Rule(lambda value: _is_int(value) and value >= low, f"an integer >= {low}")
    return _Rule(lambda value: _is_int(value) and low <= value <= high, f"an integer from {low} to {high}")


_NON_NEGATIVE = _Rule(lambda value: _is_number(value) and value >= 0, "a number >= 0")
_POSITIVE = _Rule(lambda value: _is_number(value) and value > 0, "a number > 0")
_BELOW_ONE = _Rule(lambda value: _is_number(value) and 0 <= value < 1, "in [0, 1)")
_FRACTION = _Rule(lambda value: _is_number(value) and 0 <= value <= 1, "a fraction in [0, 1]")
_NAME = _Rule(lambda value: isinstance(value, str) and value != "", "a non-empty string")


def _or_none(rule: _Rule) -> _Rule:
    """None (the config derives the value from the image size) or what `rule` accepts."""
    return _Rule(lambda value: value is None or rule.accepts(value), f"None or {rule.expected}")


_DOWNSAMPLING = _or_none(_integer(1, 4))
_ATTENTION_POOL = _or_none(_integer(1))

_SHARED_RULES: dict[str, _Rule] = {
    "channels": _OneOf(CHANNELS),
    "base_width": _integer(1),
    "norm": _OneOf(NORMS),
    "gan_weight": _NON_NEGATIVE,
    "cycle_weight": _NON_NEGATIVE,
    "g_learning_rate": _POSITIVE,
    "d_learning_rate": _POSITIVE,
    "beta_1": _BELOW_ONE,
    "beta_2": _BELOW_ONE,
    "decay_start": _FRACTION,
    "precision": _OneOf(PRECISIONS),
    "remap_prior": _OneOf(REMAP_PRIORS),
}
"""Rules of the fields both model families have, with the same meaning."""


def _image_shape_rules(multiple, reason: str = ""):
    """The two rules of `image_shape`: (height, width) positive integers, then multiples of
    ``multiple`` (a function of the config, asked only once the first rule has passed)."""
    yield _Rule(lambda shape: isinstance(shape, tuple) and len(shape) == 2
                and all(_is_int(side) and side > 0 for side in shape), "(height, width), positive integers")
    factor = multiple()
    yield _Rule(lambda shape: all(side % factor == 0 for side in shape),
                f"(height, width), positive multiples of {factor}{f' ({reason})' if reason else ''}")


class _ConfigIO:
    """Validation, copy, dict and JSON round trip of a config dataclass; `_display_name` names
    the family in error messages (e.g. "UNIT config file not found: ...")."""

    _display_name = "model"
    _saved_before = {}  # field -> its value in models saved before the field existed (not a field)

    @classmethod
    def family_name(cls) -> str:
        """The model family this config class describes: the default of its ``model`` field."""
        return next(field.default for field in dataclasses.fields(cls) if field.name == "model")

    def _rules(self):
        """Yields (field, rule) pairs covering every field, in checking order; a rule may rely on
        the fields checked before it (the generator runs only as far as validation gets)."""
        raise NotImplementedError

    def validate(self) -> None:
        """Checks every field against its rule, in order, and stops at the first invalid one.

        Raises:
            ValueError: "<Class>.<field> must be <what is allowed>; found <value>".
        """
        for field, rule in self._rules():
            value = getattr(self, field)
            if not rule.accepts(value):
                raise ValueError(
                    f"{type(self).__name__}.{field} must be {rule.expected}; found {rule.found(value)}")

    def replace(self, **changes):
        """Returns a validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-compatible dict of every field (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Builds a config from `to_dict` output.

        Raises:
            ValueError: on unknown keys (naming them and the valid ones) or invalid values.
        """
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"Unknown {cls.__name__} fields {unknown}; valid fields are {sorted(valid)}")
        return cls(**data)

    @classmethod
    def from_saved_dict(cls, data: dict[str, Any]):
        """Builds the config of a saved model: like `from_dict`, but a field the model was saved
        without (it predates the field) takes the value such models were built with, not the
        present default, so an older `.keras` file computes what it computed when saved."""
        return cls.from_dict({**cls._saved_before, **data})

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """Serializes to JSON text; also writes it to `path` when given.

        Returns:
            The JSON text.
        """
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | os.PathLike):
        """Reads a config from a JSON file path or from JSON text.

        Raises:
            FileNotFoundError: if a path-like argument that is not JSON text does not exist.
            ValueError: on invalid JSON or invalid fields.
        """
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise FileNotFoundError(f"{cls._display_name} config file not found: {path}")
            text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{cls._display_name} config is not valid JSON: {err}") from err
        return cls.from_dict(data)


@dataclasses.dataclass
class UNITConfig(_ConfigIO):
    """Configuration of a UNIT model (architecture, losses, optimisation, precision).

    Args:
        model: model family; always "unit" here (used by `config_from_dict` to dispatch).
        name: preset name the config came from, or "custom".
        recipe: name of the training recipe the config came from (`RECIPE_REGISTRY`): "default",
            "lineage" or one registered since (a record: the fields themselves say what is trained).
        image_shape: (height, width) of the images; each a multiple of 2 ** downsampling.
        channels: 1 (grayscale) or 3 (RGB).
        base_width: filters of the first encoder conv; later layers use 2x and 4x
            (discriminator: 1x, 2x, 4x, 8x). Lineage: 64.
        downsampling: stride-2 convs of the encoders (and x2 upsamplings of the generators), d:
            the latent code has shape (H / 2^d, W / 2^d, 2^d * base_width). Lineage: 2 (a 64x64
            code for its 256x256 slices). None (the default) picks d from the image size so that
            the code keeps the lineage's resolution, 64 on the shorter side (32 for 64-px images;
            see `downsampling_steps`).
        encoder_res_blocks: residual blocks at the end of each domain encoder.
        shared_res_blocks: residual blocks in the shared encoder and in the shared decoder.
        generator_res_blocks: residual blocks at the start of each generator.
        norm: normalization in residual blocks, "instance", "layer" or "batch".
        conv_norm: normalization after the encoders' strided convs and the generators'
            upsampling convs: "none" (the lineage), "instance" or "layer".
        upsample: the generators' x2 upsampling: "transpose" (the lineage's transposed conv
            3x3/2) or "nearest" (nearest-neighbour x2, then a conv 3x3: no checkerboard).
        attention: self-attention placement, "none", "encoder" or "generator" (both at the
            latent resolution, after the residual blocks).
        attention_pool: p, the attention's keys and values are max-pooled p x p, as in SAGAN's
            reference code: the attention matrix is p^2 times smaller (N x N/p^2) and each
            position still attends to the whole image. 1 (the lineage) attends over every
            position; None (the default) pools to about 16 x 16 keys, see `attention_pool_size`.
        spectral_norm: parts whose convolutions are spectrally normalized, a subset of
            {"encoder", "generator", "discriminator"}. "encoder" covers the domain encoders
            and the shared encoder, "generator" the shared decoder and the generators.
        recon_loss: penalty of the image and cycle reconstruction terms, "mae" or "charbonnier".
        charbonnier_epsilon: epsilon of the Charbonnier penalty sqrt(x^2 + eps^2).
        gan_loss: adversarial criterion, "bce" (the lineage: binary cross-entropy on logits) or
            "lsgan" (least squares, as UNIT's official code), or one registered since
            (`gan_mri.losses.register_gan_criterion`).
        gan_weight: lambda_0, weight of the adversarial terms (G and D); lineage 10, default 30
            (faster early training, see docs/training_recipe.md).
        kl_weight: lambda_1, weight of the KL term on the latent codes z_A, z_B.
        recon_weight: lambda_2, weight of the image reconstruction terms.
        cycle_kl_weight: lambda_3, weight of the KL term on the cycle latent codes.
        cycle_weight: lambda_4, weight of the cycle reconstruction terms.
        structure_weight: weight of the structure term of each translation against its own
            input (`gan_mri.losses.local_correlation_loss`); 0 (the lineage) leaves it out.
            Default 30. It helps on brain-extracted slices and costs 0.01-0.03 brain SSIM on
            cohorts with whole-head scans, where the demo runs without it (docs/training_recipe.md,
            seventh round; ``gan-mri train --structure-weight 0``).
        contrast_weight: weight of the lesion-aware term, the local contrast of each input that
            its translation loses (`gan_mri.losses.local_contrast_loss`); 0 (the default and the
            lineage) leaves it out. See docs/lesions.md for what it buys and costs.
        g_learning_rate, d_learning_rate: Adam learning rates of the generator and
            discriminator players (lineage: 1e-4 each, too slow for short runs; default 2e-3).
        beta_1, beta_2: Adam betas for both players.
        decay_start: fraction of the training steps after which both learning rates decay
            linearly to 0 at the last step; 1.0 keeps them constant (the lineage). Default 0.5.
        update_order: "d_then_g" (the lineage: a discriminator update on fresh translations,
            then a generator update) or "g_then_d" (the generator update, then a discriminator
            update on the translations it made: one generator forward per step instead of two,
            about 10 % less compute, the default; see docs/training_recipe.md for its effect on quality).
        latent_noise_std: stddev of the Gaussian noise added to the shared latent code
            while training (never at inference).
        dropout: dropout rate at the end of each residual block while training (lineage 0.5;
            0 lets the shared code stop aligning the domains, see docs/training_recipe.md).
        precision: "auto" (mixed_float16 on a GPU; on a CPU with AMX-BF16 mixed_bfloat16 where a probe at
            the model's own shapes finds it clearly faster, float32 otherwise; decided once per machine and
            cached, `gan_mri.precision`), "float32", "mixed_float16" or "mixed_bfloat16".
        remap_prior: how the generators build on the unpaired quantile remap of brain intensities
            (`gan_mri.baseline.IntensityRemap`, fitted on the training split when training starts and
            saved with the model; `gan_mri.remap_prior`): "channel" (the default recipe's since 2026-12-07:
            remap(x) an extra input channel of the generators' last full-resolution layer; measured in
            docs/training_recipe.md, ninth round), "residual" (translation = clip(remap(x) + 2 g, -1, 1), g
            the generator's output) or "none" (the lineage's). A recipe setting, not a preset: every preset
            takes it (``train --remap-prior``). A model with a prior trains through `gan_mri.training.train`,
            which fits it, or after ``model.set_intensity_remap(...)``.

    Raises:
        ValueError: on any invalid field (in `__post_init__`, via `validate`), naming the class
            and the field: "UNITConfig.dropout must be in [0, 1); found 1.0".
    """

    _display_name = "UNIT"  # in error messages; not a field (no annotation)
    # Models saved before a field existed: attention over every position, no remap prior.
    _saved_before = {"attention_pool": 1, "remap_prior": "none"}

    model: str = "unit"
    name: str = "custom"
    recipe: str = "default"
    image_shape: tuple[int, int] = (256, 256)
    channels: int = 1
    base_width: int = 64
    downsampling: int | None = None
    encoder_res_blocks: int = 3
    shared_res_blocks: int = 1
    generator_res_blocks: int = 3
    norm: str = "instance"
    conv_norm: str = "none"
    upsample: str = "transpose"
    attention: str = "none"
    attention_pool: int | None = None
    spectral_norm: tuple[str, ...] = ()
    recon_loss: str = "mae"
    charbonnier_epsilon: float = 1e-3
    gan_loss: str = "bce"
    gan_weight: float = 30.0
    kl_weight: float = 0.1
    recon_weight: float = 100.0
    cycle_kl_weight: float = 0.1
    cycle_weight: float = 100.0
    structure_weight: float = 30.0
    contrast_weight: float = 0.0
    g_learning_rate: float = 2e-3
    d_learning_rate: float = 2e-3
    beta_1: float = 0.5
    beta_2: float = 0.999
    decay_start: float = 0.5
    update_order: str = "g_then_d"
    latent_noise_std: float = 1.0
    dropout: float = 0.1
    precision: str = "auto"
    remap_prior: str = "channel"

    def __post_init__(self):
        # JSON gives lists; keep tuples so configs compare equal and stay hashable-ish.
        if isinstance(self.image_shape, list):
            self.image_shape = tuple(self.image_shape)
        if isinstance(self.spectral_norm, (list, set, frozenset)):
            self.spectral_norm = tuple(self.spectral_norm)
        if isinstance(self.spectral_norm, str):
            self.spectral_norm = (self.spectral_norm,)
        self.validate()

    def _rules(self):
        yield "model", _exactly(self.family_name())
        yield "name", _NAME
        yield "recipe", _OneOf(lambda: tuple(RECIPE_REGISTRY))
        yield "downsampling", _DOWNSAMPLING
        for rule in _image_shape_rules(lambda: 2**self.downsampling_steps, "2 ** downsampling"):
            yield "image_shape", rule
        yield from _SHARED_RULES.items()
        yield "encoder_res_blocks", _integer(0)
        yield "shared_res_blocks", _integer(1)
        yield "generator_res_blocks", _integer(0)
        yield "conv_norm", _OneOf(CONV_NORMS)
        yield "upsample", _OneOf(UPSAMPLING)
        yield "attention", _OneOf(ATTENTION_PLACEMENTS)
        yield "attention_pool", _ATTENTION_POOL
        yield "spectral_norm", _SubsetOf(SPECTRAL_NORM_SCOPES)
        yield "recon_loss", _OneOf(RECON_LOSSES)
        yield "charbonnier_epsilon", _POSITIVE
        yield "gan_loss", _OneOf(_gan_criteria)
        yield "update_order", _OneOf(UPDATE_ORDERS)
        for weight in ("kl_weight", "recon_weight", "cycle_kl_weight", "structure_weight", "contrast_weight",
                       "latent_noise_std"):
            yield weight, _NON_NEGATIVE
        yield "dropout", _BELOW_ONE

    @property
    def downsampling_steps(self) -> int:
        """The encoders' stride-2 steps d: `downsampling`, or when it is None the d that gives the
        latent code a shorter side of 64 (the lineage's 256 -> 64), at least 1 and at most 4:
        d = clip(round(log2(min(H, W) / 64)), 1, 4), so 64 px -> 1, 128 px -> 1, 256 px -> 2."""
        if self.downsampling is not None:
            return self.downsampling
        return int(min(4, max(1, round(math.log2(min(self.image_shape) / 64)))))

    @property
    def attention_pool_size(self) -> int:
        """The attention's pool p: `attention_pool`, or when it is None the p that leaves about
        16 x 16 pooled keys on the latent code's shorter side: p = max(1, side // 16), so 64 px ->
        2 (a 32x32 code), 128 px -> 4, 256 px -> 4, 32 px -> 1 (docs/training_recipe.md)."""
        if self.attention_pool is not None:
            return self.attention_pool
        return max(1, min(self.latent_shape[:2]) // 16)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """Shape (H / 2^d, W / 2^d, 2^d * base_width) of the shared latent code, d =
        `downsampling_steps` (the lineage: (H/4, W/4, 4 * base_width))."""
        height, width = self.image_shape
        factor = 2**self.downsampling_steps
        return (height // factor, width // factor, factor * self.base_width)


CYCLEGAN_PRESETS: dict[str, dict[str, Any]] = {"cyclegan": {}}
"""Preset name -> the fields that differ from the lineage defaults of `CycleGANConfig`."""


@dataclasses.dataclass
class CycleGANConfig(_ConfigIO):
    """Configuration of a CycleGAN model (Zhu et al. 2017, as in the GAN-MRI lineage).

    Args:
        model: model family; always "cyclegan" here (used by `config_from_dict` to dispatch).
        name: preset name the config came from, or "custom".
        image_shape: (height, width) of the images; each a multiple of 4.
        channels: 1 (grayscale) or 3 (RGB).
        base_width: filters of the generator's first conv (then 2x, 4x); the PatchGAN
            discriminator uses 2x to 16x (lineage: 32, so the discriminator has 64..512).
        res_blocks: residual blocks in each generator's bottleneck (lineage: 9).
        norm: normalization of generators and discriminators, "instance" or "batch".
        discriminator_scales: PatchGAN scales per discriminator (1 plain, 2 the lineage's
            multi-scale option: the second sees the image average-pooled by 2).
        gan_weight: weight of the generators' least-squares adversarial terms.
        cycle_weight: weight of the cycle-consistency terms (lineage: 10).
        identity_weight: weight of the identity terms |G_AB(x_b) - x_b|, |G_BA(x_a) - x_a|;
            0 disables them (and skips their computation).
        pool_size: past translations per domain kept for the discriminators (Shrivastava et
            al. 2017); 0 feeds the discriminators only the newest translations.
        g_learning_rate, d_learning_rate: initial Adam learning rates of the two players.
        beta_1, beta_2: Adam betas for both players.
        decay_start: fraction of the training steps after which both learning rates decay
            linearly to 0 at the last step (lineage: 0.5, the second half); 1.0 disables it.
        precision: "auto", "float32", "mixed_float16" or "mixed_bfloat16" (see `UNITConfig`).
        remap_prior: "none" (the default), "residual" (G_do(x) = clip(remap(x) + 2 g, -1, 1)) or
            "channel" (the generator's input is x with remap(x) as an extra channel); see `UNITConfig`.

    Raises:
        ValueError: on any invalid field (in `__post_init__`, via `validate`).
    """

    _display_name = "CycleGAN"
    _saved_before = {"remap_prior": "none"}  # models saved before the remap prior existed have none

    model: str = "cyclegan"
    name: str = "custom"
    image_shape: tuple[int, int] = (256, 256)
    channels: int = 1
    base_width: int = 32
    res_blocks: int = 9
    norm: str = "instance"
    discriminator_scales: int = 1
    gan_weight: float = 1.0
    cycle_weight: float = 10.0
    identity_weight: float = 0.0
    pool_size: int = 50
    g_learning_rate: float = 2e-4
    d_learning_rate: float = 2e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    decay_start: float = 0.5
    precision: str = "auto"
    remap_prior: str = "none"

    def __post_init__(self):
        if isinstance(self.image_shape, list):
            self.image_shape = tuple(self.image_shape)
        self.validate()

    def _rules(self):
        yield "model", _exactly(self.family_name())
        yield "name", _NAME
        for rule in _image_shape_rules(lambda: SPATIAL_MULTIPLE):
            yield "image_shape", rule
        yield from _SHARED_RULES.items()
        yield "res_blocks", _integer(0)
        yield "discriminator_scales", _integer(1)
        yield "identity_weight", _NON_NEGATIVE
        yield "pool_size", _integer(0)

    @property
    def discriminator_width(self) -> int:
        """Filters of the discriminator's first conv: 2 * base_width (lineage 64)."""
        return 2 * self.base_width


@dataclasses.dataclass(frozen=True)
class Family:
    """A model family: its config class, its `keras.Model` class and its presets, registered once.

    Attributes:
        name: the family's name: its config's ``model`` field (the default of that field in
            ``config_class``), ``train --family NAME``, and the name of one of its presets (the one
            ``--family`` trains).
        config_class: the config dataclass (a `UNITConfig`-like class with ``validate``, ``from_dict``,
            ``from_saved_dict``, ``to_dict``).
        model: the `keras.Model` subclass built from the config, or its ``"module:Class"`` path,
            imported on first use (`model_class`), so that this module needs no Keras.
        presets: preset name -> the config fields that define the preset.
        description: a few words for ``--help`` and the docs.
    """

    name: str
    config_class: type
    model: type | str
    presets: dict[str, dict[str, Any]]
    description: str

    def model_class(self) -> type:
        """The model class, imported from ``model`` when that is a ``"module:Class"`` path."""
        if not isinstance(self.model, str):
            return self.model
        import importlib

        module, _, attribute = self.model.partition(":")
        return getattr(importlib.import_module(module), attribute)

    @property
    def takes_recipe(self) -> bool:
        """Whether the family's config records a recipe, so that a recipe's fields apply to it."""
        return any(field.name == "recipe" for field in dataclasses.fields(self.config_class))


def _check_family(family: Family, registry: Registry) -> None:
    """The registration check of `FAMILY_REGISTRY`: the config class names the family, the family has
    a preset of its own name, and no preset name belongs to another family."""
    config_class = family.config_class
    if not (dataclasses.is_dataclass(config_class) and isinstance(config_class, type)
            and issubclass(config_class, _ConfigIO)):
        raise ValueError(f"family {family.name!r}: config_class must be a config dataclass (like UNITConfig); "
                         f"found {config_class!r}")
    if config_class.family_name() != family.name:
        raise ValueError(f"family {family.name!r}: config_class {config_class.__name__}'s model field must default "
                         f"to {family.name!r}; found {config_class.family_name()!r}")
    if isinstance(family.model, str) and not all(family.model.partition(":")[::2]):
        raise ValueError(f"family {family.name!r}: model must be a keras.Model subclass or a 'module:Class' path; "
                         f"found {family.model!r}")
    if family.name not in family.presets:
        raise ValueError(f"family {family.name!r}: expected a preset named {family.name!r} (what "
                         f"`train --family {family.name}` trains); found presets {list(family.presets)}")
    taken = {preset: other.name for other in registry.values() if other.name != family.name
             for preset in other.presets}
    clashes = sorted(preset for preset in family.presets if preset in taken)
    if clashes:
        raise ValueError(f"family {family.name!r}: presets {clashes} already belong to family "
                         f"{taken[clashes[0]]!r}; expected preset names of its own")


FAMILY_REGISTRY: Registry[Family] = Registry("model family", _check_family)
"""Family name (a config's ``model``) -> `Family`, read by `get_preset`, `all_preset_names`,
`config_from_dict`, `gan_mri.models.build_model` and the CLI's ``train --family``."""


def register_family(family: Family, replace: bool = False) -> Family:
    """Registers a model family (`Registry.register`; `FAMILY_REGISTRY.registered` for a ``with`` block).

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass
        ... class SmallCycleGANConfig(CycleGANConfig):
        ...     model: str = "small-cyclegan"
        ...     base_width: int = 8
        >>> small = Family("small-cyclegan", SmallCycleGANConfig, "gan_mri.models.cyclegan:CycleGAN",
        ...                {"small-cyclegan": {}}, "CycleGAN at width 8")
        >>> with FAMILY_REGISTRY.registered(small):  # register_family(small) keeps it
        ...     get_preset("small-cyclegan").base_width
        8

    Raises:
        ValueError: for a name already registered (without ``replace``), a config class whose
            ``model`` default is not the family's name, no preset of the family's name, or a preset name
            another family has.
    """
    return FAMILY_REGISTRY.register(family, replace=replace)


register_family(Family("unit", UNITConfig, "gan_mri.models.unit:UNIT", PRESETS,
                       "UNIT, a shared latent space; the paper's eight variants"))
register_family(Family("cyclegan", CycleGANConfig, "gan_mri.models.cyclegan:CycleGAN", CYCLEGAN_PRESETS,
                       "CycleGAN, two generators and cycle consistency"))


def all_preset_names() -> tuple[str, ...]:
    """Returns every preset name, family by family in registration order: the paper's eight UNIT
    variants, then the CycleGAN presets, then those of families registered since."""
    return tuple(preset for family in FAMILY_REGISTRY.values() for preset in family.presets)


def preset_family(name: str) -> Family:
    """Returns the registered family that has the preset ``name``.

    Raises:
        ValueError: for an unknown preset (listing the valid names).
    """
    for family in FAMILY_REGISTRY.values():
        if name in family.presets:
            return family
    raise ValueError(f"Unknown preset {name!r}; valid presets are {list(all_preset_names())}")


def get_preset(name: str, recipe: str = "default", **overrides):
    """Returns the config of a named preset trained with a named recipe, with optional overrides.

    The config is built in three layers: the recipe's training setting (for a family whose config
    records a recipe: UNIT), then the preset's defining fields (attention, spectral norm, Charbonnier,
    channels), then ``overrides``.

    Args:
        name: one of `all_preset_names()` (the UNIT presets of `preset_names()`, "cyclegan", or a
            preset of a family registered since).
        recipe: one of `RECIPE_REGISTRY` ("default" or "lineage"). CycleGAN's defaults are already the
            lineage's, so both recipes give the same CycleGAN config.
        **overrides: any field of the preset's config class, e.g. `image_shape=(32, 32), base_width=8`.

    Returns:
        A validated config of the preset's family (`UNITConfig`, `CycleGANConfig`...) whose `name` is
        the preset name (and, for UNIT, whose `recipe` is the recipe name).

    Raises:
        ValueError: for an unknown preset or recipe (listing the valid names) or an invalid override.
    """
    if recipe not in RECIPE_REGISTRY:
        raise ValueError(f"Unknown recipe {recipe!r}; valid recipes are {list(RECIPE_REGISTRY)}")
    family = preset_family(name)
    training = {"recipe": recipe, **RECIPE_REGISTRY[recipe].fields} if family.takes_recipe else {}
    return family.config_class.from_dict({"name": name, **training, **family.presets[name], **overrides})


def config_from_dict(data: dict[str, Any], saved: bool = False):
    """Builds the config of the model family named by `data["model"]` (default "unit").

    Args:
        data: config fields.
        saved: `data` is what a model or run saved (its config.json), which has every field of
            the version that wrote it; fields added since take their old value
            (`from_saved_dict`), not the present default.

    Raises:
        ValueError: for an unknown model family (listing the registered ones) or invalid fields.
    """
    model = data.get("model", "unit")
    if not isinstance(model, str) or model not in FAMILY_REGISTRY:
        raise ValueError(
            f"Unknown config 'model' {model!r}; known models are {list(FAMILY_REGISTRY)}"
        )
    config_class = FAMILY_REGISTRY[model].config_class
    return config_class.from_saved_dict(data) if saved else config_class.from_dict(data)
