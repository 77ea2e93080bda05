"""Atomically written outputs get ordinary permissions, not tempfile's private 0600/0700."""

import os
import stat
import tempfile

from gan_mri.results import atomic_write_text
from gan_mri.fileutil import make_public


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
