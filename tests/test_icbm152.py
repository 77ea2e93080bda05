"""The real ICBM 2009c T1w/T2w pair that ships with gan-mri (gan_mri.data.icbm152): its arrays, their
real contrasts, and the BIDS tree write_bids makes of them."""

import json

import nibabel as nib
import numpy as np
import pytest

from gan_mri.data.icbm152 import CONTRASTS, SESSIONS, SUBJECT, load_icbm152, write_bids
from gan_mri.data.layouts import discover

SHAPE = (193, 229, 171)


@pytest.fixture(scope="module")
def pair():
    return load_icbm152()


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory):
    """The pair written once for the module, into an existing empty folder (which write_bids accepts)."""
    root = tmp_path_factory.mktemp("icbm152-bids")
    subject = write_bids(root)
    assert subject == root / SUBJECT
    return root


# ------------------------------------------------------------------------------- the arrays
def test_arrays_share_one_1mm_ras_grid(pair):
    for name in ("t1w", "t2w", "brain_mask", "dseg", "ventricles"):
        assert getattr(pair, name).shape == SHAPE, name
    assert pair.t1w.dtype == pair.t2w.dtype == np.float32
    assert pair.brain_mask.dtype == pair.ventricles.dtype == np.bool_
    assert pair.dseg.dtype == np.uint8
    assert pair.affine.shape == (4, 4)
    np.testing.assert_allclose(pair.affine[:3, :3], np.eye(3))  # 1 mm, RAS, no rotation
    np.testing.assert_allclose(pair.affine[:3, 3], [-96.0, -132.0, -78.0])
    assert nib.aff2axcodes(pair.affine) == ("R", "A", "S")
    for contrast in CONTRASTS:
        image = pair.image(contrast)
        assert image.shape == SHAPE
        np.testing.assert_array_equal(image.affine, pair.affine)


def test_load_is_cached(pair):
    assert load_icbm152() is pair


def test_tissue_labels_and_ventricles(pair):
    assert set(np.unique(pair.dseg).tolist()) == {0, 1, 2, 3}
    assert not np.any(pair.ventricles & ~pair.brain_mask)
    # Measured: 19 140 ventricle voxels (19 ml) in a 1 887 ml brain mask (1 886 539 voxels of 1 mm).
    assert 10_000 < pair.ventricles.sum() < 40_000
    assert 1_700_000 < pair.brain_mask.sum() < 2_100_000
    # The labelled voxels are exactly the brain mask (measured: both 1 886 539 voxels).
    np.testing.assert_array_equal(pair.dseg > 0, pair.brain_mask)


def test_real_contrasts(pair):
    wm = pair.dseg == 3
    gm = pair.dseg == 2

    def mean(volume, region):
        return float(volume[region].mean())

    # Measured: ventricles / WM 2.27 on T2w, 0.38 on T1w; GM/WM 0.79 on T1w, 1.32 on T2w.
    assert mean(pair.t2w, pair.ventricles) > 2.0 * mean(pair.t2w, wm)
    assert mean(pair.t1w, pair.ventricles) < 0.5 * mean(pair.t1w, wm)
    assert mean(pair.t1w, gm) < mean(pair.t1w, wm)
    assert mean(pair.t2w, gm) > mean(pair.t2w, wm)


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_skull_stripped_is_the_whole_head_inside_the_mask(pair, contrast):
    stripped = pair.array(contrast, skull_stripped=True)
    head = pair.array(contrast, skull_stripped=False)
    assert stripped.dtype == np.float32
    assert not np.any(stripped[~pair.brain_mask])
    np.testing.assert_array_equal(stripped[pair.brain_mask], head[pair.brain_mask])
    # The whole head has signal outside the brain: measured > 99.7 % of those voxels non-zero, mean 20 (T1w)
    # and 14 (T2w) on a 0-100 scale.
    outside = head[~pair.brain_mask]
    assert np.mean(outside > 0) > 0.9
    assert outside.mean() > 5.0


