"""Bad input at the data boundary: every case names the file and the problem; prepare lists them all."""

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gan_mri.data import discover, load_volume, prepare, read_png_folder, write_png_slices

SHAPE = (20, 24, 16)


def brain(seed=0, shape=SHAPE):
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    inside = (grid ** 2).sum(0) < 0.6
    return (np.where(inside, 500.0, 0.0) + rng.uniform(0, 20, shape)).astype(np.float32)


def save(path: Path, data, affine=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), path)
    return path


def bids_subject(root: Path, subject: str, t1=None, t2=None) -> None:
    anat = root / subject / "anat"
    save(anat / f"{subject}_T1w.nii.gz", brain(1) if t1 is None else t1)
    save(anat / f"{subject}_T2w.nii.gz", brain(2) if t2 is None else t2)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing_T1w.nii.gz: file not found"):
        load_volume(tmp_path / "missing_T1w.nii.gz")


def test_truncated_nii_gz(tmp_path):
    path = save(tmp_path / "cut.nii.gz", brain())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.nii.gz: truncated or corrupt"):
        load_volume(path)


def test_corrupt_gzip_stream(tmp_path):
    path = save(tmp_path / "bad.nii.gz", brain())
    raw = bytearray(gzip.decompress(path.read_bytes()))
    compressed = bytearray(gzip.compress(bytes(raw)))
    compressed[len(compressed) // 2 : len(compressed) // 2 + 64] = b"\x00" * 64
    path.write_bytes(bytes(compressed))
    with pytest.raises(ValueError, match=r"bad.nii.gz: (truncated or corrupt|not a readable image)"):
        load_volume(path)


def test_non_image_file_named_nii(tmp_path):
    path = tmp_path / "notes.nii"
    path.write_text("this is a text file, not a NIfTI volume\n" * 20)
    with pytest.raises(ValueError, match=r"notes.nii: not a readable image"):
        load_volume(path)


def test_4d_volume(tmp_path):
    path = save(tmp_path / "bold.nii.gz", np.stack([brain(), brain(1)], axis=-1))
    with pytest.raises(ValueError, match=r"bold.nii.gz: expected a 3D volume, found shape \(20, 24, 16, 2\) \(4D\)"):
        load_volume(path)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_voxels(tmp_path, bad_value):
    data = brain()
    data[3, 4, 5] = bad_value
    data[6, 7, 8] = -np.inf
    path = save(tmp_path / "nan.nii.gz", data)
    with pytest.raises(ValueError, match=r"nan.nii.gz: expected finite intensities, found 2 NaN/Inf voxels"):
        load_volume(path)


def test_all_zero_volume(tmp_path):
    path = save(tmp_path / "empty.nii.gz", np.zeros(SHAPE, np.float32))
    with pytest.raises(ValueError, match=r"empty.nii.gz: all voxels are zero"):
        load_volume(path)


def test_test_pair_with_different_shapes(tmp_path):
    for index in range(3):
        bids_subject(tmp_path / "src", f"sub-0{index}", t2=brain(2, shape=(20, 24, 15)) if index else None)
    with pytest.raises(ValueError) as error:
        prepare(tmp_path / "src", tmp_path / "ds", image_shape=(32, 32), test_fraction=0.5, seed=0)
    message = str(error.value)
    assert "has shape (20, 24, 16) but T2w" in message and "has shape (20, 24, 15)" in message
    assert "co-registered" in message and "sub-0" in message
    assert not (tmp_path / "ds").exists()


def test_test_pair_with_different_affines(tmp_path):
    shifted = np.eye(4)
    shifted[0, 3] = 5.0
    for subject in ("sub-01", "sub-02"):
        save(tmp_path / f"src/{subject}/anat/{subject}_T1w.nii.gz", brain(1))
        save(tmp_path / f"src/{subject}/anat/{subject}_T2w.nii.gz", brain(2), affine=shifted)
    with pytest.raises(ValueError, match=r"T1w .*sub-0\d_T1w.nii.gz and T2w .*sub-0\d_T2w.nii.gz have different affines"):
        prepare(tmp_path / "src", tmp_path / "ds", image_shape=(32, 32), test_fraction=0.5, seed=1)


def test_glob_that_matches_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"a_glob: the glob '.*t1/\*_T1w.nii.gz' matched no files"):
        discover(tmp_path, a_glob="t1/*_T1w.nii.gz")
    with pytest.raises(ValueError, match="a_glob: the glob"):
        prepare(tmp_path, tmp_path / "ds", a_glob="t1/*.nii.gz", b_glob="t2/*.nii.gz")


