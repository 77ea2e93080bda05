"""Reading a prepared dataset: :class:`PreparedDataset` and its tf.data pipelines.

Arrays are opened as read-only memory maps; pipelines gather the rows of each batch from them
(``tf.numpy_function``), so only the pages a batch touches are read: large sets stream.
Training shuffles slice indices (a true global shuffle, cheap because only indices are shuffled).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from ..standardization import IntensityStandardization
from .manifest import MANIFEST_NAME, manifest_problems, sha256_file
from .preprocessing import preprocessing_from_manifest

logger = logging.getLogger(__name__)


class PreparedDataset:
    """A folder written by :func:`gan_mri.data.prepare`.

    Attributes:
        path: the folder.
        manifest: the parsed ``manifest.json``.
        image_shape: ``(H, W)``.
        channels: default channel count of the pipelines.
    """

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest
        self.image_shape = tuple(int(v) for v in manifest["image_shape"])
        self.channels = int(manifest["channels"])
        self._arrays: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, path, verify_checksums: bool = True) -> "PreparedDataset":
        """Open and check a prepared dataset folder before anything reads it.

        Always: the manifest against its schema (every problem listed at once) and each array file's
        header and size against the manifest (cheap: headers and file sizes only). With
        ``verify_checksums`` (the default): each file's SHA-256 against the manifest and float arrays
        free of NaN/Inf, which reads every byte once (about 1 s per GB; opt out for huge sets).

        Raises:
            FileNotFoundError: if the folder, its manifest or an array file is missing.
            ValueError: naming ``manifest.json`` and the field, or the array file and what is wrong:
                an invalid manifest, a missing, truncated or altered array file, a checksum mismatch,
                non-finite values.
        """
        path = Path(path)
        manifest_path = path / MANIFEST_NAME
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: prepared dataset folder not found")
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path}: manifest not found (not a complete prepared dataset)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{manifest_path}: not valid JSON: {error}") from None
        _raise_problems(manifest_path, manifest_problems(manifest), "manifest")
        dataset = cls(path, manifest)
        missing = [f"{path / name}: array file not found (incomplete prepared dataset)"
                   for name in sorted(manifest["files"]) if not (path / name).is_file()]
        _raise_problems(path, missing, "prepared dataset", FileNotFoundError)
        problems = [problem for name, entry in sorted(manifest["files"].items())
                    for problem in _array_file_problems(path / name, entry)]
        _raise_problems(path, problems, "prepared dataset")
        if verify_checksums:
            dataset.verify()
        return dataset

    def verify(self) -> None:
        """The full integrity check: every array file's SHA-256 against the manifest and float arrays
        free of NaN/Inf (``gan-mri verify``). Reads every byte once.

        Raises:
            ValueError: naming each array file whose checksum differs or that holds NaN/Inf values.
        """
        problems = []
        for name, entry in sorted(self.manifest["files"].items()):
            file = self.path / name
            digest = sha256_file(file)
            if digest != entry["sha256"]:
                problems.append(f"{file}: sha256 {digest[:12]}... differs from the manifest's "
                                f"{entry['sha256'][:12]}... (file altered or corrupt)")
                continue
            bad = _count_non_finite(self.array(name.removesuffix(".npy")))
            if bad:
                problems.append(f"{file}: expected finite values, found {bad} NaN/Inf")
        _raise_problems(self.path, problems, "prepared dataset")

    def array(self, name: str) -> np.ndarray:
        """Read-only memory map of ``train_a``, ``train_b``, ``train_a_mask``, ``train_b_mask``, ``test_a``,
        ``test_b``, ``test_mask``, ``test_labels``, ``test_lesions``.

        Raises:
            FileNotFoundError: if the array file is missing.
            ValueError: if ``name`` is not listed in the manifest.
        """
        if f"{name}.npy" not in self.manifest["files"]:
            raise ValueError(f"array: expected one of {sorted(self.manifest['files'])}, found {name!r}")
        if name not in self._arrays:
            file = self.path / f"{name}.npy"
            if not file.is_file():
                raise FileNotFoundError(f"{file}: array file not found (incomplete prepared dataset)")
            self._arrays[name] = np.load(file, mmap_mode="r")
        return self._arrays[name]

    @property
    def standardization(self) -> IntensityStandardization | None:
        """The training volumes' reference landmarks per contrast, or None for a dataset prepared
        without them (PNG folders, or an older gan-mri)."""
        data = self.manifest.get("standardization")
        return None if data is None else IntensityStandardization.from_dict(data)

    @property
    def preprocessing(self) -> dict:
        """How its slices were made (:func:`gan_mri.data.preprocessing.preprocessing_from_manifest`): a
        model trained on it keeps this record and slices the volumes it translates the same way."""
        return preprocessing_from_manifest(self.manifest)

    def images(self, name: str, standardization: IntensityStandardization | None = None):
        """The slices of ``train_a``, ``train_b``, ``test_a`` or ``test_b``, as a model sees them.

        Without ``standardization``: :meth:`array` (the percentile-normalized slices). With it: a
        read-only view whose rows come out standardized, each volume's landmarks (from the manifest)
        mapped onto ``standardization``'s reference (:mod:`gan_mri.standardization`); it supports
        ``len``, ``shape`` and indexing by a slice or an integer array, reading only those rows.

        Raises:
            ValueError: for another array name, or a standardization asked of a dataset whose manifest
                has no volume landmarks.
        """
        if name not in ("train_a", "train_b", "test_a", "test_b"):
            raise ValueError(f"images: expected train_a, train_b, test_a or test_b, found {name!r}")
        array = self.array(name)
        if standardization is None:
            return array
        records = [r for r in self.manifest["volumes"] if r.get("file") == f"{name}.npy"]
        if len(array) and (not records or any("landmarks" not in r for r in records)):
            raise ValueError(f"{self.path}: prepared without intensity landmarks (PNG folders, or an older "
                             "gan-mri): prepare it again, or train with standardize=False (--no-standardize)")
        volume_of_row = np.full(len(array), -1, dtype=np.int64)
        marks = []
        for record in records:
            start, stop = record["rows"]
            volume_of_row[start:stop] = len(marks)
            marks.append(np.asarray(record["landmarks"], dtype=np.float64))
        orphans = np.flatnonzero(volume_of_row < 0)
        if orphans.size:
            raise ValueError(f"{self.path / MANIFEST_NAME}: volumes: rows {orphans[:5].tolist()} of {name}.npy "
                             "belong to no volume record")
        return _StandardizedRows(array, volume_of_row, marks, standardization, name[-1].upper())

    @property
    def has_labels(self) -> bool:
        """Whether the test set has tissue labels."""
        return bool(self.manifest.get("has_labels"))

    @property
    def lesion_subjects(self) -> list[str]:
        """Test subjects with lesion labels (``test_lesions``: 0 outside lesions, one value per lesion)."""
        return list(self.manifest.get("lesion_subjects", []))

    @property
    def counts(self) -> dict:
        """Number of slices per array, e.g. ``{"train_a": 120, "train_b": 120, "test_a": 40, ...}``."""
        return dict(self.manifest["counts"])

    def describe(self) -> str:
        """One line for people: image shape, slices per split, subjects, labels."""
        counts = self.counts
        subjects = {split: len(names) for split, names in self.manifest.get("split", {}).items()
                    if isinstance(names, list)}
        text = (f"{self.image_shape[0]}x{self.image_shape[1]} slices: train {counts['train_a']} T1w + "
                f"{counts['train_b']} T2w (unpaired), test {counts['test_a']} paired")
        if subjects:
            text += " (subjects: " + ", ".join(f"{n} {split}" for split, n in sorted(subjects.items())) + ")"
        return text + (", tissue labels" if self.has_labels else "")

    def _channels(self, channels) -> int:
        channels = self.channels if channels is None else channels
        if channels not in (1, 3):
            raise ValueError(f"channels: expected 1 or 3, found {channels!r}")
        return channels

    def steps_per_epoch(self, batch_size: int) -> int:
        """Training batches per epoch: ``max(len(train_a), len(train_b)) // batch_size``."""
        return max(self.counts["train_a"], self.counts["train_b"]) // int(batch_size)

    def train_dataset(self, batch_size: int, shuffle: bool = True, flip: bool = False, seed=None, channels=None,
                      standardization: IntensityStandardization | None = None):
        """Unpaired training batches ``(x_a, x_b)``, float32 ``(batch_size, H, W, C)`` in [-1, 1].

        One epoch has :meth:`steps_per_epoch` batches: the larger domain is seen once, the smaller
        one cycles (reshuffled each pass). Incomplete final batches are dropped, so shapes are static.

        Args:
            batch_size: slices per batch.
            shuffle: shuffle slice indices (independently per domain, reshuffled every epoch).
            flip: random left-right flips, independently per image.
            seed: seed of the shuffles and flips (``None``: not reproducible).
            channels: 1 or 3 (replicated gray); default: the manifest's.
            standardization: map each volume onto this reference as it is read (:meth:`images`).

        Returns:
            A ``tf.data.Dataset``.

        Raises:
            ValueError: for a bad batch size or channels, fewer slices than one batch, or a
                standardization the dataset has no landmarks for.
        """
        import tensorflow as tf

        channels = self._channels(channels)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, found {batch_size!r}")
        train_a, train_b = (self.images(name, standardization) for name in ("train_a", "train_b"))
        length = max(len(train_a), len(train_b))
        if length < batch_size:
            raise ValueError(f"batch_size: expected at most {length} (training slices), found {batch_size}")

        def indices(count: int, offset: int):
            dataset = tf.data.Dataset.range(count)
            if shuffle:
                op_seed = None if seed is None else int(seed) * 3 + offset
                dataset = dataset.shuffle(count, seed=op_seed, reshuffle_each_iteration=True)
            return dataset.repeat()

        flips = tf.data.Dataset.random(seed=None if seed is None else int(seed) * 3 + 2) if flip else \
            tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).repeat()
        dataset = tf.data.Dataset.zip((indices(len(train_a), 0), indices(len(train_b), 1), flips))
        dataset = dataset.take(length).batch(int(batch_size), drop_remainder=True)

        def gather(index_a, index_b, bits):
            x_a, x_b = np.array(train_a[index_a]), np.array(train_b[index_b])
            if flip:
                flip_a, flip_b = (bits & 1).astype(bool), (bits & 2).astype(bool)
                x_a[flip_a] = x_a[flip_a, :, ::-1]
                x_b[flip_b] = x_b[flip_b, :, ::-1]
            return x_a.astype(np.float32), x_b.astype(np.float32)

        shape = (int(batch_size), *self.image_shape)

        def load(index_a, index_b, bits):
            x_a, x_b = tf.numpy_function(gather, [index_a, index_b, bits], [tf.float32, tf.float32])
            return _with_channels(x_a, shape, channels), _with_channels(x_b, shape, channels)

        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)

    def test_dataset(self, batch_size: int, channels=None, standardization: IntensityStandardization | None = None):
        """Paired test batches as dicts, in manifest order (every slice once, last batch may be short).

        Keys: ``"a"``, ``"b"`` float32 ``(B, H, W, C)``; ``"brain_mask"`` bool ``(B, H, W)``;
        ``"subject"`` string ``(B,)``; ``"slice"`` int32 ``(B,)`` (canonical axial index); and
        ``"labels"`` int32 ``(B, H, W)`` (0 background, 1 CSF, 2 GM, 3 WM) when the layout has tissue labels.
        With a ``standardization`` also ``"a_input"``, ``"b_input"``: the same slices standardized
        (:meth:`images`), which a model translates, while ``"a"`` and ``"b"`` stay the ground truth.

        Raises:
            ValueError: for a bad batch size or channels, an empty test set, or a standardization the
                dataset has no landmarks for.
        """
        import tensorflow as tf

        channels = self._channels(channels)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, found {batch_size!r}")
        names = ["test_a", "test_b", "test_mask"] + (["test_labels"] if self.has_labels else [])
        arrays = [self.array(name) for name in names]
        if standardization is not None:
            arrays += [self.images(name, standardization) for name in ("test_a", "test_b")]
        if len(arrays[0]) == 0:
            raise ValueError(f"{self.path}: the test set is empty (prepared with test_fraction=0?)")
        index = self.manifest["test_index"]
        rows = tf.data.Dataset.range(len(arrays[0]))
        ids = tf.data.Dataset.from_tensor_slices(
            (tf.constant(index["subject"], tf.string), tf.constant(index["slice"], tf.int32)))
        dataset = tf.data.Dataset.zip((rows, ids)).batch(int(batch_size))
        dtypes = [tf.float32, tf.float32, tf.bool] + ([tf.int32] if self.has_labels else [])
        dtypes += [tf.float32, tf.float32] if standardization is not None else []

        def gather(row_index):
            taken = [np.asarray(array[row_index]) for array in arrays]
            return [value.astype(dtype.as_numpy_dtype) for value, dtype in zip(taken, dtypes)]

        def load(row_index, subject_slice):
            values = tf.numpy_function(gather, [row_index], dtypes)
            shape = (None, *self.image_shape)
            batch = {"a": _with_channels(values[0], shape, channels), "b": _with_channels(values[1], shape, channels),
                     "brain_mask": tf.ensure_shape(values[2], shape),
                     "subject": subject_slice[0], "slice": subject_slice[1]}
            if self.has_labels:
                batch["labels"] = tf.ensure_shape(values[3], shape)
            if standardization is not None:
                batch["a_input"], batch["b_input"] = (_with_channels(v, shape, channels) for v in values[-2:])
            return batch

        return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