def test_unknown_contrast_is_refused(pair):
    with pytest.raises(ValueError, match=r"contrast: expected one of \('T1w', 'T2w'\), found 'PD'"):
        pair.array("PD")


# ------------------------------------------------------------------------------- BIDS
def test_write_bids_writes_the_tree(bids_root):
    written = sorted(str(p.relative_to(bids_root)) for p in bids_root.rglob("*") if p.is_file())
    expected = ["COPYING", "dataset_description.json", "dseg.tsv", "participants.tsv"]
    for session in SESSIONS:
        stem = f"{SUBJECT}/ses-{session}/anat/{SUBJECT}_ses-{session}"
        expected += [f"{stem}_{suffix}" for suffix in (
            "T1w.json", "T1w.nii.gz", "T2w.json", "T2w.nii.gz", "desc-brain_mask.nii.gz", "dseg.nii.gz",
            "label-ventricles_mask.nii.gz")]
    assert written == sorted(expected)  # nothing else: no .partial files left behind


@pytest.mark.parametrize("session", sorted(SESSIONS))
def test_written_volumes_are_the_pair(bids_root, pair, session):
    anat = bids_root / SUBJECT / f"ses-{session}" / "anat"
    stem = f"{SUBJECT}_ses-{session}"
    skull_stripped = SESSIONS[session]
    for contrast in CONTRASTS:
        image = nib.load(anat / f"{stem}_{contrast}.nii.gz")
        np.testing.assert_array_equal(image.affine, pair.affine)
        assert int(image.header["sform_code"]) == int(image.header["qform_code"]) == 1
        np.testing.assert_array_equal(np.asarray(image.dataobj), pair.array(contrast, skull_stripped))
        sidecar = json.loads((anat / f"{stem}_{contrast}.json").read_text())
        assert sidecar == {"Description": f"ICBM 2009c nonlinear symmetric {contrast} template (MNI, McGill)",
                           "SkullStripped": skull_stripped}
    for suffix, expected in (("dseg", pair.dseg), ("desc-brain_mask", pair.brain_mask),
                             ("label-ventricles_mask", pair.ventricles)):
        image = nib.load(anat / f"{stem}_{suffix}.nii.gz")
        np.testing.assert_array_equal(image.affine, pair.affine)
        np.testing.assert_array_equal(np.asarray(image.dataobj), expected.astype(np.uint8))


def test_dataset_files(bids_root):
    description = json.loads((bids_root / "dataset_description.json").read_text())
    assert description["BIDSVersion"] == "1.8.0"
    assert description["DatasetType"] == "raw"
    assert "McGill" in description["License"]
    assert (bids_root / "participants.tsv").read_text() == f"participant_id\n{SUBJECT}\n"
    assert (bids_root / "dseg.tsv").read_text() == "index\tname\n0\tbackground\n1\tCSF\n2\tGM\n3\tWM\n"
    notice = (bids_root / "COPYING").read_text()
    assert "McGill University" in notice and "Permission to use, copy, modify, and distribute" in notice


def test_written_tree_is_read_as_bids(bids_root):
    layout, sets = discover(bids_root)
    assert layout == "bids"
    assert [(s.subject, s.session) for s in sets] == [(SUBJECT, "ses-brain"), (SUBJECT, "ses-head")]
    for volume_set in sets:
        assert volume_set.a.name.endswith("_T1w.nii.gz") and volume_set.b.name.endswith("_T2w.nii.gz")
        assert volume_set.labels.name.endswith("_dseg.nii.gz")
        assert volume_set.brain_mask.name.endswith("_desc-brain_mask.nii.gz")


def test_write_bids_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "notes.txt").write_text("someone's data\n")
    with pytest.raises(ValueError) as info:
        write_bids(tmp_path)
    assert str(info.value) == f"{tmp_path}: expected an empty or new folder (or overwrite=True), found existing files"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing written
