"""The MNI152 brain phantom: files, determinism, MR contrast facts, likeness to the real template."""

import hashlib

import nibabel as nib
import numpy as np
import pytest

from gan_mri.data import LABELS, mni_t1_correlation, simulate, simulate_subject
from gan_mri.data.phantom import load_templates, tissue_signal

NO_GEOMETRY = dict(deformation_mm=0.0, rotation_deg=0.0, scale_jitter=0.0, translation_mm=0.0)
NO_VARIATION = dict(NO_GEOMETRY, bias_field=0.0, noise=0.0, tissue_jitter=0.0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom") / "bids"
    return root, simulate(2, root, seed=7)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_simulate_writes_a_bids_tree(cohort):
    root, subjects = cohort
    assert [s.name for s in subjects] == ["sub-01", "sub-02"]
    template, _, _, affine = load_templates(2)
    for subject in subjects:
        for suffix, dtype in (("T1w", np.int16), ("T2w", np.int16), ("dseg", np.uint8)):
            image = nib.load(subject / "anat" / f"{subject.name}_{suffix}.nii.gz")
            assert image.shape == template.shape
            assert image.get_data_dtype() == dtype
            np.testing.assert_array_equal(image.affine, affine)
    labels = np.asarray(nib.load(subjects[0] / "anat/sub-01_dseg.nii.gz").dataobj)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    assert (root / "dataset_description.json").is_file()
    assert (root / "participants.tsv").read_text() == "participant_id\nsub-01\nsub-02\n"


def test_subjects_differ_and_files_are_byte_identical_per_seed(cohort, tmp_path):
    root, subjects = cohort
    again = simulate(1, tmp_path / "again", seed=7)[0]
    for suffix in ("T1w", "T2w", "dseg"):
        name = f"sub-01_{suffix}.nii.gz"
        assert digest(again / "anat" / name) == digest(subjects[0] / "anat" / name)
    first = np.asarray(nib.load(subjects[0] / "anat/sub-01_dseg.nii.gz").dataobj)
    second = np.asarray(nib.load(subjects[1] / "anat/sub-02_dseg.nii.gz").dataobj)
    assert 0.02 < np.mean(first != second) < 0.5  # different anatomy, same kind of brain


def test_contrast_facts_on_pure_tissue(cohort):
    _, subjects = cohort
    anat = subjects[0] / "anat"
    labels = np.asarray(nib.load(anat / "sub-01_dseg.nii.gz").dataobj)
    core = {name: labels == value for name, value in LABELS.items()}
    medians = {}
    for contrast in ("T1w", "T2w"):
        data = np.asarray(nib.load(anat / f"sub-01_{contrast}.nii.gz").dataobj, dtype=np.float32)
        medians[contrast] = {name: float(np.median(data[mask])) for name, mask in core.items()}
    t1, t2 = medians["T1w"], medians["T2w"]
    assert t1["background"] < t1["CSF"] < t1["GM"] < t1["WM"]  # CSF darker than WM on T1w, GM between
    assert t2["WM"] < t2["GM"] < t2["CSF"]  # CSF brighter than WM on T2w, GM between
    assert t2["background"] < 0.1 * t2["CSF"]


def test_signal_equations_match_the_formulas():
    t1, t2, pd = 830.0, 80.0, 0.69
    assert tissue_signal(t1, t2, pd, "T1w-se") == pytest.approx(pd * (1 - np.exp(-500 / t1)) * np.exp(-10 / t2))
    assert tissue_signal(t1, t2, pd, "T2w") == pytest.approx(pd * (1 - np.exp(-4000 / t1)) * np.exp(-100 / t2))
    ir = pd * abs(1 - 2 * np.exp(-900 / t1) + np.exp(-2300 / t1)) * np.exp(-3 / t2)
    assert tissue_signal(t1, t2, pd, "T1w-ir") == pytest.approx(ir)


def test_simulated_t1w_correlates_with_the_real_mni152_t1():
    # Measured (seeds 0-3): 0.985 without variation, 0.74-0.93 with bias/noise/jitter only,
    # 0.49-0.68 with the default per-subject geometry (a different brain, not registered).
    rng = np.random.default_rng
    assert mni_t1_correlation(simulate_subject(rng([0, 0]), **NO_VARIATION)["T1w"]) > 0.97
    assert mni_t1_correlation(simulate_subject(rng([0, 0]), **NO_GEOMETRY)["T1w"]) > 0.7
    assert mni_t1_correlation(simulate_subject(rng([0, 0]))["T1w"]) > 0.45


def test_inversion_recovery_t1w_keeps_the_contrast_order():
    volumes = simulate_subject(np.random.default_rng(1), t1w_sequence="ir", **NO_VARIATION)
    t1w, labels = volumes["T1w"].astype(np.float32), volumes["dseg"]
    means = [t1w[labels == value].mean() for value in (1, 2, 3)]
    assert means[0] < means[1] < means[2]
    assert mni_t1_correlation(t1w) > 0.9


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_subjects: expected an integer >= 1, found 0"):
        simulate(0, tmp_path / "x")
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) \['noize'\]"):
        simulate(1, tmp_path / "x", noize=0.1)
    with pytest.raises(ValueError, match="resolution: expected 1 or 2"):
        simulate(1, tmp_path / "x", resolution=3)
    with pytest.raises(ValueError, match="t1w_sequence: expected 'se' or 'ir'"):
        simulate_subject(np.random.default_rng(0), t1w_sequence="mprage")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="full: expected an empty or new folder"):
        simulate(1, tmp_path / "full")
