"""How a volume becomes the slices a model sees: recorded by ``prepare``, kept by the model, used again.

A model is only right on slices made the way its training slices were: the same slice grid (image
shape, and pixel spacing in millimetres when one was set), the same intensity normalization
percentiles, the same in-plane fit and the same rule for which slices count as brain. ``prepare``
writes these settings into the manifest; :func:`gan_mri.training.train` gives them to the model
(``model.preprocessing``, saved in ``.keras``, ``run.json`` and the SavedModel's ``serving_info.json``);
``translate`` slices every volume with them and ``evaluate`` refuses a dataset prepared otherwise,
naming each difference.

Brain masks are found the same way everywhere (:func:`gan_mri.data.brain_mask.brain_mask`): a mask the
user or the layout gives, else the imaged object of a brain-extracted scan, else, for a whole head, the
brain of a template registered to it.
"""

from __future__ import annotations

from .volumes import DEFAULT_MIN_BRAIN_FRACTION, DEFAULT_PERCENTILES

ORIENTATION = "axial slices of the RAS+ volume, anterior at the top, the subject's left on the image's left"
BRAIN_MASK_METHOD = ("given mask, else the imaged object of a brain-extracted scan, else a registered template "
                     "brain for a whole head (gan_mri.data.brain_mask.brain_mask)")
DEFAULTS = {"spacing": None, "resize": "fit", "percentiles": [float(p) for p in DEFAULT_PERCENTILES],
            "min_brain_fraction": float(DEFAULT_MIN_BRAIN_FRACTION)}
"""What a model trained before preprocessing was recorded (or on PNG folders) gets: the library's defaults."""
_SETTINGS = tuple(DEFAULTS)


def preprocessing_from_manifest(manifest: dict) -> dict:
    """The preprocessing record of a prepared dataset: image shape, the slice settings of
    :data:`DEFAULTS` (defaults where the manifest predates one) and the fixed orientation and
    brain-mask method."""
    settings = manifest.get("settings", {})
    record = {"image_shape": [int(v) for v in manifest["image_shape"]]}
    for key, default in DEFAULTS.items():
        record[key] = settings.get(key, default)
    record["orientation"] = ORIENTATION
    record["brain_mask"] = BRAIN_MASK_METHOD
    return record


def slice_settings(preprocessing: dict | None) -> dict:
    """The keyword arguments of :func:`gan_mri.data.volumes.volume_to_slices` a record asks for
    (``spacing``, ``resize``, ``percentiles``) and its ``min_brain_fraction``; defaults for ``None``."""
    record = {**DEFAULTS, **(preprocessing or {})}
    return {key: record[key] for key in _SETTINGS}


def preprocessing_differences(model_record: dict | None, data_record: dict) -> list[str]:
    """The settings in which data prepared as ``data_record`` differ from what the model was trained on,
    one phrase each (empty: none). A model without a record is compared with :data:`DEFAULTS`."""
    expected, found = slice_settings(model_record), slice_settings(data_record)
    return [f"{key} {found[key]!r} where the model was trained with {expected[key]!r}"
            for key in _SETTINGS if expected[key] != found[key]]


def check_preprocessing(model, dataset) -> None:
    """Refuses a dataset whose slices were made otherwise than the model's training slices.

    Raises:
        ValueError: naming the dataset and every setting that differs.
    """
    found = preprocessing_differences(getattr(model, "preprocessing", None), dataset.preprocessing)
    if found:
        raise ValueError(f"dataset {dataset.path}: prepared otherwise than the model's training data: "
                         + "; ".join(found) + ". Prepare it again with the model's settings (gan-mri prepare "
                         "--spacing, or the Python API's percentiles, resize and min_brain_fraction)")
