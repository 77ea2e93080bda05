"""File-system helpers shared by the modules that write atomically."""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import secrets
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)


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


@contextlib.contextmanager
def partial_dir(parent: str | os.PathLike, name: str):
    """Yields a new hidden staging folder ``<parent>/.<name>.partial-<pid>-<random>`` of an atomic
    output and removes what is left of it on exit; on success the caller has renamed it (or its
    files) into place. The leftovers of dead runs for the same output are removed first
    (:func:`remove_stale_partials`, which logs each).

    The path is chosen before the folder is made and the folder is made inside the ``try``, so an
    interrupt (SIGINT, SIGTERM) at any moment, even between the mkdir and the yield, leaves nothing
    behind. The process id in the name lets a later run tell a dead run's leftovers from a running
    one's.
    """
    remove_stale_partials(parent, name)

    def candidate() -> Path:
        return Path(parent) / f".{name}.partial-{os.getpid()}-{secrets.token_hex(4)}"

    partial = candidate()
    while partial.exists():
        partial = candidate()
    try:
        partial.mkdir()  # the umask applies, as to any new folder
        yield partial
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def remove_stale_partials(parent: str | os.PathLike, name: str) -> list[Path]:
    """Removes the ``.<name>.partial-*`` folders in ``parent`` left by runs that were killed (SIGKILL,
    power loss) and logs a warning for each. A folder whose process is still running is kept.

    Returns:
        The folders removed.
    """
    parent = Path(parent)
    if not parent.is_dir():
        return []
    removed = []
    for partial in sorted(parent.glob(f".{glob.escape(name)}.partial-*")):
        pid_text = partial.name[len(f".{name}.partial-"):].split("-", 1)[0]
        if not partial.is_dir() or (pid_text.isdigit() and _process_is_alive(int(pid_text))):
            continue
        shutil.rmtree(partial, ignore_errors=True)
        logger.warning("removed %s, the partial output of an interrupted run", partial)
        removed.append(partial)
    return removed


def _process_is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return pid != 0


@contextlib.contextmanager
def naming_write_errors(path: str | os.PathLike):
    """Re-raises an `OSError` that does not name its file (numpy's short-write error, an EFBIG from a
    seek-and-write) as one that names ``path``, so the CLI can say which file could not be written."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        reason = err.strerror or f"short write ({err}): disk full or file-size limit reached"
        raise OSError(err.errno or errno.EIO, reason, os.fspath(path)) from err
