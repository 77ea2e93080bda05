"""Atomically written outputs get ordinary permissions, not tempfile's private 0600/0700, and their
staging folders never outlive an interrupt."""

import os
import stat
import tempfile
from pathlib import Path

import pytest

from gan_mri.fileutil import (atomic_output, atomic_write_text, fresh_folder, partial_dir, refuse_existing,
                              replace_dir)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


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


@pytest.mark.parametrize("name, extension", [("model.keras", ".keras"), ("sub-01_T1w.nii.gz", ".nii.gz"),
                                             ("figure.png", ".png"), ("history.csv", ".csv")])
def test_atomic_output_writes_under_a_hidden_name_with_the_extension_then_renames(tmp_path, name, extension):
    target = tmp_path / "new" / name
    with atomic_output(target) as temporary:
        assert temporary.parent == target.parent and temporary.name.startswith(f".{name}.partial-{os.getpid()}-")
        # Writers that pick the format by the extension (Keras, nibabel, matplotlib) see the right one.
        assert temporary.name.endswith(extension) and not temporary.name.endswith(".gz" + extension)
        temporary.write_bytes(b"whole")
        assert not target.exists()  # nothing at the output's name until the rename
    assert target.read_bytes() == b"whole" and [p.name for p in target.parent.iterdir()] == [name]


def test_atomic_output_keeps_the_old_file_and_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with atomic_output(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("disk on fire")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_replace_dir_swaps_a_whole_folder_in_and_the_old_one_out(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    (tmp_path / "staged").mkdir()
    (tmp_path / "staged" / "new.txt").write_text("new")
    replace_dir(tmp_path / "staged", tmp_path / "out")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["new.txt"]
    (tmp_path / "again").mkdir()
    replace_dir(tmp_path / "again", tmp_path / "fresh")  # no target yet: a plain rename
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "out"]


def test_refuse_existing_names_the_output_and_the_ways_out(tmp_path):
    path = tmp_path / "run"
    refuse_existing(path, "run folder", overwrite=False)  # absent: fine
    path.mkdir()
    refuse_existing(path, "run folder", overwrite=False, empty_ok=True)  # empty folder counts as absent
    with pytest.raises(ValueError) as error:
        refuse_existing(path, "run folder", overwrite=False)
    assert str(error.value) == f"run folder {path} already exists; pass --overwrite to replace it"
    (path / "run.json").write_text("{}")
    with pytest.raises(ValueError) as error:
        refuse_existing(path, "run folder", overwrite=False, empty_ok=True, alternative="--resume to continue it")
    assert str(error.value) == f"run folder {path} already exists; pass --resume to continue it or --overwrite to replace it"
    with pytest.raises(ValueError, match=r"output .* already exists; pass overwrite=True \(--overwrite\) to replace"):
        refuse_existing(path / "run.json", "output", overwrite=False, flag="overwrite=True (--overwrite)")
    refuse_existing(path, "run folder", overwrite=True)


def test_fresh_folder_uses_an_empty_one_and_empties_an_old_one_only_when_overwriting(tmp_path):
    assert fresh_folder(tmp_path / "a" / "b", "demo folder", overwrite=False).is_dir()
    (tmp_path / "a" / "b" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="demo folder .* already exists; pass --overwrite"):
        fresh_folder(tmp_path / "a" / "b", "demo folder", overwrite=False)
    assert (tmp_path / "a" / "b" / "keep.txt").exists()
    assert list(fresh_folder(tmp_path / "a" / "b", "demo folder", overwrite=True).iterdir()) == []