def test_folder_that_matches_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: found no known layout \(expected one of bids: sub-\*"):
        prepare(tmp_path / "empty", tmp_path / "ds")
    with pytest.raises(FileNotFoundError, match="nowhere: source folder not found"):
        prepare(tmp_path / "nowhere", tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_png_folder_with_mixed_sizes(tmp_path):
    write_png_slices(np.zeros((2, 16, 16)), tmp_path / "trainA", names=["a0", "a1"])
    write_png_slices(np.zeros((1, 16, 20)), tmp_path / "trainA", names=["odd"])
    with pytest.raises(ValueError, match=r"trainA: expected PNG images of one size \(16x16.*found mixed sizes: odd.png 16x20"):
        read_png_folder(tmp_path / "trainA")
    with pytest.raises(ValueError, match="odd.png 16x20"):
        prepare(tmp_path, tmp_path / "ds", image_shape=(32, 32))


def test_png_folder_with_no_pngs_and_non_png_file(tmp_path):
    (tmp_path / "trainB").mkdir()
    with pytest.raises(ValueError, match="trainB: expected PNG files, found none"):
        read_png_folder(tmp_path / "trainB")
    (tmp_path / "trainB" / "fake.png").write_text("not an image")
    with pytest.raises(ValueError, match="fake.png: not a readable PNG image"):
        read_png_folder(tmp_path / "trainB")


def test_prepare_reports_every_problem_and_writes_nothing(tmp_path):
    src = tmp_path / "src"
    for index in range(1, 5):
        bids_subject(src, f"sub-0{index}")
    truncated = src / "sub-01/anat/sub-01_T1w.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:300])
    with_nan = brain(3)
    with_nan[0, 0, 0] = np.nan
    save(src / "sub-02/anat/sub-02_T2w.nii.gz", with_nan)
    save(src / "sub-03/anat/sub-03_T1w.nii.gz", np.zeros(SHAPE, np.float32))
    (src / "sub-04/anat/sub-04_T2w.nii.gz").unlink()
    (src / "sub-04/anat/sub-04_T2w.nii.gz").write_text("not an image")
    with pytest.raises(ValueError) as error:
        prepare(src, tmp_path / "ds", image_shape=(32, 32), test_fraction=0.25, seed=0)
    message = str(error.value)
    assert message.startswith(f"prepare: found 4 problem(s) in {src}:")
    assert "sub-01_T1w.nii.gz: truncated or corrupt" in message or "sub-01_T1w.nii.gz: not a readable" in message
    assert "sub-02_T2w.nii.gz: expected finite intensities, found 1 NaN/Inf voxels" in message
    assert "sub-03_T1w.nii.gz: all voxels are zero" in message
    assert "sub-04_T2w.nii.gz: not a readable image" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_bad_prepare_arguments_name_the_field(tmp_path):
    bids_subject(tmp_path / "src", "sub-01")
    with pytest.raises(ValueError, match="channels: expected 1 or 3, found 4"):
        prepare(tmp_path / "src", tmp_path / "ds", channels=4)
    with pytest.raises(ValueError, match="test_fraction: expected a value in"):
        prepare(tmp_path / "src", tmp_path / "ds", test_fraction=1.5)
    with pytest.raises(ValueError, match="train_pairing: expected one of"):
        prepare(tmp_path / "src", tmp_path / "ds", train_pairing="paired")
    with pytest.raises(ValueError, match=r"image_shape: expected \(height, width\)"):
        prepare(tmp_path / "src", tmp_path / "ds", image_shape="big")
