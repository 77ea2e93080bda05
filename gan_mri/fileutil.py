"""File-system helpers: the one way gan-mri writes an output atomically and refuses to replace one.

- :func:`atomic_output` (a file through a hidden temporary name and one rename), :func:`atomic_write_text`;
- :func:`partial_dir` (a hidden staging folder) and :func:`replace_dir` (a folder renamed into place);
- :func:`refuse_existing` (an output that exists unless overwrite) and :func:`fresh_folder` (an empty
  output folder, the old one removed only when overwriting).
"""

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


def _extension(path: Path) -> str:
    """The extension a writer dispatches on: ``.nii.gz``/``.tar.gz``-style double ones, else the last."""
    suffixes = path.suffixes
    if len(suffixes) >= 2 and suffixes[-1] == ".gz":
        return "".join(suffixes[-2:])
    return suffixes[-1] if suffixes else ""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yields a hidden temporary path next to ``path`` to write to; on a normal exit it is renamed onto
    ``path`` (same folder, so the rename is atomic: readers see the old file or the whole new one), on an
    error it is removed. The temporary name keeps ``path``'s extension (``.keras``, ``.nii.gz``, ``.png``)
    for writers that choose a format by it; the parent folder is created if needed.

    Example:
        >>> with atomic_output(run_dir / "model.keras") as temporary:   # doctest: +SKIP
        ...     model.save(temporary)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}-{secrets.token_hex(4)}{_extension(path)}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8, newlines as given) to ``path`` through :func:`atomic_output`."""
    with atomic_output(path) as temporary:
        with naming_write_errors(path), open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)


def replace_dir(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Renames the folder ``source`` to ``target``; an existing ``target`` is moved aside first and removed
    only once the new one is in place (restored if the rename fails), so ``target`` is always whole."""
    source, target = Path(source), Path(target)
    if not target.exists():
        os.replace(source, target)
        return
    backup = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    os.replace(target, backup)
    try:
        os.replace(source, target)
    except BaseException:
        os.replace(backup, target)
        raise
    if backup.is_dir():
        shutil.rmtree(backup, ignore_errors=True)
    else:
        backup.unlink(missing_ok=True)


def refuse_existing(path: str | os.PathLike, what: str, overwrite: bool, *, flag: str = "--overwrite",
                    alternative: str | None = None, empty_ok: bool = False) -> None:
    """The one "exists unless overwrite" check of every output.

    Raises ``ValueError("<what> <path> already exists; pass [<alternative> or ]<flag> to replace it")``
    when ``path`` exists (an empty folder counts as absent with ``empty_ok``) and ``overwrite`` is false.

    Args:
        path: the output file or folder.
        what: what it is, e.g. "run folder", "output".
        overwrite: whether replacing it was asked for.
        flag: how a caller asks for it (the CLI flag, or the argument and the flag).
        alternative: another way out, e.g. "--resume to continue it".
    """
    path = Path(path)
    if overwrite or not path.exists() or (empty_ok and path.is_dir() and not any(path.iterdir())):
        return
    choices = f"{alternative} or {flag}" if alternative else flag
    raise ValueError(f"{what} {path} already exists; pass {choices} to replace it")


def fresh_folder(path: str | os.PathLike, what: str, overwrite: bool, *, flag: str = "--overwrite",
                 alternative: str | None = None) -> Path:
    """An empty output folder at ``path``: a missing or empty one is used, a non-empty one is refused
    (:func:`refuse_existing`) or, when ``overwrite``, removed and made again. Returns ``path``."""
    path = Path(path)
    refuse_existing(path, what, overwrite, flag=flag, alternative=alternative, empty_ok=True)
    if path.exists() and any(path.iterdir()):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path