class _StandardizedRows:
    """Read-only rows of an array of slices, each volume's rows standardized as they are read."""

    def __init__(self, array, volume_of_row, landmarks, standardization: IntensityStandardization, domain: str):
        self.array, self.volume_of_row, self.landmarks = array, volume_of_row, landmarks
        self.standardization, self.domain = standardization, domain
        self.shape, self.dtype = array.shape, np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, rows) -> np.ndarray:
        images = np.asarray(self.array[rows], dtype=np.float32)
        volumes = np.atleast_1d(self.volume_of_row[rows])
        single = images.ndim == len(self.shape) - 1
        batch = images[None] if single else images
        out = np.empty_like(batch)
        for volume in np.unique(volumes):
            chosen = volumes == volume
            out[chosen] = self.standardization.apply(batch[chosen], self.domain, self.landmarks[volume])
        return out[0] if single else out


def _raise_problems(where: Path, problems: list[str], what: str, error=ValueError) -> None:
    """Raises ``error`` with the one problem, or with every problem listed under a heading."""
    if len(problems) == 1:
        problem = problems[0]
        raise error(problem if problem.startswith(str(where)) else f"{where}: {problem}")
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise error(f"{where}: found {len(problems)} problems in the {what}:\n{listing}")


def _array_file_problems(file: Path, entry: dict) -> list[str]:
    """What is wrong with one ``.npy`` file against its manifest entry, reading only its header."""
    try:
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                return [f"{file}: expected .npy format version 1.0 or 2.0, found {version}"]
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
    except (ValueError, OSError, SyntaxError) as error:
        return [f"{file}: not a readable .npy file ({error})"]
    problems = []
    if list(shape) != entry["shape"] or dtype.str != entry["dtype"] or fortran:
        problems.append(f"{file}: expected shape {entry['shape']} dtype {entry['dtype']} (manifest), "
                        f"found {list(shape)} {dtype.str}{' (Fortran order)' if fortran else ''}")
    expected_size = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = file.stat().st_size
    if size != expected_size:
        problems.append(f"{file}: expected {expected_size} bytes for shape {list(shape)} {dtype.str}, "
                        f"found {size} (truncated or padded)")
    return problems


def _count_non_finite(array: np.ndarray, rows: int = 256) -> int:
    """NaN/Inf values of a float array, read in blocks of ``rows`` so a memory map stays small."""
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return sum(int(np.count_nonzero(~np.isfinite(array[start : start + rows])))
               for start in range(0, len(array), rows))


def _with_channels(images, shape, channels: int):
    import tensorflow as tf

    images = tf.ensure_shape(images, shape)[..., tf.newaxis]
    return tf.repeat(images, channels, axis=-1) if channels > 1 else images
