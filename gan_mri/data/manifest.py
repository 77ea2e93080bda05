"""Writing a prepared dataset folder: atomic output, checksums, JSON manifest, chunked .npy arrays.

Storage choice: one ``.npy`` file per array (``train_a.npy``, ``train_b.npy``, their brain masks
``train_a_mask.npy``, ``train_b_mask.npy``, ``test_a.npy``,
``test_b.npy``, ``test_mask.npy`` and, with tissue labels, ``test_labels.npy``), read back with
``numpy.load(mmap_mode="r")``. Why not TFRecord shards:

- streaming: a memory map reads only the pages a batch touches, so sets larger than memory stream
  as TFRecords would, and random access gives a true global shuffle of slice indices (a TFRecord
  reader can only shuffle within a buffer);
- byte-for-byte determinism: an ``.npy`` file is a fixed header (dtype, shape) plus the raw array,
  so the same arrays give the same bytes; the JSON manifest is written with sorted keys and holds no
  timestamps or absolute paths;
- the same files serve tf.data, plain numpy (evaluation, figures) and inspection without TensorFlow.

Atomicity: everything is written into a hidden sibling folder ``.<name>.partial-XXXX`` and renamed
onto ``out_dir`` only after the manifest (written last) is complete. An error or Ctrl-C removes the
partial folder; a hard kill leaves only a hidden ``.partial`` folder without a usable name (the next
``prepare`` of the same output removes it, saying so), and
:meth:`PreparedDataset.open` refuses any folder whose manifest or files are missing or inconsistent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..fileutil import naming_write_errors, partial_dir, refuse_existing, replace_dir
from ..standardization import LANDMARK_PERCENTILES, IntensityStandardization

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: train_a_mask/train_b_mask
MANIFEST_NAME = "manifest.json"
READ_SCHEMA_VERSIONS = (2,)
"""Manifest schema versions this library reads (``SCHEMA_VERSION`` is the one it writes). A version
goes here only once the reading code handles its manifests."""
RETIRED_SCHEMA_VERSIONS = {1: "has no train_a_mask/train_b_mask, which training's remap baseline needs"}
"""Older schema versions this library no longer reads, and why."""


def sha256_file(path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def dumps_manifest(manifest: dict) -> str:
    """Deterministic JSON text (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"


@contextlib.contextmanager
def atomic_output_dir(out_dir, overwrite: bool = False):
    """Yield a hidden partial folder next to ``out_dir``; rename it onto ``out_dir`` on success.

    On any exception, KeyboardInterrupt included, the partial folder is removed and the exception
    re-raised; an existing ``out_dir`` is only replaced (with ``overwrite=True``) after success.

    Raises:
        ValueError: if ``out_dir`` exists and ``overwrite`` is false.
    """
    out_dir = Path(out_dir)
    refuse_existing(out_dir, "output folder", overwrite, flag="overwrite=True (--overwrite)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with partial_dir(out_dir.parent, out_dir.name) as partial:
        yield partial
        replace_dir(partial, out_dir)


class ArrayWriter:
    """Collects slices of one named array in chunk files, then writes one ``.npy`` file.

    Chunks keep memory bounded by one volume while the dataset is written.
    """

    def __init__(self, folder: Path, name: str, dtype):
        self.folder = Path(folder)
        self.name = name
        self.dtype = np.dtype(dtype)
        self.chunks: list[Path] = []
        self.rows = 0
        self.tail_shape: tuple[int, ...] | None = None

    def append(self, array: np.ndarray) -> tuple[int, int]:
        """Store ``array`` (N, ...) and return its ``(start, stop)`` rows in the final file."""
        array = np.ascontiguousarray(array, dtype=self.dtype)
        if self.tail_shape is None:
            self.tail_shape = tuple(array.shape[1:])
        elif tuple(array.shape[1:]) != self.tail_shape:
            raise ValueError(f"{self.name}: expected rows of shape {self.tail_shape}, found {array.shape[1:]}")
        path = self.folder / f".chunk-{self.name}-{len(self.chunks):06d}.npy"
        with naming_write_errors(path):
            np.save(path, array)
        self.chunks.append(path)
        start = self.rows
        self.rows += len(array)
        return start, self.rows

    def finalize(self, tail_shape) -> dict:
        """Concatenate the chunks into ``<name>.npy``; return its manifest entry (shape, dtype, sha256)."""
        shape = (self.rows, *(self.tail_shape or tuple(tail_shape)))
        path = self.folder / f"{self.name}.npy"
        if self.rows == 0:
            with naming_write_errors(path):
                np.save(path, np.zeros(shape, dtype=self.dtype))
            return {"shape": list(shape), "dtype": self.dtype.str, "sha256": sha256_file(path)}
        with naming_write_errors(path):
            output = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=shape)
        start = 0
        for chunk in self.chunks:
            block = np.load(chunk)
            output[start : start + len(block)] = block
            start += len(block)
            chunk.unlink()
        output.flush()
        del output
        return {"shape": list(shape), "dtype": self.dtype.str, "sha256": sha256_file(path)}


STANDARDIZED_FILES = ("train_a.npy", "train_b.npy", "test_a.npy", "test_b.npy")
"""Array files whose volumes carry intensity landmarks (:mod:`gan_mri.standardization`)."""

ARRAY_NAMES = ("train_a", "train_b", "train_a_mask", "train_b_mask", "test_a", "test_b", "test_mask")
"""Arrays every prepared dataset holds; ``test_labels`` is added when ``has_labels`` is true, ``test_lesions``
when ``lesion_subjects`` is not empty."""


def manifest_problems(manifest) -> list[str]:
    """Every way ``manifest`` departs from the schema, as ``field: expected ..., found ...`` lines.

    Checks the fields that reading a dataset relies on (types, required arrays, counts that agree with
    the array shapes and the test index); the data files themselves are checked by
    :meth:`gan_mri.data.PreparedDataset.open`. A ``schema_version`` this library does not read (newer,
    retired or not a version number) is the only problem reported: the other fields belong to a schema
    this code does not know.

    Returns:
        The problems, empty for a valid manifest.
    """
    if not isinstance(manifest, dict):
        return [f"expected a JSON object, found {type(manifest).__name__}"]
    problems = []
    if "schema_version" not in manifest:
        problems.append(f"schema_version: missing (expected {_versions_read()})")
    elif version_problem := _schema_version_problem(manifest["schema_version"]):
        return [version_problem]

    def expect(field, ok, expected):
        if field not in manifest:
            problems.append(f"{field}: missing (expected {expected})")
            return False
        if not ok(manifest[field]):
            problems.append(f"{field}: expected {expected}, found {_short(manifest[field])}")
            return False
        return True

    def is_int(value):
        return isinstance(value, int) and not isinstance(value, bool)

    shape_ok = expect("image_shape", lambda v: isinstance(v, list) and len(v) == 2
                      and all(is_int(s) and s > 0 for s in v), "[height, width] of positive integers")
    expect("channels", lambda v: v in (1, 3) and is_int(v), "1 or 3")
    labels_ok = expect("has_labels", lambda v: isinstance(v, bool), "true or false")
    files_ok = expect("files", lambda v: isinstance(v, dict), "an object of array files")
    counts_ok = expect("counts", lambda v: isinstance(v, dict), "an object of slice counts")
    index_ok = expect("test_index", lambda v: isinstance(v, dict), 'an object with "subject" and "slice" lists')
    if "split" in manifest and not isinstance(manifest["split"], dict):
        problems.append(f"split: expected an object of subject lists, found {_short(manifest['split'])}")
    if not files_ok:
        return problems
    names = list(ARRAY_NAMES) + (["test_labels"] if labels_ok and manifest["has_labels"] else [])
    names += ["test_lesions"] if manifest.get("lesion_subjects") else []
    for name in names:
        if f"{name}.npy" not in manifest["files"]:
            problems.append(f"files: missing {name}.npy")
    mismatched: dict[str, list[str]] = {}  # slice shape -> files whose slices differ from image_shape
    for file, entry in manifest["files"].items():
        field = f"files.{file}"
        if not isinstance(entry, dict):
            problems.append(f"{field}: expected an object with shape, dtype and sha256, found {_short(entry)}")
            continue
        shape = entry.get("shape")
        if not (isinstance(shape, list) and len(shape) >= 1 and all(is_int(s) and s >= 0 for s in shape)):
            problems.append(f"{field}.shape: expected a list of non-negative integers, found {_short(shape)}")
        elif shape_ok and len(shape) == 3 and shape[1:] != manifest["image_shape"]:
            mismatched.setdefault(str(shape[1:]), []).append(file)
        elif counts_ok and manifest["counts"].get(file.removesuffix(".npy")) != shape[0]:
            problems.append(f"counts.{file.removesuffix('.npy')}: expected {shape[0]} ({field}.shape[0]), "
                            f"found {_short(manifest['counts'].get(file.removesuffix('.npy')))}")
        if not _is_dtype(entry.get("dtype")):
            problems.append(f"{field}.dtype: expected a numpy dtype string like '<f4', found {_short(entry.get('dtype'))}")
        digest = entry.get("sha256")
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            problems.append(f"{field}.sha256: expected 64 hex digits, found {_short(digest)}")
    for slice_shape, files in mismatched.items():
        problems.append(f"image_shape: expected {slice_shape}, the slice shape of {', '.join(files)}, "
                        f"found {manifest['image_shape']}")
    if index_ok:
        index = manifest["test_index"]
        test_entry = manifest["files"].get("test_a.npy")
        rows = test_entry.get("shape", [None])[0] if isinstance(test_entry, dict) and test_entry.get("shape") else None
        for key, kind in (("subject", str), ("slice", int)):
            values = index.get(key)
            if not (isinstance(values, list) and all(isinstance(v, kind) for v in values)):
                problems.append(f"test_index.{key}: expected a list of {kind.__name__}, found {_short(values)}")
            elif is_int(rows) and len(values) != rows:
                problems.append(f"test_index.{key}: expected {rows} entries (test_a.npy rows), found {len(values)}")
    if "standardization" in manifest:
        problems += _standardization_problems(manifest, is_int)
    return problems


def _schema_version_problem(version) -> str | None:
    """None for a version in ``READ_SCHEMA_VERSIONS``, else why it cannot be read, naming the versions read."""
    reads = _versions_read()
    if isinstance(version, int) and not isinstance(version, bool):
        if version in READ_SCHEMA_VERSIONS:
            return None
        if version > max(READ_SCHEMA_VERSIONS):
            return (f"schema_version: found {version}, newer than this gan-mri reads ({reads}): upgrade gan-mri, "
                    f"or prepare the dataset again with this one")
        if version in RETIRED_SCHEMA_VERSIONS:
            return (f"schema_version: found {version}, a retired schema this gan-mri no longer reads (it reads "
                    f"{reads}; version {version} {RETIRED_SCHEMA_VERSIONS[version]}): prepare the dataset again")
    return f"schema_version: expected a version this gan-mri reads ({reads}), found {_short(version)}"


def _versions_read() -> str:
    """``"schema version 2"`` or ``"schema versions 1 and 2"``."""
    names = [str(version) for version in READ_SCHEMA_VERSIONS]
    if len(names) == 1:
        return f"schema version {names[0]}"
    return f"schema versions {', '.join(names[:-1])} and {names[-1]}"


def _standardization_problems(manifest: dict, is_int) -> list[str]:
    """The reference landmarks and, for every volume of an image array, its landmarks and rows."""
    try:
        IntensityStandardization.from_dict(manifest["standardization"])
        problems = []
    except ValueError as error:
        problems = [str(error)]
    volumes = manifest.get("volumes")
    if not isinstance(volumes, list):
        return problems + [f"volumes: expected a list of volume records, found {_short(volumes)}"]
    counts = manifest.get("counts") if isinstance(manifest.get("counts"), dict) else {}
    for position, record in enumerate(volumes):
        if not isinstance(record, dict) or record.get("file") not in STANDARDIZED_FILES:
            continue
        marks, rows = record.get("landmarks"), record.get("rows")
        if not (isinstance(marks, list) and len(marks) == len(LANDMARK_PERCENTILES)
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in marks)):
            problems.append(f"volumes[{position}].landmarks: expected {len(LANDMARK_PERCENTILES)} numbers, "
                            f"found {_short(marks)}")
        total = counts.get(record["file"].removesuffix(".npy"))
        if not (isinstance(rows, list) and len(rows) == 2 and all(is_int(r) for r in rows)
                and 0 <= rows[0] <= rows[1] and (not is_int(total) or rows[1] <= total)):
            problems.append(f"volumes[{position}].rows: expected [start, stop] within the {total} rows of "
                            f"{record['file']}, found {_short(rows)}")
    return problems


def _is_dtype(text) -> bool:
    try:
        return isinstance(text, str) and np.dtype(text).str == text
    except TypeError:
        return False


def _short(value, limit: int = 60) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
