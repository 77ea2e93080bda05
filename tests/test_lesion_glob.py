"""Lesion labels from an explicit glob (``prepare(lesion_glob=...)``, ``gan-mri prepare --lesion-glob``), on
real phantom volumes: a flat folder of T1w/T2w/lesion files against the same subjects in BIDS."""

import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from gan_mri.data.dataset import prepare
from gan_mri.data.phantom import simulate

SIZE = (48, 48)
GLOBS = {"a_glob": "*_T1w.nii.gz", "b_glob": "*_T2w.nii.gz"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three phantom subjects with lesions, as BIDS (images and lesion labels only, so that both layouts find
    the same brain masks) and as one flat folder; sub-03 has no lesion file in either."""
    root = tmp_path_factory.mktemp("lesion_glob")
    simulate(3, root / "phantom", seed=3, lesions=3, lesions_in="all", head=False)
    for subject in ("sub-01", "sub-02", "sub-03"):
        anat = root / "phantom" / subject / "anat"
        names = [f"{subject}_T1w.nii.gz", f"{subject}_T2w.nii.gz"]
        names += [f"{subject}_label-lesion_mask.nii.gz"] if subject != "sub-03" else []
        for name in names:
            for folder in (root / "bids" / subject / "anat", root / "flat"):
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(anat / name, folder / name)
    return root


def test_cli_prepare_with_lesion_glob_gives_what_bids_gives(cohort, tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run(
        [sys.executable, "-m", "gan_mri.cli", "prepare", str(cohort / "flat"), "--out", str(tmp_path / "flat"),
         "--a-glob", "*_T1w.nii.gz", "--b-glob", "*_T2w.nii.gz", "--lesion-glob", "*_label-lesion_mask.nii.gz",
         "--size", "48", "--test-fraction", "1"],
        env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    manifest = json.loads((tmp_path / "flat" / "manifest.json").read_text())
    assert manifest["layout"] == "glob" and manifest["lesion_subjects"] == ["sub-01", "sub-02"]
    records = {r["name"]: r["source"] for r in manifest["volumes"] if r["contrast"] == "lesions"}
    assert records == {"sub-01": "sub-01_label-lesion_mask.nii.gz", "sub-02": "sub-02_label-lesion_mask.nii.gz"}

    flat_lesions = np.load(tmp_path / "flat" / "test_lesions.npy")
    subjects = np.array(manifest["test_index"]["subject"])
    assert flat_lesions.dtype == np.uint8 and flat_lesions.shape == (len(subjects), *SIZE)
    assert not flat_lesions[subjects == "sub-03"].any()  # no lesion file: zeros, rows still aligned
    for subject in ("sub-01", "sub-02"):
        labels = np.asarray(nib.load(cohort / "flat" / f"{subject}_label-lesion_mask.nii.gz").dataobj)
        found = set(np.unique(flat_lesions[subjects == subject]).tolist()) - {0}
        assert found and found <= set(np.unique(labels).tolist()) - {0}

    # The BIDS layout finds the same files by itself: the two datasets agree slice for slice.
    bids = prepare(cohort / "bids", tmp_path / "bids", image_shape=SIZE, test_fraction=1.0)
    assert bids.manifest["test_index"] == manifest["test_index"]
    np.testing.assert_array_equal(np.asarray(bids.array("test_a")), np.load(tmp_path / "flat" / "test_a.npy"))
    np.testing.assert_array_equal(np.asarray(bids.array("test_lesions")), flat_lesions)


def test_lesion_glob_replaces_the_bids_lesion_files(cohort, tmp_path):
    # A second rater's labels, named another way and kept outside the BIDS tree (an absolute glob).
    (tmp_path / "rater2").mkdir()
    image = nib.load(cohort / "bids" / "sub-02" / "anat" / "sub-02_label-lesion_mask.nii.gz")
    relabelled = (np.asarray(image.dataobj) > 0).astype(np.uint8) * 7
    nib.save(nib.Nifti1Image(relabelled, image.affine), tmp_path / "rater2" / "sub-02_T1w_lesion.nii.gz")
    dataset = prepare(cohort / "bids", tmp_path / "data", image_shape=SIZE, test_fraction=1.0,
                      lesion_glob=str(tmp_path / "rater2" / "*.nii.gz"))
    assert dataset.lesion_subjects == ["sub-02"]  # sub-01's BIDS lesion file is no longer used
    lesions = np.asarray(dataset.array("test_lesions"))
    subjects = np.array(dataset.manifest["test_index"]["subject"])
    assert set(np.unique(lesions[subjects == "sub-02"]).tolist()) == {0, 7} and not lesions[subjects != "sub-02"].any()


def test_prepare_refuses_a_lesion_glob_that_does_not_fit_and_leaves_nothing(cohort, tmp_path):
    source, out = cohort / "flat", tmp_path / "data"
    with pytest.raises(ValueError, match=r"lesion_glob: the glob '.*flat/\*_seg.nii.gz' matched no files"):
        prepare(source, out, image_shape=SIZE, lesion_glob="*_seg.nii.gz", **GLOBS)

    stray = tmp_path / "masks"
    stray.mkdir()
    shutil.copy(source / "sub-01_label-lesion_mask.nii.gz", stray / "sub-09_lesion.nii.gz")
    with pytest.raises(ValueError, match=r"masks/sub-09_lesion.nii.gz matches no subject; subjects are sub-01, "
                                         r"sub-02, sub-03 \(expected a file named after its subject"):
        prepare(source, out, image_shape=SIZE, lesion_glob=str(stray / "*.nii.gz"), **GLOBS)

    (stray / "sub-09_lesion.nii.gz").rename(stray / "sub-01_lesion.nii.gz")
    shutil.copy(stray / "sub-01_lesion.nii.gz", stray / "sub-01_seg.nii.gz")
    with pytest.raises(ValueError, match=r"masks/sub-01_lesion.nii.gz and .*masks/sub-01_seg.nii.gz both match "
                                         r"subject sub-01; expected one lesion label file per subject"):
        prepare(source, out, image_shape=SIZE, lesion_glob=str(stray / "*.nii.gz"), **GLOBS)

    png = tmp_path / "png"
    (png / "trainA").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"lesion_glob: the png layout holds single slices, not volumes"):
        prepare(png, out, image_shape=SIZE, lesion_glob="*.nii.gz")
    assert not out.exists()


def test_cli_prepare_reports_a_lesion_file_that_matches_no_subject(cohort, tmp_path):
    stray = tmp_path / "sub-09_lesion.nii.gz"
    shutil.copy(cohort / "flat" / "sub-01_label-lesion_mask.nii.gz", stray)
    completed = subprocess.run(
        [sys.executable, "-m", "gan_mri.cli", "prepare", str(cohort / "flat"), "--out", str(tmp_path / "data"),
         "--a-glob", "*_T1w.nii.gz", "--b-glob", "*_T2w.nii.gz", "--lesion-glob", str(stray)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, capture_output=True, text=True, timeout=300)
    assert completed.returncode != 0
    assert f"{stray} matches no subject; subjects are sub-01, sub-02, sub-03" in completed.stderr, completed.stderr
    assert not (tmp_path / "data").exists()
