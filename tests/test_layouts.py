"""Layout discovery (BIDS, HCP, IXI, BraTS, globs, PNG) and the subject-level split."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from gan_mri.data import detect_layout, discover, split_subjects, write_png_slices
from gan_mri.data.layouts import glob_subject_id


def write_volume(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).integers(1, 100, size=(6, 7, 5)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def names(sets):
    return [(s.name, s.a.name if s.a else None, s.b.name if s.b else None) for s in sets]


def test_bids_with_and_without_sessions_and_labels(tmp_path):
    write_volume(tmp_path / "sub-01/anat/sub-01_T1w.nii.gz")
    write_volume(tmp_path / "sub-01/anat/sub-01_T2w.nii.gz")
    write_volume(tmp_path / "sub-01/anat/sub-01_dseg.nii.gz")
    write_volume(tmp_path / "sub-02/ses-1/anat/sub-02_ses-1_T1w.nii")
    write_volume(tmp_path / "sub-02/ses-2/anat/sub-02_ses-2_T2w.nii.gz")
    write_volume(tmp_path / "sub-03/func/sub-03_bold.nii.gz")  # not anatomical: ignored
    layout, sets = discover(tmp_path)
    assert layout == "bids"
    assert names(sets) == [
        ("sub-01", "sub-01_T1w.nii.gz", "sub-01_T2w.nii.gz"),
        ("sub-02_ses-1", "sub-02_ses-1_T1w.nii", None),
        ("sub-02_ses-2", None, "sub-02_ses-2_T2w.nii.gz"),
    ]
    assert sets[0].labels.name == "sub-01_dseg.nii.gz" and sets[1].labels is None
    assert [s.subject for s in sets] == ["sub-01", "sub-02", "sub-02"]
    assert [s.session for s in sets] == [None, "ses-1", "ses-2"]


def test_hcp(tmp_path):
    for subject in ("100307", "100408"):
        write_volume(tmp_path / subject / "T1w/T1w_acpc_dc_restore_brain.nii.gz")
    write_volume(tmp_path / "100307/T1w/T2w_acpc_dc_restore_brain.nii.gz")
    write_volume(tmp_path / "100408/T2w/T2w_acpc_dc_restore_brain.nii.gz")
    assert detect_layout(tmp_path) == "hcp"
    layout, sets = discover(tmp_path, layout="hcp")
    assert layout == "hcp"
    assert [(s.name, s.a.parent.name, s.b.parent.name) for s in sets] == [
        ("100307", "T1w", "T1w"), ("100408", "T1w", "T2w")]


def test_ixi(tmp_path):
    write_volume(tmp_path / "IXI-T1/IXI002-Guys-0828-T1.nii.gz")
    write_volume(tmp_path / "IXI-T2/IXI002-Guys-0828-T2.nii.gz")
    write_volume(tmp_path / "IXI-T1/IXI012-HH-1211-T1.nii.gz")
    write_volume(tmp_path / "IXI-T1/IXI012-HH-1211-PD.nii.gz")  # other contrasts are ignored
    layout, sets = discover(tmp_path)
    assert layout == "ixi"
    assert names(sets) == [
        ("IXI002-Guys-0828", "IXI002-Guys-0828-T1.nii.gz", "IXI002-Guys-0828-T2.nii.gz"),
        ("IXI012-HH-1211", "IXI012-HH-1211-T1.nii.gz", None),
    ]


def test_brats_2020_and_2023_names(tmp_path):
    for modality in ("t1", "t2", "t1ce", "flair", "seg"):
        write_volume(tmp_path / f"BraTS20_Training_001/BraTS20_Training_001_{modality}.nii.gz")
    write_volume(tmp_path / "BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz")
    write_volume(tmp_path / "BraTS-GLI-00000-000/BraTS-GLI-00000-000-t2w.nii.gz")
    layout, sets = discover(tmp_path)
    assert layout == "brats"
    assert names(sets) == [
        ("BraTS-GLI-00000-000", "BraTS-GLI-00000-000-t1n.nii.gz", "BraTS-GLI-00000-000-t2w.nii.gz"),
        ("BraTS20_Training_001", "BraTS20_Training_001_t1.nii.gz", "BraTS20_Training_001_t2.nii.gz"),
    ]


def test_explicit_globs_pair_by_name_without_contrast_token(tmp_path):
    write_volume(tmp_path / "t1/case7_T1w.nii.gz")
    write_volume(tmp_path / "t1/case8_T1w.nii.gz")
    write_volume(tmp_path / "t2/case7-T2.nii.gz")
    layout, sets = discover(tmp_path, a_glob="t1/*.nii.gz", b_glob=str(tmp_path / "t2/*.nii.gz"))
    assert layout == "glob"
    assert names(sets) == [("case7", "case7_T1w.nii.gz", "case7-T2.nii.gz"), ("case8", "case8_T1w.nii.gz", None)]
    assert glob_subject_id(Path("x/sub7_t1.nii")) == "sub7"
    assert glob_subject_id(Path("brain.nii.gz")) == "brain"


def test_png_folders_are_detected(tmp_path):
    write_png_slices(np.zeros((1, 8, 8)), tmp_path / "trainA")
    assert detect_layout(tmp_path) == "png"
    with pytest.raises(ValueError, match="png layout holds images"):
        discover(tmp_path, layout="png")


def test_layout_that_matches_nothing_names_folder_and_pattern(tmp_path):
    write_volume(tmp_path / "sub-01/anat/sub-01_T1w.nii.gz")
    with pytest.raises(ValueError, match=r"layout 'hcp' expected files matching \*/T1w/T1w_acpc"):
        discover(tmp_path, layout="hcp")
    with pytest.raises(ValueError, match="layout: expected one of"):
        discover(tmp_path, layout="nifti")


def test_split_is_by_subject_disjoint_and_seeded():
    subjects = [f"sub-{i:02d}" for i in range(20)] * 2  # two sessions each
    train, test = split_subjects(subjects, 0.25, seed=3)
    assert len(test) == 5 and len(train) == 15
    assert not set(train) & set(test) and set(train) | set(test) == set(subjects)
    assert split_subjects(subjects, 0.25, seed=3) == (train, test)
    assert split_subjects(subjects, 0.25, seed=4)[1] != test


def test_split_draws_test_subjects_only_from_pairable_ones():
    subjects = ["a", "b", "c", "d"]
    for seed in range(5):
        train, test = split_subjects(subjects, 0.5, seed=seed, pairable=["c"])
        assert test == ["c"] and train == ["a", "b", "d"]
    assert split_subjects(subjects, 0.0, seed=0) == (subjects, [])
    # 1.0: a test-only dataset, every pairable subject tested, the others left to train on.
    assert split_subjects(subjects, 1.0, seed=0, pairable=["b", "c"]) == (["a", "d"], ["b", "c"])
    with pytest.raises(ValueError, match="test_fraction=1.0: expected subjects with both T1w and T2w, found none of 4"):
        split_subjects(subjects, 1.0, seed=0, pairable=[])
    with pytest.raises(ValueError, match="test_fraction: expected a value in"):
        split_subjects(subjects, 1.5, seed=0)
    with pytest.raises(ValueError, match="found 1 subjects"):
        split_subjects(["a"], 0.5, seed=0)


# ------------------------------------------------------------------ lesion labels by glob, every layout
@pytest.mark.parametrize("layout, volumes, lesion_glob, lesion_files, expected", [
    ("glob", ["flat/case7_T1w.nii.gz", "flat/case7_T2w.nii.gz", "flat/case8_T1w.nii.gz", "flat/case8_T2w.nii.gz"],
     "masks/*.nii.gz",
     ["masks/case7_T1w_lesion.nii.gz", "masks/case8_label-lesion_mask.nii.gz"],
     {"case7": "case7_T1w_lesion.nii.gz", "case8": "case8_label-lesion_mask.nii.gz"}),
    ("ixi", ["IXI-T1/IXI002-Guys-0828-T1.nii.gz", "IXI-T2/IXI002-Guys-0828-T2.nii.gz",
             "IXI-T1/IXI012-HH-1211-T1.nii.gz", "IXI-T2/IXI012-HH-1211-T2.nii.gz"], "lesions/*",
     ["lesions/IXI012-HH-1211-lesion.nii.gz"], {"IXI012-HH-1211": "IXI012-HH-1211-lesion.nii.gz"}),
    ("hcp", ["100307/T1w/T1w_acpc_dc_restore_brain.nii.gz", "100307/T1w/T2w_acpc_dc_restore_brain.nii.gz",
             "100408/T1w/T1w_acpc_dc_restore_brain.nii.gz", "100408/T1w/T2w_acpc_dc_restore_brain.nii.gz"],
     "*/T1w/*lesion*",
     ["100307/T1w/lesion_mask.nii.gz", "100408/T1w/100408_lesion.nii.gz"],  # a bare name goes by its folder
     {"100307": "lesion_mask.nii.gz", "100408": "100408_lesion.nii.gz"}),
    ("brats", ["BraTS20_Training_001/BraTS20_Training_001_t1.nii.gz",
               "BraTS20_Training_001/BraTS20_Training_001_t2.nii.gz",
               "BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz",
               "BraTS-GLI-00000-000/BraTS-GLI-00000-000-t2w.nii.gz"], "**/*seg.nii.gz",
     ["BraTS20_Training_001/BraTS20_Training_001_seg.nii.gz", "BraTS-GLI-00000-000/BraTS-GLI-00000-000-seg.nii.gz"],
     {"BraTS20_Training_001": "BraTS20_Training_001_seg.nii.gz",
      "BraTS-GLI-00000-000": "BraTS-GLI-00000-000-seg.nii.gz"}),
    ("bids", ["sub-01/anat/sub-01_T1w.nii.gz", "sub-01/anat/sub-01_T2w.nii.gz",
              "sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz", "sub-02/ses-1/anat/sub-02_ses-1_T2w.nii.gz"],
     "derivatives/*",
     ["derivatives/sub-02_ses-1_space-T1w_label-lesion_roi.nii.gz"],  # BIDS entities between subject and label
     {"sub-02_ses-1": "sub-02_ses-1_space-T1w_label-lesion_roi.nii.gz"}),
])
def test_lesion_glob_gives_each_layout_its_lesion_labels_by_subject(tmp_path, layout, volumes, lesion_glob,
                                                                    lesion_files, expected):
    for seed, path in enumerate(volumes + lesion_files):
        write_volume(tmp_path / path, seed)
    globs = {"a_glob": "flat/*_T1w.nii.gz", "b_glob": "flat/*_T2w.nii.gz"} if layout == "glob" else {}
    found_layout, sets = discover(tmp_path, layout=layout, lesion_glob=lesion_glob, **globs)
    assert found_layout == layout
    assert {s.name: s.lesions.name for s in sets if s.lesions is not None} == expected
    assert len(sets) == 2  # a subject without a lesion file is still there, with lesions None


def test_lesion_glob_replaces_the_bids_lesion_files_and_may_be_absolute(tmp_path):
    for contrast in ("T1w", "T2w", "label-lesion_mask"):
        write_volume(tmp_path / f"bids/sub-01/anat/sub-01_{contrast}.nii.gz")
    assert discover(tmp_path / "bids")[1][0].lesions.name == "sub-01_label-lesion_mask.nii.gz"
    override = write_volume(tmp_path / "rater2/sub-01_lesion.nii.gz")
    (volume_set,) = discover(tmp_path / "bids", lesion_glob=str(tmp_path / "rater2" / "*.nii.gz"))[1]
    assert volume_set.lesions == override


def test_lesion_glob_errors_name_the_file_and_what_is_wrong(tmp_path):
    for name in ("case7_T1w", "case7_T2w", "case8_T1w", "case8_T2w"):
        write_volume(tmp_path / f"flat/{name}.nii.gz")
    globs = {"a_glob": "flat/*_T1w.nii.gz", "b_glob": "flat/*_T2w.nii.gz"}
    with pytest.raises(ValueError, match=r"lesion_glob: the glob '.*/nowhere/\*.nii.gz' matched no files"):
        discover(tmp_path, **globs, lesion_glob="nowhere/*.nii.gz")

    write_volume(tmp_path / "masks/case9_lesion.nii.gz")
    with pytest.raises(ValueError, match=r"masks/case9_lesion.nii.gz matches no subject; subjects are case7, case8 "):
        discover(tmp_path, **globs, lesion_glob="masks/*.nii.gz")

    (tmp_path / "masks/case9_lesion.nii.gz").unlink()
    write_volume(tmp_path / "masks/case7_lesion.nii.gz")
    write_volume(tmp_path / "masks/case7_seg.nii.gz")
    with pytest.raises(ValueError, match=r"masks/case7_lesion.nii.gz and .*masks/case7_seg.nii.gz both match subject "
                                         r"case7; expected one lesion label file per subject"):
        discover(tmp_path, **globs, lesion_glob="masks/*.nii.gz")

    # A glob so wide that it takes the images is told so, not read as two lesion files per subject.
    with pytest.raises(ValueError, match=r"flat/case7_T1w.nii.gz is the T1w volume of subject case7; expected "
                                         r"lesion label volumes"):
        discover(tmp_path, **globs, lesion_glob="flat/*.nii.gz")
