"""Translate slices, whole volumes and folders with a trained model.

A volume is cut into all its axial slices (after reorientation to RAS, padding and intensity
normalization by `gan_mri.data.volumes.volume_to_slices(..., keep_all=True)`; then, for a model
trained on standardized volumes, the intensity standardization of `gan_mri.standardization`), translated in
batches, restacked and mapped back by `SliceStack.to_volume`, so the written NIfTI has the input's
affine, shape and orientation. PNG slices (the GAN-MRI folder layout) are fitted into the model's
image shape like volume slices, translated in batches, fitted back onto their own size and written
as 8-bit gray PNGs (colour inputs are read as luminance, as `gan_mri.data.png` does); single slices
have no volume to standardize by, so they go in as they are.

Files are written atomically: every output is first written under a temporary name in the output
folder and renamed into place only when all outputs of the call are complete, so an error (an
unreadable volume, a wrong shape) leaves nothing half-written.

The slices go through the model by `gan_mri.translation.translate_slices` (plain translation, one floor
down) and their uncertainty maps come from `gan_mri.confidence` (the floor between).

Example:
    >>> from gan_mri.inference import load_model, translate_path
    >>> model = load_model("saved_models/phantom-sa-enc-cl-sn")          # doctest: +SKIP
    >>> translate_path(model, "sub-01_T1w.nii.gz", "sub-01_T2w-synth.nii.gz", "T1->T2")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras
import nibabel as nib
import numpy as np

from gan_mri.confidence import default_method, uncertainty_map
from gan_mri.data import png, resize, volumes
from gan_mri.data.brain_mask import brain_mask as find_brain_mask
from gan_mri.data.preprocessing import slice_settings
from gan_mri.fileutil import partial_dir, refuse_existing
from gan_mri.run_files import find_model_file
from gan_mri.standardization import landmarks
# Plain slice translation lives one floor down (gan_mri.translation, under gan_mri.confidence too); its public
# names stay importable from here.
from gan_mri.translation import (  # noqa: F401
    VALID_DIRECTION_SPELLINGS,
    checked_slices,
    model_input_shape,
    parse_direction,
    translate_slices,
)

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")
PNG_SUFFIX = ".png"


def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads a trained model from a run folder or a ``.keras`` file.

    Args:
        path: a run folder (holding ``config.json`` and ``model.keras``, as written at the end of
            training) or a ``.keras`` file saved from a gan-mri model.

    Returns:
        The model (e.g. `gan_mri.models.unit.UNIT`), ready for `translate`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``path`` is neither a run folder with a final model nor a ``.keras`` file
            of a gan-mri model.
    """
    # Importing the models registers their classes with Keras, so .keras files deserialize.
    import gan_mri.models  # noqa: F401

    path = Path(path)
    model_file = find_model_file(path)
    try:
        model = keras.models.load_model(model_file, compile=False)
    except Exception as err:  # keras raises many types for a foreign or corrupt archive
        # Keras can list a hundred layers over many lines: keep the first line, the one that says why.
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise ValueError(f"not a gan-mri run or model: {path} (could not load {model_file}: {reason})") from err
    if not callable(getattr(model, "translate", None)):
        raise ValueError(
            f"not a gan-mri run or model: {path} ({model_file} holds a {type(model).__name__}, "
            f"expected a gan-mri model with a translate() method)"
        )
    logger.info("loaded %s from %s", type(model).__name__, model_file)
    return model


