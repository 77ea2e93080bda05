"""Export a trained model as a TensorFlow SavedModel for TF Serving.

The SavedModel holds only the translation graphs and their weights; loading it needs TensorFlow,
not gan_mri. Signatures (see docs/serving.md):

    serving_default   same as a2b
    a2b               T1w -> T2w
    b2a               T2w -> T1w
    a2b_uncertainty   T1w -> T2w, with the translation's uncertainty map
    b2a_uncertainty   T2w -> T1w, with the translation's uncertainty map

Each takes one float32 tensor ``image`` of shape ``(batch, H, W, C)`` (the model's image shape and
channels) with intensities in [-1, 1] (values outside are clipped to it; an empty batch or NaN/Inf input is
refused with an InvalidArgumentError), and returns ``{"translated": float32 (batch, H, W, C) in
[-1, 1]}``; the ``*_uncertainty`` signatures also return ``"uncertainty"``: float32 ``(batch, H, W, C)``,
>= 0, the model's default per-pixel map of :mod:`gan_mri.confidence` (UNIT: the spread of 8 latent samples
from fixed stateless draws; CycleGAN: the cycle residual), the same map as
:func:`gan_mri.confidence.uncertainty_map`, repeated on each channel. A ``serving_info.json`` next to
``saved_model.pb`` records the same facts (with each uncertainty signature's method), the
model config and, for a model trained on standardized volumes, the standardization a client applies
to each volume's slices before sending them (its reference landmarks; `gan_mri.standardization`).

Example:
    >>> from gan_mri.export import export_saved_model
    >>> export_saved_model(model, "saved_models/run/export/1")      # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import keras
import tensorflow as tf

from gan_mri.confidence import DEFAULT_SAMPLES, default_method, translate_with_uncertainty
from gan_mri.fileutil import partial_dir, refuse_existing, replace_dir

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "translated"
SERVING_INFO_FILE = "serving_info.json"
UNCERTAINTY_NAME = "uncertainty"
# Signature name -> translation direction; serving_default is what TF Serving calls by default.
SIGNATURES = {"serving_default": "A2B", "a2b": "A2B", "b2a": "B2A"}
# Signature name -> direction of the signatures that also return the uncertainty map.
UNCERTAINTY_SIGNATURES = {"a2b_uncertainty": "A2B", "b2a_uncertainty": "B2A"}
UNCERTAINTY_SEED = 0


def serving_input_shape(model) -> tuple[None, int, int, int]:
    """Returns the signature input shape ``(None, H, W, C)`` of a model's export."""
    try:
        height, width = (int(size) for size in model.image_shape)
        channels = int(model.channels)
    except (AttributeError, TypeError, ValueError) as err:
        raise ValueError(
            f"model: expected a gan-mri model with image_shape (H, W) and channels, found "
            f"{type(model).__name__} ({err})"
        ) from err
    return None, height, width, channels


