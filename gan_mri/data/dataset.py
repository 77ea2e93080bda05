"""``prepare``: turn a source folder (BIDS, HCP, IXI, BraTS, globs, PNG folders) into a prepared dataset.

A prepared dataset is a folder holding ``manifest.json`` and ``.npy`` arrays (the storage choice and
the atomic write are explained in :mod:`gan_mri.data.manifest`; the reading side and the tf.data
pipelines are in :mod:`gan_mri.data.prepared`, re-exported here as :class:`PreparedDataset`).

- Split by subject (:func:`gan_mri.data.layouts.split_subjects`), seeded: no subject in both sets.
- Training sets are unpaired: ``train_a`` holds T1w slices, ``train_b`` T2w slices, sampled
  independently by the pipeline. ``train_pairing="disjoint"`` further gives each training subject
  only one contrast (half A, half B) so that not even the same anatomy appears in both domains.
- Every training slice has its brain mask (``train_a_mask``, ``train_b_mask``), so statistics of the
  training brains (e.g. the intensity-remap baseline of :mod:`gan_mri.baseline`) need no test data.
- Every volume's record holds its intensity landmarks (percentiles of its brain voxels, from its own
  image and mask), and the manifest's ``standardization`` the training volumes' mean landmarks per
  contrast (:mod:`gan_mri.standardization`). The arrays stay as normalized; the pipelines
  apply the standardization when asked. PNG folders (single slices, no volumes) have none.
- Brain masks (:func:`gan_mri.data.brain_mask.brain_mask`): the layout's mask file when there is one
  (BIDS ``*_desc-brain_mask``), else the imaged object of a brain-extracted volume, else, for a whole
  head, the registered template brain. Normalization percentiles, landmarks and slice selection all
  come from the brain, so a whole-head scan and its brain-extracted copy give the same brain
  intensities. Each volume record says where its mask came from (``brain_mask``).
- The test set is paired by subject and slice: the same axial slices of a T1w/T2w pair, a brain mask
  (the layout's, or the union of the two found masks) and, when the layout has them, tissue labels
  and lesion labels (BIDS ``*_label-lesion*``, or ``lesion_glob`` with any volume layout).
  ``pair`` says how the two scans are brought onto one grid: ``"grid"`` requires them co-registered on
  the same grid; ``"world"`` resamples the T2w onto the T1w's grid through the two affines; ``"register"``
  first registers the T2w to the T1w (rigid, mutual information, :mod:`gan_mri.data.registration`), as
  scans acquired apart need (IXI's, whose layout uses it by default). Every test pair's record holds its
  alignment: normalized mutual information before and after, and a shift probe
  (:func:`gan_mri.data.registration.misalignment`); a pair the probe finds misaligned is refused after
  registration and warned about otherwise, naming the subject.
- Slices come from the volumes' own voxels, or, where those are oblique or not square in the axial plane,
  or where ``spacing`` (mm per pixel) is given, from a world-aligned grid in millimetres
  (:func:`gan_mri.data.volumes.slice_grid`); each record keeps the grid.
- Every problem found in every file is collected; ``prepare`` then raises one ``ValueError`` listing
  them all and leaves nothing behind.
- Same inputs and seed -> byte-identical folder (no timestamps, no absolute paths, sorted JSON).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from .. import CONTRAST_OF_DOMAIN
from ..fileutil import refuse_existing
from ..standardization import IntensityStandardization, landmarks
from .brain_mask import brain_mask, intensity_mask
from .layouts import LAYOUT_REGISTRY, PNG_FOLDERS, VolumeSet, detect_layout, discover, split_subjects
from .manifest import MANIFEST_NAME, SCHEMA_VERSION, ArrayWriter, atomic_output_dir, dumps_manifest, sha256_file
from .png import read_png_folder
from .registration import misalignment, register, resample_onto
from .prepared import PreparedDataset
from .resize import RESIZE_METHODS, validate_image_shape
from .volumes import (
    DEFAULT_MAX_VOXELS,
    DEFAULT_MIN_BRAIN_FRACTION,
    DEFAULT_PERCENTILES,
    label_slices,
    load_volume,
    select_slices,
    slice_grid,
    to_slice_grid,
    volume_to_slices,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_IMAGE_SHAPE", "PreparedDataset", "prepare"]

DEFAULT_IMAGE_SHAPE = (128, 128)
TRAIN_PAIRINGS = ("shuffled", "disjoint")
PAIRINGS = ("auto", "grid", "world", "register")
"""How a test subject's T2w meets its T1w (see the module docstring); "auto": "register" for the IXI layout,
whose scans were acquired apart, "grid" for the others."""
LABEL_NAMES = {"0": "background", "1": "CSF", "2": "GM", "3": "WM"}


class _Collector:
    """Gathers problems and the arrays/records of a dataset being written."""

    def __init__(self, source: Path, folder: Path, settings: dict, max_voxels: int = DEFAULT_MAX_VOXELS):
        self.source = source
        self.max_voxels = max_voxels
        self.settings = settings
        self.problems: list[str] = []
        self.records: list[dict] = []
        self.test_subjects: list[str] = []
        self.test_slices: list[int] = []
        self.writers = {name: ArrayWriter(folder, name, dtype) for name, dtype in (
            ("train_a", np.float32), ("train_b", np.float32), ("train_a_mask", np.bool_),
            ("train_b_mask", np.bool_), ("test_a", np.float32), ("test_b", np.float32),
            ("test_mask", np.bool_), ("test_labels", np.uint8), ("test_lesions", np.uint8))}
        self.lesion_subjects: list[str] = []
        self.test_lesions: list[np.ndarray] = []  # per test pair, written only if some pair has lesions

    def relative(self, path: Path) -> str:
        try:
            return Path(path).resolve().relative_to(self.source.resolve()).as_posix()
        except ValueError:
            return Path(path).resolve().as_posix()

    def source_record(self, path: Path) -> dict:
        return {"source": self.relative(path), "sha256": sha256_file(path)}

    def load(self, path: Path):
        try:
            return load_volume(path, max_voxels=self.max_voxels)
        except (FileNotFoundError, ValueError) as error:
            self.problems.append(str(error))
            return None

    def slices(self, path: Path, image, **kwargs):
        s = self.settings
        try:
            stack = volume_to_slices(image, s["image_shape"], 1, min_brain_fraction=s["min_brain_fraction"],
                                     percentiles=s["percentiles"], resize=s["resize"], spacing=s["spacing"],
                                     **kwargs)
        except ValueError as error:
            self.problems.append(f"{path}: {error}")
            return None
        if len(stack.slice_indices) == 0:
            self.problems.append(f"{path}: expected axial slices with brain, found none")
            return None
        return stack

    def mask(self, volume_set: VolumeSet, contrast: str, path: Path, image):
        """The brain mask of one volume and its source, or ``(None, None)`` after recording a problem."""
        given = None
        if volume_set.brain_mask is not None:
            given = self.load(volume_set.brain_mask)
            if given is None:
                return None, None
            if not np.allclose(given.affine, image.affine, atol=1e-3):
                self.problems.append(f"{volume_set.brain_mask}: expected the affine of {path} (a brain mask on the "
                                     f"image's grid), found another one")
                return None, None
        try:
            return brain_mask(image, CONTRAST_OF_DOMAIN[contrast], given=given)
        except ValueError as error:
            self.problems.append(f"{volume_set.brain_mask or path}: {error}")
            return None, None

    def record(self, volume_set: VolumeSet, contrast: str, split: str, path: Path, stack, rows,
               mask_source: str, **extra) -> None:
        self.records.append({
            "subject": volume_set.subject, "session": volume_set.session, "name": volume_set.name,
            "contrast": contrast, "split": split, **self.source_record(path),
            "shape": list(stack.shape), "orientation": "".join(stack.orientation),
            "normalization": stack.normalization, "plane_fit": stack.plane_fit.to_dict(),
            "slice_indices": [int(i) for i in stack.slice_indices],
            "file": f"{split}_{contrast.lower()}.npy", "rows": list(rows), "brain_mask": mask_source,
            "landmarks": [float(v) for v in landmarks(stack.slices, stack.brain_mask)],
            "grid": None if stack.grid is None else stack.grid.to_dict(), **extra,
        })


def _add_train_volume(collector: _Collector, volume_set: VolumeSet, contrast: str, path: Path) -> None:
    image = collector.load(path)
    mask, source = (None, None) if image is None else collector.mask(volume_set, contrast, path, image)
    stack = None if mask is None else collector.slices(path, image, brain_mask=mask)
    if stack is None or collector.problems:
        return  # keep checking the other files, but write nothing once something is wrong
    rows = collector.writers[f"train_{contrast.lower()}"].append(stack.slices[..., 0])
    collector.writers[f"train_{contrast.lower()}_mask"].append(stack.brain_mask)
    collector.record(volume_set, contrast, "train", path, stack, rows, source)


def _check_same_grid(collector: _Collector, name: str, image_a, path_a, other, path_other, what: str) -> bool:
    remedy = "; a test pair must be co-registered on the same grid"
    if what == "T2w":
        remedy += (" (prepare with --pair world to resample the T2w through the affines, or --pair register to "
                   "register it first)")
    if tuple(image_a.shape) != tuple(other.shape):
        collector.problems.append(
            f"{name}: T1w {path_a} has shape {tuple(image_a.shape)} but {what} {path_other} has shape "
            f"{tuple(other.shape)}{remedy}")
        return False
    if not np.allclose(image_a.affine, other.affine, atol=1e-3):
        collector.problems.append(f"{name}: T1w {path_a} and {what} {path_other} have different affines{remedy}")
        return False
    return True


def _pair(collector: _Collector, volume_set: VolumeSet, image_a, image_b):
    """The T2w on the T1w's grid (as the pairing setting says) and the pair's alignment record, or
    ``(None, None)`` after recording a problem."""
    name, pairing = volume_set.name, collector.settings["pair"]
    if pairing == "grid":
        if not _check_same_grid(collector, name, image_a, volume_set.a, image_b, volume_set.b, "T2w"):
            return None, None
        paired = image_b
    else:
        transform = register(image_a, image_b) if pairing == "register" else None
        paired = nib.Nifti1Image(resample_onto(image_b, image_a, transform), image_a.affine)
    head = intensity_mask(np.asarray(image_a.dataobj))
    after = misalignment(image_a, np.asarray(paired.dataobj), head)
    record = {"pair": pairing, "nmi_after": after["nmi"], "shift_probe": after}
    if pairing == "register":
        record["nmi_before"] = misalignment(image_a, resample_onto(image_b, image_a), head)["nmi"]
        record["transform"] = np.round(transform, 6).tolist()
    else:
        record["nmi_before"] = after["nmi"]
    if not after["aligned"]:
        shift = ", ".join(f"{v:+.0f}" for v in after["best_shift_mm"])
        finding = (f"{name}: T2w {volume_set.b} and T1w {volume_set.a} are misaligned: moving the T2w by "
                   f"({shift}) mm raises their normalized mutual information by {after['nmi_gain']:.4f}")
        if pairing == "register":
            collector.problems.append(f"{finding} even after registration; check the two scans, or leave the "
                                      "subject out")
            return None, None
        logger.warning("%s; prepare with --pair register to register them", finding)
    return paired, record


def _add_test_pair(collector: _Collector, volume_set: VolumeSet) -> None:
    name = volume_set.name
    image_a, image_b = collector.load(volume_set.a), collector.load(volume_set.b)
    labels_image = collector.load(volume_set.labels) if volume_set.labels else None
    if image_a is None or image_b is None:
        return
    image_b, alignment = _pair(collector, volume_set, image_a, image_b)
    if image_b is None:
        return
    labels = None
    if labels_image is not None and _check_same_grid(collector, name, image_a, volume_set.a, labels_image,
                                                      volume_set.labels, "labels"):
        labels = np.rint(np.asarray(labels_image.dataobj)).astype(np.int64)
        unexpected = sorted(set(np.unique(labels).tolist()) - {0, 1, 2, 3})
        if unexpected:
            collector.problems.append(
                f"{volume_set.labels}: expected tissue labels 0 (background), 1 (CSF), 2 (GM), 3 (WM), "
                f"found values {unexpected[:10]}")
            labels = None
    mask_a, source_a = collector.mask(volume_set, "A", volume_set.a, image_a)
    mask_b, source_b = collector.mask(volume_set, "B", volume_set.b, image_b)
    if mask_a is None or mask_b is None:
        return
    union = mask_a | mask_b
    grid = slice_grid(image_a, collector.settings["image_shape"], collector.settings["spacing"], union)
    indices = select_slices(to_slice_grid(image_a, union, grid, order=0) > 0, collector.settings["min_brain_fraction"])
    stack_a = collector.slices(volume_set.a, image_a, brain_mask=mask_a, slice_indices=indices, grid=grid)
    stack_b = collector.slices(volume_set.b, image_b, brain_mask=mask_b, slice_indices=indices, grid=grid)
    if stack_a is None or stack_b is None or collector.problems:
        return
    writers = collector.writers
    rows = writers["test_a"].append(stack_a.slices[..., 0])
    writers["test_b"].append(stack_b.slices[..., 0])
    writers["test_mask"].append(label_slices(union.astype(np.uint8), stack_a).astype(bool))
    if labels is not None:
        writers["test_labels"].append(label_slices(labels.astype(np.uint8), stack_a))
        collector.records.append({"subject": volume_set.subject, "session": volume_set.session, "name": name,
                                  "contrast": "labels", "split": "test",
                                  **collector.source_record(volume_set.labels), "file": "test_labels.npy",
                                  "rows": list(rows)})
    _add_test_lesions(collector, volume_set, image_a, stack_a, rows)
    collector.record(volume_set, "A", "test", volume_set.a, stack_a, rows, source_a)
    collector.record(volume_set, "B", "test", volume_set.b, stack_b, rows, source_b, alignment=alignment)
    collector.test_subjects += [name] * len(indices)
    collector.test_slices += [int(i) for i in indices]


def _add_test_lesions(collector: _Collector, volume_set: VolumeSet, image_a, stack_a, rows) -> None:
    """The test pair's lesion labels on its slices (zeros for a subject without a lesion file, so that the
    rows stay aligned with the other test arrays)."""
    lesions = np.zeros((len(stack_a.slice_indices), *collector.settings["image_shape"]), dtype=np.uint8)
    image = collector.load(volume_set.lesions) if volume_set.lesions else None
    if image is not None and _check_same_grid(collector, volume_set.name, image_a, volume_set.a, image,
                                              volume_set.lesions, "lesion labels"):
        values = np.rint(np.asarray(image.dataobj))
        if values.min() < 0 or values.max() > 255:
            collector.problems.append(f"{volume_set.lesions}: expected lesion labels 0-255 (0 outside lesions), "
                                      f"found values {values.min():g}..{values.max():g}")
            return
        lesions = label_slices(values.astype(np.uint8), stack_a)
        collector.lesion_subjects.append(volume_set.name)
        collector.records.append({"subject": volume_set.subject, "session": volume_set.session,
                                  "name": volume_set.name, "contrast": "lesions", "split": "test",
                                  **collector.source_record(volume_set.lesions), "file": "test_lesions.npy",
                                  "rows": list(rows)})
    collector.test_lesions.append(lesions)


def _prepare_volumes(collector: _Collector, layout: str, a_glob, b_glob, lesion_glob, test_fraction: float,
                     seed: int, train_pairing: str) -> tuple[str, dict]:
    layout, sets = discover(collector.source, layout, a_glob, b_glob, lesion_glob)
    if collector.settings["pair"] == "auto":
        collector.settings["pair"] = LAYOUT_REGISTRY[layout].pairing
    pairable = [s.subject for s in sets if s.a is not None and s.b is not None]
    train_ids, test_ids = split_subjects([s.subject for s in sets], test_fraction, seed, pairable)
    domains = {subject: ("A", "B") for subject in train_ids}
    if train_pairing == "disjoint":
        order = np.random.default_rng([int(seed), 1]).permutation(len(train_ids))
        for rank, index in enumerate(order):
            domains[train_ids[index]] = ("A",) if rank % 2 == 0 else ("B",)
    test_set = set(test_ids)
    for volume_set in sets:
        if volume_set.subject in test_set:
            _add_test_pair(collector, volume_set)
            continue
        for contrast, path in (("A", volume_set.a), ("B", volume_set.b)):
            if path is not None and contrast in domains[volume_set.subject]:
                _add_train_volume(collector, volume_set, contrast, path)
    return layout, {"train": train_ids, "test": test_ids}


def _prepare_png(collector: _Collector) -> tuple[str, dict]:
    source, settings = collector.source, collector.settings
    arrays, names = {}, {}
    for folder_name in PNG_FOLDERS:
        folder = source / folder_name
        if not folder.is_dir():
            if folder_name.startswith("train"):
                collector.problems.append(f"{folder}: folder not found (the png layout needs trainA/ and trainB/)")
            continue
        try:
            arrays[folder_name], names[folder_name] = read_png_folder(folder, settings["image_shape"],
                                                                      settings["resize"])
        except (FileNotFoundError, ValueError) as error:
            collector.problems.append(str(error))
    if ("testA" in arrays) != ("testB" in arrays) and not collector.problems:
        collector.problems.append(f"{source}: expected both testA/ and testB/ or neither, found only one")
    pairs = []
    if "testA" in arrays and "testB" in arrays:
        names_a, names_b = names["testA"], names["testB"]
        if set(names_a) == set(names_b):
            pairs = [(names_a.index(n), names_b.index(n)) for n in sorted(names_a)]
        elif len(names_a) == len(names_b):
            logger.info("%s: testA/testB names differ; pairing them in sorted order", source)
            pairs = list(zip(range(len(names_a)), range(len(names_b))))
        else:
            collector.problems.append(
                f"{source}: testA/ and testB/ must pair up by file name or count, found {len(names_a)} and "
                f"{len(names_b)} images with different names")
    if collector.problems:
        return "png", {}
    for folder_name, key in (("trainA", "train_a"), ("trainB", "train_b")):
        images = arrays[folder_name][..., 0]
        collector.writers[key].append(images)
        collector.writers[f"{key}_mask"].append(np.stack([intensity_mask(image) for image in images]))
    for index_a, index_b in pairs:
        a, b = arrays["testA"][index_a, ..., 0], arrays["testB"][index_b, ..., 0]
        collector.writers["test_a"].append(a[None])
        collector.writers["test_b"].append(b[None])
        collector.writers["test_mask"].append((intensity_mask(a) | intensity_mask(b))[None])
        collector.test_subjects.append(names["testA"][index_a])
        collector.test_slices.append(0)
    for folder_name in sorted(arrays):
        for stem in names[folder_name]:
            path = source / folder_name / f"{stem}.png"
            collector.records.append({"folder": folder_name, **collector.source_record(path)})
    subjects = {"train": sorted(set(names["trainA"]) | set(names["trainB"])),
                "test": sorted(collector.test_subjects)}
    return "png", subjects


def _training_standardization(records: list[dict]) -> IntensityStandardization:
    """The reference landmarks of each contrast: the mean over its training volumes."""
    return IntensityStandardization.fit({
        domain: [r["landmarks"] for r in records if r["split"] == "train" and r["contrast"] == domain]
        for domain in ("A", "B")})


def prepare(
    source,
    out_dir,
    image_shape=DEFAULT_IMAGE_SHAPE,
    layout: str = "auto",
    test_fraction: float = 0.2,
    seed: int = 0,
    channels: int = 1,
    a_glob: str | None = None,
    b_glob: str | None = None,
    min_brain_fraction: float = DEFAULT_MIN_BRAIN_FRACTION,
    percentiles=DEFAULT_PERCENTILES,
    resize: str = "fit",
    train_pairing: str = "shuffled",
    overwrite: bool = False,
    max_voxels: int = DEFAULT_MAX_VOXELS,
    pair: str = "auto",
    spacing: float | None = None,
    lesion_glob: str | None = None,
) -> PreparedDataset:
    """Write a prepared dataset folder from a source folder.

    Args:
        source: root of the data (BIDS, HCP, IXI, BraTS, explicit globs, or GAN-MRI PNG folders).
        out_dir: folder to create (atomically).
        image_shape: ``(H, W)`` of the stored slices (demo 64x64 or 96x96; lineage 256x256).
        layout: ``"auto"`` or a name of :data:`gan_mri.data.layouts.LAYOUTS`.
        test_fraction: fraction of subjects in the paired test set (ignored for PNG folders); 1 makes a
            test-only dataset, to evaluate a model on (no training slices, no standardization reference).
        seed: seed of the subject split.
        channels: default channel count of the pipelines (1, or 3 for RGB presets); slices are stored
            with one channel and replicated when read.
        a_glob, b_glob: explicit globs for T1w / T2w volumes.
        min_brain_fraction: keep axial slices whose brain area is at least this fraction of the largest.
        percentiles: ``(p_low, p_high)`` of the intensity normalization.
        resize: ``"fit"`` or ``"pad"``.
        train_pairing: ``"shuffled"`` (both contrasts of every training subject) or ``"disjoint"``.
        overwrite: replace an existing ``out_dir``.
        max_voxels: refuse volumes whose header claims more voxels (a hostile or broken header).
        pair: how a test subject's T2w meets its T1w: ``"grid"``, ``"world"``, ``"register"`` or ``"auto"``
            (see :data:`PAIRINGS`).
        spacing: slice pixels of this many millimetres, centred on the brain; default: the volumes' own
            voxel size (see :func:`gan_mri.data.volumes.slice_grid`).
        lesion_glob: glob of lesion label volumes (relative to ``source``, or absolute; on the T1w's grid, 0
            outside lesions), for any volume layout (for BIDS it replaces the ``*_label-lesion*`` files).
            Each file goes to the subject whose id its name carries
            (:func:`gan_mri.data.layouts.lesion_subject`: ``<subject>_lesion.nii.gz``,
            ``<subject>_T1w_mask.nii.gz``, ``<subject>_seg.nii.gz``...); a test subject without one has no
            lesions (zeros in ``test_lesions.npy``).

    Returns:
        The :class:`PreparedDataset` opened from ``out_dir``.

    Raises:
        FileNotFoundError: if ``source`` does not exist.
        ValueError: for bad arguments, an existing ``out_dir`` (without ``overwrite``), a layout that
            matches nothing, a ``lesion_glob`` with the png layout, that matches nothing or whose files
            match no subject or two to one subject, or, listing every one of them, problems in the input
            files.
    """
    target = validate_image_shape(image_shape)
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, found {channels!r}")
    if resize not in RESIZE_METHODS:
        raise ValueError(f"resize: expected one of {RESIZE_METHODS}, found {resize!r}")
    if train_pairing not in TRAIN_PAIRINGS:
        raise ValueError(f"train_pairing: expected one of {TRAIN_PAIRINGS}, found {train_pairing!r}")
    if pair not in PAIRINGS:
        raise ValueError(f"pair: expected one of {PAIRINGS}, found {pair!r}")
    if spacing is not None and not (isinstance(spacing, (int, float)) and 0 < spacing < float("inf")):
        raise ValueError(f"spacing: expected a positive number of millimetres, found {spacing!r}")
    if not 0.0 <= float(test_fraction) <= 1.0:
        raise ValueError(f"test_fraction: expected a value in [0, 1], found {test_fraction!r}")
    source, out_dir = Path(source), Path(out_dir)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: source folder not found")
    refuse_existing(out_dir, "output folder", overwrite, flag="overwrite=True (--overwrite)")
    if layout == "auto" and not (a_glob or b_glob):
        layout = detect_layout(source)
    if layout == "png" and lesion_glob:
        raise ValueError(f"lesion_glob: the png layout holds single slices, not volumes; found {lesion_glob!r} "
                         "(lesion labels need a volume layout)")
    test_only = float(test_fraction) == 1.0 and layout != "png"
    settings = {"image_shape": target, "min_brain_fraction": float(min_brain_fraction),
                "percentiles": [float(p) for p in percentiles], "resize": resize, "train_pairing": train_pairing,
                "pair": pair, "spacing": None if spacing is None else float(spacing)}
    with atomic_output_dir(out_dir, overwrite) as folder:
        collector = _Collector(source, folder, settings, max_voxels)
        if layout == "png":
            layout, split = _prepare_png(collector)
        else:
            layout, split = _prepare_volumes(collector, layout, a_glob, b_glob, lesion_glob, float(test_fraction),
                                             seed, train_pairing)
        for key in () if test_only else ("train_a", "train_b"):
            if not collector.problems and collector.writers[key].rows == 0:
                collector.problems.append(f"{source}: expected training slices for {key}, found none")
        if collector.problems:
            listing = "\n".join(f"  - {problem}" for problem in collector.problems)
            raise ValueError(f"prepare: found {len(collector.problems)} problem(s) in {source}:\n{listing}")
        if collector.lesion_subjects:
            for lesions in collector.test_lesions:
                collector.writers["test_lesions"].append(lesions)
        files = {}
        for name, writer in collector.writers.items():
            if name in ("test_labels", "test_lesions") and writer.rows == 0:
                continue
            files[f"{name}.npy"] = writer.finalize(target)
        manifest = {
            "schema_version": SCHEMA_VERSION, "layout": layout, "image_shape": list(target),
            "channels": int(channels), "stored_channels": 1, "seed": int(seed),
            "test_fraction": float(test_fraction), "settings": {k: v for k, v in settings.items() if k != "image_shape"},
            "split": split, "volumes": collector.records, "files": files,
            "test_index": {"subject": collector.test_subjects, "slice": collector.test_slices},
            "counts": {name.removesuffix(".npy"): entry["shape"][0] for name, entry in files.items()},
            "has_labels": "test_labels.npy" in files,
            "lesion_subjects": sorted(collector.lesion_subjects),
        }
        if manifest["has_labels"]:
            manifest["label_names"] = LABEL_NAMES
        if layout != "png" and not test_only:  # PNG folders hold single slices: no volume to take landmarks from
            manifest["standardization"] = _training_standardization(collector.records).to_dict()
        (folder / MANIFEST_NAME).write_text(dumps_manifest(manifest), encoding="utf-8")
        logger.info("prepared %s: %s", out_dir, manifest["counts"])
    return PreparedDataset.open(out_dir, verify_checksums=False)  # checksums were just computed