def translate_volume(
    model, path_or_image, direction: str, batch_size: int = 16, max_voxels: int = volumes.DEFAULT_MAX_VOXELS,
    brain_mask=None, uncertainty: str | None = None,
):
    """Translates every axial slice of a volume and restacks them into a volume.

    Args:
        model: a gan-mri model.
        path_or_image: a NIfTI path or a loaded nibabel image (3D).
        direction: any spelling accepted by `parse_direction`.
        batch_size: slices per call to the model.
        max_voxels: refuse volumes whose header claims more voxels (a hostile or broken header).
        brain_mask: the volume's brain mask (a path, nibabel image or array on its grid); found as
            `prepare` finds it when ``None`` (`gan_mri.data.brain_mask.brain_mask`: the imaged object of a
            brain-extracted volume, a registered template brain for a whole head).
        uncertainty: also map where the translation is unsure, by this method of
            `gan_mri.confidence.CONFIDENCE_METHODS` ("default": the measured best for the model).

    Returns:
        A `nibabel.Nifti1Image` with the input's affine, shape and orientation, holding the
        translated contrast in the input's intensity range; with ``uncertainty``, a pair of it and the
        uncertainty map on the same grid (model-space units, 0 = certain). The intensity normalization and
        standardization use the brain, so a whole-head scan and its brain-extracted copy give the
        same brain.

    The volume is sliced as the model's training volumes were (``model.preprocessing``: slice grid,
    normalization percentiles, slice selection; the library's defaults for a model without one).
    A model trained on standardized volumes (``model.standardization``, see `gan_mri.standardization`)
    gets this volume standardized the same way: the landmarks of its brain voxels (on the slices
    `prepare` would keep) mapped onto the model's reference for the source contrast.

    Raises:
        FileNotFoundError: if a path does not exist.
        ValueError: for a bad direction or a volume that cannot be read (naming the file).
    """
    direction = parse_direction(direction)
    if isinstance(path_or_image, (str, os.PathLike)):
        image = _load_volume(Path(path_or_image), max_voxels)
    elif isinstance(path_or_image, nib.spatialimages.SpatialImage):
        image = path_or_image
    else:
        raise ValueError(
            f"path_or_image: expected a volume path or a nibabel image, found {type(path_or_image).__name__}"
        )
    name = path_or_image if isinstance(path_or_image, (str, os.PathLike)) else "volume"
    if isinstance(brain_mask, (str, os.PathLike)):
        brain_mask = _load_volume(Path(brain_mask), max_voxels)
    stack, slices = model_slices(model, image, direction, brain_mask, name)
    translated = translate_slices(model, slices, direction, batch_size=batch_size)
    if uncertainty is None:
        return stack.to_volume(translated)
    method = default_method(model) if uncertainty == "default" else uncertainty
    spread = uncertainty_map(model, slices, direction, method, batch_size=batch_size)
    return stack.to_volume(translated), stack.to_volume(spread, intensities=False)


def model_slices(model, image, direction, brain_mask=None, name="volume"):
    """A volume's axial slices as ``model`` sees them: sliced as its training volumes were (``model.preprocessing``)
    and standardized as they were (``model.standardization``), the brain mask found as `prepare` finds it.

    Args:
        model: a gan-mri model (or anything with ``image_shape``, ``channels`` and optionally ``preprocessing``,
            ``standardization``).
        image: a nibabel image (3D).
        direction: a `gan_mri.Direction` (its source contrast is the volume's).
        brain_mask: the volume's brain mask (nibabel image or array), or None.
        name: what error messages call the volume.

    Returns:
        ``(stack, slices)``: the `gan_mri.data.volumes.SliceStack` (``stack.to_volume`` puts slices back) and the
        slices to translate, ``(N, H, W, C)`` in [-1, 1].

    Raises:
        ValueError: naming the volume, when its brain mask or contrast cannot be used.
    """
    height, width, channels = model_input_shape(model)
    settings = slice_settings(getattr(model, "preprocessing", None))
    try:
        mask, _ = find_brain_mask(image, direction.source_contrast, given=brain_mask)
        stack = volumes.volume_to_slices(image, (height, width), channels=channels, keep_all=True, brain_mask=mask,
                                         spacing=settings["spacing"], resize=settings["resize"],
                                         percentiles=settings["percentiles"])
    except ValueError as err:  # brain mask, contrast: name the file they are about
        raise ValueError(f"{name}: {err}") from err
    slices = stack.slices
    standardization = getattr(model, "standardization", None)
    if standardization is not None:
        # The slices prepare keeps (brain area >= min_brain_fraction of the largest): the landmarks of
        # the training volumes came from those.
        kept = volumes.select_slices(np.moveaxis(stack.brain_mask, 0, -1), settings["min_brain_fraction"])
        marks = landmarks(slices[kept, ..., 0], stack.brain_mask[kept])
        slices = standardization.apply(slices, direction.source, marks)
    return stack, slices


def _load_volume(path: Path, max_voxels: int) -> nib.spatialimages.SpatialImage:
    """`load_volume` with every failure turned into an error that names the file."""
    try:
        return volumes.load_volume(path, max_voxels=max_voxels)
    except (FileNotFoundError, ValueError) as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"cannot read volume {path}: {err}") from err
    except MemoryError:
        raise ValueError(f"cannot read volume {path}: not enough memory for its voxels") from None
    except Exception as err:  # nibabel raises ImageFileError, EOFError, zlib errors...
        raise ValueError(f"cannot read volume {path}: {err or type(err).__name__}") from err


