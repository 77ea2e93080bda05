"""File-system helpers shared by the modules that write atomically."""

from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def make_public(path: str | os.PathLike) -> None:
    """Gives a temporary file or folder the permissions of an ordinary new one.

    `tempfile.mkstemp`/`mkdtemp` create 0600/0700 entries; once renamed into place they should be
    readable like any other output (e.g. by a TF Serving process running as another user).
    """
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_umask())
