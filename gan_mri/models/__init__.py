"""Model families of gan_mri; `build_model(config)` builds the one a config names.

Adding a family (as CycleGAN was) = one file in this folder with a `TranslationGAN` subclass
(`base.py`: construction, compile, metrics, translate, serialization) plus one line in `MODELS`.
"""

from __future__ import annotations

from gan_mri.models.base import TranslationGAN
from gan_mri.models.cyclegan import CycleGAN
from gan_mri.models.unit import UNIT

MODELS = {"unit": UNIT, "cyclegan": CycleGAN}
"""Config `model` field -> keras.Model subclass taking the config as its first argument."""


def build_model(config):
    """Builds the model a config describes.

    Args:
        config: a model config (e.g. `UNITConfig`) whose `model` field names the family.

    Returns:
        An uncompiled `keras.Model` (`UNIT` or `CycleGAN`).

    Raises:
        ValueError: if `config.model` names no known family (listing the known ones).
    """
    family = getattr(config, "model", None)
    if family not in MODELS:
        raise ValueError(f"config.model must be one of {list(MODELS)}; found {family!r}")
    return MODELS[family](config)


__all__ = ["MODELS", "CycleGAN", "TranslationGAN", "UNIT", "build_model"]