def translate_path(
    model,
    input: str | os.PathLike,
    output: str | os.PathLike,
    direction: str,
    overwrite: bool = False,
    batch_size: int = 16,
    max_voxels: int = volumes.DEFAULT_MAX_VOXELS,
    brain_mask: str | os.PathLike | None = None,
    confidence: str | None = None,
) -> list[Path]:
    """Translates a NIfTI file, a PNG slice, or a folder of them, and writes the results.

    A single file is written to ``output`` (or, when ``output`` is an existing folder, into it
    under the input's name plus ``_<direction>``, e.g. ``sub-01_T1w_A2B.nii.gz``). A folder's
    NIfTI and PNG files (not recursive) are written into the folder ``output`` under those names.
    Nothing is written unless every input translated.

    Args:
        model: a gan-mri model.
        input: a ``.nii``/``.nii.gz``/``.png`` file or a folder holding such files.
        output: the output file (single input) or folder.
        direction: any spelling accepted by `parse_direction`.
        overwrite: replace outputs that already exist.
        batch_size: slices per call to the model.
        max_voxels: refuse volumes whose header claims more voxels (a hostile or broken header).
        brain_mask: a NIfTI brain mask on the grid of a single NIfTI ``input`` (e.g. a BIDS
            ``*_desc-brain_mask.nii.gz``); found for each volume when ``None`` (see `translate_volume`).
        confidence: also write, beside each translated volume, its uncertainty map
            (``<name>_uncertainty.nii.gz``; `translate_volume`'s ``uncertainty``: a method name or "default").

    Returns:
        The paths written, in input order (each translation followed by its uncertainty map).

    Raises:
        FileNotFoundError: if ``input`` does not exist.
        ValueError: for a bad direction, an unsupported or empty input, an output that exists
            (without ``overwrite``), or an input that cannot be read (naming the file).
    """
    direction = parse_direction(direction)
    input, output = Path(input), Path(output)
    if not input.exists():
        raise FileNotFoundError(f"input {input} does not exist")
    if brain_mask is not None and not (input.is_file() and _is_nifti(input)):
        raise ValueError(f"brain mask {brain_mask}: a brain mask goes with a single NIfTI input, found {input}")
    plan = _plan_outputs(input, output, direction)
    if confidence is not None:
        if any(not _is_nifti(source) for source, _ in plan):
            raise ValueError(f"confidence: uncertainty maps are made for NIfTI volumes, {input} holds PNG slices")
        plan = [pair for source, target in plan for pair in ((source, target), (source, _uncertainty_path(target)))]
    for source, target in plan:
        if target.resolve() == source.resolve():
            raise ValueError(f"output {target} is the input file itself; choose another output path")
        if target.is_dir():
            raise ValueError(f"output {target} is an existing folder, expected a file path")
        refuse_existing(target, "output", overwrite, flag="overwrite=True (--overwrite)")

    out_dir = plan[0][1].parent
    # The top-most folder this call creates: when there is one, the whole output is staged in a hidden
    # sibling of it and appears with one rename; otherwise files are staged in a hidden folder inside
    # out_dir and renamed one by one. Either way, a killed run leaves only hidden `.partial-` folders
    # (removed by the next run) and never a complete-looking output.
    created = next((p for p in reversed([out_dir, *out_dir.parents]) if not p.exists()), None)
    if created is not None:
        created.parent.mkdir(parents=True, exist_ok=True)
        staging_parent, staging_name = created.parent, created.name
    else:
        staging_parent, staging_name = out_dir, "gan-mri-translate"
    with partial_dir(staging_parent, staging_name) as root:
        staging = root if created is None else root / out_dir.relative_to(created)
        staging.mkdir(parents=True, exist_ok=True)
        staged = [staging / target.name for _, target in plan]
        nifti = [(s, t) for (s, _), t in zip(plan, staged) if _is_nifti(s)]
        slices = [(s, t) for (s, _), t in zip(plan, staged) if s.name.lower().endswith(PNG_SUFFIX)]
        step = 1 if confidence is None else 2  # with confidence: a translation, then its uncertainty map
        for index in range(0, len(nifti), step):
            source, target = nifti[index]
            logger.info("translating %s (%s)", source, direction)
            result = translate_volume(model, source, direction, batch_size=batch_size, max_voxels=max_voxels,
                                      brain_mask=brain_mask, uncertainty=confidence)
            if confidence is None:
                nib.save(result, target)
            else:
                nib.save(result[0], target)
                nib.save(result[1], nifti[index + 1][1])
        if slices:
            _translate_pngs(model, slices, direction, batch_size)
        # Every output is complete: move them into place (same filesystem, so each is a rename).
        if created is not None:
            os.replace(root, created)
        else:
            for temp, (_, target) in zip(staged, plan):
                os.replace(temp, target)
    return [target for _, target in plan]