def export_saved_model(model, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Writes ``model`` as a SavedModel with the signatures ``serving_default``, ``a2b``, ``b2a``,
    ``a2b_uncertainty``, ``b2a_uncertainty`` (module docstring).

    The SavedModel is written into a temporary folder next to ``path`` and renamed into place, so
    ``path`` is either the complete export or untouched. For TF Serving, ``path`` should be a
    numbered version folder, e.g. ``.../gan_mri/1`` (see docs/serving.md).

    Args:
        model: a gan-mri model (``translate(x, direction)``, ``image_shape``, ``channels``).
        path: the SavedModel folder to create.
        overwrite: replace an existing ``path``.

    Returns:
        ``path`` as a `Path`.

    Raises:
        ValueError: if ``path`` exists and ``overwrite`` is false, or ``model`` is not a
            gan-mri model.
    """
    path = Path(path)
    refuse_existing(path, "export path", overwrite, flag="overwrite=True (--overwrite)")
    if not callable(getattr(model, "translate", None)):
        raise ValueError(
            f"model: expected a gan-mri model with a translate() method, found {type(model).__name__}"
        )
    input_shape = serving_input_shape(model)
    spec = tf.TensorSpec(shape=input_shape, dtype=tf.float32, name=INPUT_NAME)

    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, direction in SIGNATURES.items():
        archive.add_endpoint(name, _endpoint(model, direction, input_shape), input_signature=[spec])
    uncertainty = {}
    for name, direction in UNCERTAINTY_SIGNATURES.items():
        uncertainty[name] = _add_uncertainty_endpoint(archive, name, model, direction, input_shape, spec)

    path.parent.mkdir(parents=True, exist_ok=True)
    with partial_dir(path.parent, path.name) as staging:
        archive.write_out(str(staging), verbose=False)
        _write_serving_info(staging / SERVING_INFO_FILE, model, input_shape, uncertainty)
        replace_dir(staging, path)
    logger.info("exported SavedModel with signatures %s to %s", [*SIGNATURES, *UNCERTAINTY_SIGNATURES], path)
    return path


def _add_uncertainty_endpoint(archive, name: str, model, direction: str, input_shape, spec) -> dict:
    """Adds one ``*_uncertainty`` signature with the model's default method; returns its serving_info entry.

    Should the latent method fail to trace (a model whose encoder or decoder is not graph code), the
    signature falls back to the cycle residual, which every model has, and the entry says why.
    """
    method = default_method(model)
    settings = {"method": method}
    if method == "latent":
        settings.update(samples=DEFAULT_SAMPLES, seed=UNCERTAINTY_SEED)
    try:
        function = _traced(_endpoint(model, direction, input_shape, settings), spec)
    except Exception as err:  # noqa: BLE001 - whatever stops the latent path from tracing, the remedy is the same
        if method != "latent":
            raise
        logger.warning("%s: the latent uncertainty map could not be traced (%s: %s); serving the cycle residual",
                       name, type(err).__name__, err)
        settings = {"method": "cycle", "note": "the latent method, this model's default, could not be traced into "
                    f"the graph ({type(err).__name__}: {err}); this signature serves the cycle residual"}
        function = _traced(_endpoint(model, direction, input_shape, settings), spec)
    archive.add_endpoint(name, function)  # already traced: its one concrete function is the signature
    return {"direction": direction, "outputs": [OUTPUT_NAME, UNCERTAINTY_NAME], "uncertainty": settings}


def _traced(serve, spec):
    """``serve`` as a ``tf.function`` traced for ``spec`` (so that a tracing error surfaces here)."""
    function = tf.function(serve, input_signature=[spec], autograph=False)
    function.get_concrete_function()
    return function


def _endpoint(model, direction: str, input_shape, uncertainty: dict | None = None):
    """The serving function of one direction; its argument name becomes the input name.

    With ``uncertainty`` (``method`` and, for ``"latent"``, ``samples`` and ``seed``), it also returns the
    uncertainty map of :func:`gan_mri.confidence.translate_with_uncertainty`, repeated on each channel.
    """
    expected = tf.constant(input_shape[1:], dtype=tf.int32)
    message = (
        f"{INPUT_NAME}: expected a float32 tensor of shape (batch, {input_shape[1]}, "
        f"{input_shape[2]}, {input_shape[3]}) with values in [-1, 1]; found shape"
    )
    empty_message = f"{INPUT_NAME}: expected at least one image in the batch; found shape"
    finite_message = f"{INPUT_NAME}: expected finite values in [-1, 1]; found NaN or Inf"

    def translate(image):
        # Signature callers (TF Serving, signatures[...]) bypass the TensorSpec check, and a wrong
        # size would otherwise fail deep inside a convolution or return a wrong-size image.
        found = tf.shape(image)
        # Graph ops do not short-circuit: pad to rank 4 so the comparison is valid at any rank.
        padded = tf.concat([found, tf.zeros([4], tf.int32)], axis=0)[:4]
        shape_check = tf.debugging.Assert(
            tf.logical_and(tf.equal(tf.size(found), 4), tf.reduce_all(tf.equal(padded[1:], expected))),
            [message, found],
            summarize=4,
        )
        empty_check = tf.debugging.Assert(tf.greater(padded[0], 0), [empty_message, found], summarize=4)
        with tf.control_dependencies([shape_check, empty_check]):
            finite = tf.reduce_all(tf.math.is_finite(image))
        finite_check = tf.debugging.Assert(finite, [finite_message], summarize=1)
        with tf.control_dependencies([finite_check]):
            # The model saw only [-1, 1] (prepare clips to it): values outside are clipped, not refused.
            image = tf.clip_by_value(image, -1.0, 1.0)
        if uncertainty is None:
            return {OUTPUT_NAME: model.translate(image, direction)}
        options = {key: uncertainty[key] for key in ("samples", "seed") if key in uncertainty}
        translated, spread = translate_with_uncertainty(model, image, direction, uncertainty["method"], **options)
        return {OUTPUT_NAME: translated, UNCERTAINTY_NAME: tf.repeat(spread[..., None], input_shape[3], axis=-1)}

    translate.__name__ = f"translate_{direction.lower()}" + ("" if uncertainty is None else "_uncertainty")
    return translate


def _write_serving_info(path: Path, model, input_shape, uncertainty: dict) -> None:
    config = getattr(model, "config", None)
    info = {
        "signatures": {**{name: {"direction": direction} for name, direction in SIGNATURES.items()}, **uncertainty},
        "directions": {"A2B": "T1-weighted -> T2-weighted", "B2A": "T2-weighted -> T1-weighted"},
        "inputs": {INPUT_NAME: {"dtype": "float32", "shape": list(input_shape), "range": [-1.0, 1.0]}},
        "outputs": {
            OUTPUT_NAME: {"dtype": "float32", "shape": list(input_shape), "range": [-1.0, 1.0]},
            UNCERTAINTY_NAME: {
                "dtype": "float32", "shape": list(input_shape), "range": [0.0, 2.0], "signatures": list(uncertainty),
                "note": "per-pixel uncertainty of the translation (higher: trust it less), in the units of the "
                        "[-1, 1] images, the mean over channels repeated on each; methods: cycle = |x - "
                        "G_BA(G_AB(x))|, latent = standard deviation of the translations of `samples` latent codes "
                        "(stateless draws from `seed`, the same for every slice); gan_mri.confidence, "
                        "docs/lesions.md",
            },
        },
        "config": config.to_dict() if hasattr(config, "to_dict") else None,
    }
    standardization = getattr(model, "standardization", None)
    if standardization is not None:
        info["standardization"] = {
            **standardization.to_dict(),
            "note": "inputs are standardized per volume before translation: the percentiles of a volume's "
                    "brain voxels (its landmarks) mapped piecewise-linearly onto this reference of its "
                    "contrast (A = T1w, B = T2w), -1 and 1 fixed (gan_mri.standardization)",
        }
    training_remap = getattr(model, "training_remap", None)
    if training_remap is not None:
        # What the training data teaches without a network: a reference for whoever scores the served model.
        info["training_remap"] = {
            **training_remap.to_dict(),
            "note": "unpaired brain-intensity remap of the training split (quantiles of A = T1w and B = T2w "
                           "at evenly spaced levels 0..1, in the model's [-1, 1] input space; gan_mri.baseline)"}
    preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is not None:
        # How a client makes the slices it sends from a volume (gan_mri.data.preprocessing).
        info["preprocessing"] = preprocessing
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
