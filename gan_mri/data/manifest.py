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
partial folder; a hard kill leaves only a hidden ``.partial`` folder without a usable name, and
:meth:`PreparedDataset.open` refuses any folder whose manifest or files are missing or inconsistent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..fileutil import make_public

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: train_a_mask/train_b_mask
MANIFEST_NAME = "manifest.json"


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
    if out_dir.exists() and not overwrite:
        raise ValueError(f"{out_dir}: output folder already exists (pass overwrite=True to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    make_public(partial)
    try:
        yield partial
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "previous")
            os.replace(partial, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, out_dir)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise


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
            np.save(path, np.zeros(shape, dtype=self.dtype))
            return {"shape": list(shape), "dtype": self.dtype.str, "sha256": sha256_file(path)}
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