def _uncertainty_path(target: Path) -> Path:
    """``sub-01_T1w_A2B.nii.gz`` -> ``sub-01_T1w_A2B_uncertainty.nii.gz``."""
    stem, suffix = _split_suffix(target)
    return target.with_name(f"{stem}_uncertainty{suffix}")


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _split_suffix(path: Path) -> tuple[str, str]:
    """``sub-01_T1w.nii.gz`` -> (``sub-01_T1w``, ``.nii.gz``)."""
    for suffix in NIFTI_SUFFIXES + (PNG_SUFFIX,):
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)], path.name[-len(suffix) :]
    return path.stem, path.suffix


def _plan_outputs(input: Path, output: Path, direction: str) -> list[tuple[Path, Path]]:
    """Pairs each input file with the path its translation goes to."""
    supported = f"a NIfTI file ({', '.join(NIFTI_SUFFIXES)}), a {PNG_SUFFIX} slice, or a folder of them"

    def named(source: Path, folder: Path) -> Path:
        stem, suffix = _split_suffix(source)
        return folder / f"{stem}_{direction}{suffix}"

    if input.is_dir():
        sources = sorted(
            p for p in input.iterdir()
            if p.is_file() and (_is_nifti(p) or p.name.lower().endswith(PNG_SUFFIX))
        )
        if not sources:
            raise ValueError(f"input: expected {supported}, found a folder {input} with none of them")
        if output.is_file():
            raise ValueError(
                f"output {output} is an existing file, expected a folder for the folder input {input}"
            )
        return [(source, named(source, output)) for source in sources]
    if not (_is_nifti(input) or input.name.lower().endswith(PNG_SUFFIX)):
        raise ValueError(f"input: expected {supported}, found {input}")
    if output.is_dir():
        return [(input, named(input, output))]
    if _split_suffix(output)[1].lower() != _split_suffix(input)[1].lower() and not (
        _is_nifti(input) and _is_nifti(output)
    ):
        raise ValueError(
            f"output {output}: expected a {_split_suffix(input)[1]} file path (like the input "
            f"{input.name}) or an existing folder"
        )
    return [(input, output)]


def _translate_pngs(model, pairs: list[tuple[Path, Path]], direction: str, batch_size: int) -> None:
    """Translates PNG slices together: fit each into the model's shape, translate, fit back.

    Slices of another size are scaled (aspect kept) and padded like volume slices
    (`gan_mri.data.resize`, method "fit"), and mapped back onto their own size.
    """
    height, width, channels = model_input_shape(model)
    images = [png.read_png(source) for source, _ in pairs]
    plans = [resize.plan_plane_fit(image.shape, (height, width), "fit") for image in images]
    batch = np.stack(
        [resize.fit_plane(image, plan, order=1, fill=-1.0) for image, plan in zip(images, plans)]
    )
    # Gray slices feed RGB presets by replication; an RGB output is written as its channel mean.
    batch = np.repeat(batch[..., None], channels, axis=-1)
    translated = translate_slices(model, batch, direction, batch_size=batch_size).mean(axis=-1)
    for result, plan, (_, target) in zip(translated, plans, pairs):
        _write_png(target, resize.unfit_plane(result, plan, order=1, fill=-1.0))


def _write_png(path: Path, image: np.ndarray) -> None:
    """Writes ``(h, w)`` in [-1, 1] as an 8-bit gray PNG at exactly ``path``."""
    # write_png_slices names files "<stem>.png"; write under a unique name, then rename.
    written = png.write_png_slices(image[None], path.parent, names=[f".{path.name}.part"])[0]
    os.replace(written, path)
