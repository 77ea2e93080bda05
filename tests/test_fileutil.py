"""Atomically written outputs get ordinary permissions, not tempfile's private 0600/0700, and their
staging folders never outlive an interrupt."""

import os
import stat
import tempfile
from pathlib import Path

import pytest

from gan_mri.fileutil import make_public, partial_dir
from gan_mri.results import atomic_write_text


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_temporary_folder_and_file_become_readable_like_new_ones(tmp_path):
    folder = tempfile.mkdtemp(dir=tmp_path)
    handle, file = tempfile.mkstemp(dir=tmp_path)
    os.close(handle)
    assert mode(folder) == 0o700 and mode(file) == 0o600
    make_public(folder)
    make_public(file)
    assert mode(folder) == 0o777 & ~current_umask()
    assert mode(file) == 0o666 & ~current_umask()


def test_atomic_write_text_leaves_a_world_readable_file(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "metrics.csv", "epoch,ssim\n1,0.5\n")
    finally:
        os.umask(old)
    assert (tmp_path / "metrics.csv").read_text() == "epoch,ssim\n1,0.5\n"
    assert mode(tmp_path / "metrics.csv") == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_partial_dir_is_hidden_names_its_process_and_has_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with partial_dir(tmp_path, "synth") as partial:
            assert partial.parent == tmp_path and partial.is_dir()
            assert partial.name.startswith(f".synth.partial-{os.getpid()}-")
            assert mode(partial) == 0o755
            (partial / "a.nii.gz").write_bytes(b"x")
    finally:
        os.umask(old)
    assert list(tmp_path.iterdir()) == []


def test_partial_dir_renamed_into_place_leaves_only_the_output(tmp_path):
    with partial_dir(tmp_path, "out") as partial:
        (partial / "a.txt").write_text("done")
        os.replace(partial, tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (tmp_path / "out" / "a.txt").read_text() == "done"


def test_an_interrupt_right_after_the_mkdir_leaves_nothing(tmp_path, monkeypatch):
    """SIGTERM/SIGINT raise in Python between any two bytecodes; the CI once caught one between
    tempfile.mkdtemp's mkdir and the caller's try, which left the staging folder behind."""
    made = []
    real_mkdir = Path.mkdir

    def mkdir_then_interrupt(self, *args, **kwargs):
        real_mkdir(self, *args, **kwargs)
        made.append(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "mkdir", mkdir_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with partial_dir(tmp_path, "data"):
            pytest.fail("the body must not run")
    assert len(made) == 1 and not made[0].exists()
    assert list(tmp_path.iterdir()) == []


def test_an_error_in_the_body_removes_the_partial_folder(tmp_path):
    with pytest.raises(ValueError, match="bad volume"):
        with partial_dir(tmp_path, "data") as partial:
            (partial / "sub").mkdir()
            (partial / "sub" / "x.npy").write_bytes(b"0")
            raise ValueError("bad volume")
    assert list(tmp_path.iterdir()) == []
