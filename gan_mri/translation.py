"""Plain translation: a stack of slices through a model, in batches, after checking the direction and the slices.

The bottom floor of translation: `gan_mri.confidence` (a translation with its uncertainty map) builds on it,
and `gan_mri.inference` (volumes, PNG slices, folders, files on disk) on both. `parse_direction`,
`checked_slices`, `model_input_shape` and `translate_slices` are importable from `gan_mri.inference` too.

Example:
    >>> from gan_mri.translation import parse_direction, translate_slices
    >>> parse_direction("T1 to T2")
    <Direction.A2B: 'A2B'>
    >>> translated = translate_slices(model, slices, "T1->T2")      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import re

import keras
import numpy as np

from gan_mri import Direction

logger = logging.getLogger(__name__)

_DIRECTION_ALIASES = {"a2b": "A2B", "b2a": "B2A", "t12t2": "A2B", "t22t1": "B2A"}
VALID_DIRECTION_SPELLINGS = (
    "A2B", "B2A", "T1->T2", "T2->T1", "T1w->T2w", "T2w->T1w", "t1w2t2w", "t2w2t1w", "T1 to T2",
)


def parse_direction(direction: str) -> str:
    """Normalizes a translation direction to ``"A2B"`` (T1w -> T2w) or ``"B2A"`` (T2w -> T1w).

    Case, spaces, ``-``/``_`` separators, arrows (``->``, ``→``), ``to`` and the ``w`` of
    ``T1w``/``T2w`` are ignored, so ``"a2b"``, ``"T1->T2"``, ``"t1w2t2w"``, ``"T1w to T2w"`` all
    mean ``"A2B"``.

    Args:
        direction: the direction as a user spelled it.

    Returns:
        `gan_mri.Direction.A2B` or `gan_mri.Direction.B2A` (strings "A2B" / "B2A").

    Raises:
        ValueError: if the spelling is not recognized; the message lists valid spellings.
    """
    key = None
    if isinstance(direction, str):
        key = direction.strip().lower().replace("→", "2").replace("->", "2")
        key = re.sub(r"[\s_-]+", "", key)
        # Only a, b, t, 1, 2 and w make up a direction, so any "to" left is the separator.
        key = re.sub(r"t([12])w", r"t\1", key.replace("to", "2"))
    if key not in _DIRECTION_ALIASES:
        raise ValueError(
            f"direction: expected one of {', '.join(VALID_DIRECTION_SPELLINGS)} "
            f"(A = T1w, B = T2w), found {direction!r}"
        )
    return Direction(_DIRECTION_ALIASES[key])


def model_input_shape(model) -> tuple[int, int, int]:
    """Returns ``(height, width, channels)`` of the images a model translates."""
    height, width = (int(size) for size in model.image_shape)
    return height, width, int(model.channels)


def checked_slices(model, slices, batch_size: int) -> np.ndarray:
    """``slices`` as a float32 array, after checking them and ``batch_size`` against ``model``.

    Returns:
        float32 array ``(N, H, W, C)``.

    Raises:
        ValueError: for a batch size that is not a positive integer, or slices that are not
            ``(N, H, W, C)`` with the model's image shape and channels (naming the expected shape).
    """
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, found {batch_size!r}")
    slices = np.asarray(slices, dtype=np.float32)
    expected = model_input_shape(model)
    if slices.ndim != 4 or tuple(slices.shape[1:]) != expected:
        raise ValueError(
            f"slices: expected shape (N, {expected[0]}, {expected[1]}, {expected[2]}) to match the "
            f"model's image shape and channels, found {slices.shape}"
        )
    return slices


def translate_slices(model, slices, direction: str, batch_size: int = 16) -> np.ndarray:
    """Translates a stack of slices in batches.

    Args:
        model: a gan-mri model (``translate``, ``image_shape``, ``channels``).
        slices: float32 array ``(N, H, W, C)`` in [-1, 1] with ``(H, W)`` the model's image shape and
            ``C`` its channels.
        direction: any spelling accepted by `parse_direction`.
        batch_size: slices per call to the model.

    Returns:
        float32 array ``(N, H, W, C)`` of translated slices in [-1, 1].

    Raises:
        ValueError: for a bad direction, batch size or slice shape (naming the expected shape).
    """
    direction = parse_direction(direction)
    slices = checked_slices(model, slices, batch_size)
    translated = np.empty_like(slices)
    for start in range(0, len(slices), batch_size):
        batch = slices[start : start + batch_size]
        output = keras.ops.convert_to_numpy(model.translate(batch, direction))
        translated[start : start + len(batch)] = output
    logger.debug("translated %d slices %s", len(slices), direction)
    return translated
