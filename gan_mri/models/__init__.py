"""Model families of gan_mri; `build_model(config)` builds the one a config names.

Adding a family (as CycleGAN was) = one file in this folder with a `TranslationGAN` subclass
(`base.py`: construction, compile, metrics, translate, serialization), its config dataclass in
`gan_mri.config`, and one `gan_mri.config.register_family(Family(...))` call naming the two and the
family's presets. `build_model`, `MODELS`, `get_preset`, `config_from_dict` and the CLI read that
registration (`gan_mri.config.FAMILY_REGISTRY`).
"""

from __future__ import annotations

from gan_mri.config import FAMILY_REGISTRY
from gan_mri.models.base import TranslationGAN
from gan_mri.models.cyclegan import CycleGAN
from gan_mri.models.unit import UNIT

MODELS = FAMILY_REGISTRY.view(lambda family: family.model_class())
"""Config `model` field -> keras.Model subclass taking the config as its first argument (a live view
of `gan_mri.config.FAMILY_REGISTRY`)."""


def build_model(config, batch_size: int | None = None):
    """Builds the model a config describes.

    Args:
        config: a model config (e.g. `UNITConfig`) whose `model` field names a registered family.
        batch_size: the batch the model will train on: "auto" precision decides on a CPU for the
            model's shape at this batch (`gan_mri.precision.ModelShape`); None: batch 1.

    Returns:
        An uncompiled `keras.Model` (`UNIT`, `CycleGAN`, or the class of a family registered since).

    Raises:
        ValueError: if `config.model` names no registered family (listing the registered ones).
    """
    family = getattr(config, "model", None)
    if not isinstance(family, str) or family not in FAMILY_REGISTRY:
        raise ValueError(f"config.model must be one of {list(FAMILY_REGISTRY)}; found {family!r}")
    if batch_size is None:
        return FAMILY_REGISTRY[family].model_class()(config)
    return FAMILY_REGISTRY[family].model_class()(config, batch_size=batch_size)


__all__ = ["MODELS", "CycleGAN", "TranslationGAN", "UNIT", "build_model"]
