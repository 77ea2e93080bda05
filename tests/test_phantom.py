"""The MNI152-anatomy phantom (anatomy="mni152", the default of earlier releases): files, determinism, MR contrast
facts, the head, likeness to real MRI. The real-anatomy phantom: tests/test_real_anatomy.py."""

import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from gan_mri.data import LABELS, mni_t1_correlation, simulate, simulate_subject
from gan_mri.data.calibration import TOLERANCE, calibration_table
from gan_mri.data.head import LAYERS, MENINGES_MM, MENINGES_SHARE, head_fractions, meninges_fraction
from gan_mri.data.phantom import load_templates, tissue_signal

NO_GEOMETRY = dict(deformation_mm=0.0, rotation_deg=0.0, scale_jitter=0.0, translation_mm=0.0)
NO_VARIATION = dict(NO_GEOMETRY, bias_field=0.0, noise=0.0, tissue_jitter=0.0, sequence_jitter=0.0, blur_mm=0.0)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    # skull_stripped 0.5: sub-01 has its head, sub-02 is brain-extracted (participants.tsv).
    root = tmp_path_factory.mktemp("phantom") / "bids"
    return root, simulate(2, root, seed=7, anatomy="mni152")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(path):
    return np.asarray(nib.load(path).dataobj)


def test_simulate_writes_a_bids_tree(cohort):
    root, subjects = cohort
    assert [s.name for s in subjects] == ["sub-01", "sub-02"]
    template, _, _, affine = load_templates(2)
    for subject in subjects:
        for suffix, dtype in (("T1w", np.int16), ("T2w", np.int16), ("dseg", np.uint8),
                              ("desc-brain_mask", np.uint8)):
            image = nib.load(subject / "anat" / f"{subject.name}_{suffix}.nii.gz")
            assert image.shape == template.shape
            assert image.get_data_dtype() == dtype
            np.testing.assert_array_equal(image.affine, affine)
    labels = load(subjects[0] / "anat/sub-01_dseg.nii.gz")
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(load(subjects[0] / "anat/sub-01_desc-brain_mask.nii.gz"), labels > 0)
    assert (root / "dataset_description.json").is_file()
    table = (root / "participants.tsv").read_text()
    assert table.splitlines()[0] == "participant_id\tskull_stripped"
    stripped = {line.split("\t")[0]: line.split("\t")[1] == "yes" for line in table.splitlines()[1:]}
    assert sorted(stripped) == ["sub-01", "sub-02"]
    assert stripped == {"sub-01": False, "sub-02": True}


def test_sidecars_name_each_subjects_own_protocol(cohort):
    _, subjects = cohort
    sidecars = [json.loads((s / "anat" / f"{s.name}_T1w.json").read_text()) for s in subjects]
    t2w = json.loads((subjects[0] / "anat/sub-01_T2w.json").read_text())
    assert sidecars[0]["PulseSequenceType"] == "MPRAGE"
    assert t2w["PulseSequenceType"] == "TSE"
    # Timings in seconds as BIDS writes them, jittered per subject around TR 2.3 s / TI 1.1 s.
    for sidecar in sidecars:
        assert 1.7 < sidecar["RepetitionTime"] < 3.1 and 0.8 < sidecar["InversionTime"] < 1.5
    assert sidecars[0]["RepetitionTime"] != sidecars[1]["RepetitionTime"]
    assert {s["SkullStripped"] for s in sidecars} == {True, False}


def test_skull_stripped_subjects_are_zero_outside_the_brain_and_the_others_have_a_head(cohort):
    root, subjects = cohort
    for subject in subjects:
        anat = subject / "anat"
        mask = load(anat / f"{subject.name}_desc-brain_mask.nii.gz").astype(bool)
        stripped = json.loads((anat / f"{subject.name}_T1w.json").read_text())["SkullStripped"]
        for contrast in ("T1w", "T2w"):
            data = load(anat / f"{subject.name}_{contrast}.nii.gz").astype(np.float32)
            outside = data[~mask]
            if stripped:
                assert not outside.any()
            else:
                # The scalp's fat and the diploe are bright on both contrasts: thousands of voxels
                # outside the brain as bright as its median.
                assert np.sum(outside > np.median(data[mask])) > 2000


def test_subjects_differ_and_files_are_byte_identical_per_seed(cohort, tmp_path):
    root, subjects = cohort
    again = simulate(1, tmp_path / "again", seed=7, anatomy="mni152")[0]
    for suffix in ("T1w", "T2w", "dseg", "desc-brain_mask"):
        name = f"sub-01_{suffix}.nii.gz"
        assert digest(again / "anat" / name) == digest(subjects[0] / "anat" / name)
    assert (again / "anat/sub-01_T1w.json").read_text() == (subjects[0] / "anat/sub-01_T1w.json").read_text()
    first = load(subjects[0] / "anat/sub-01_dseg.nii.gz")
    second = load(subjects[1] / "anat/sub-02_dseg.nii.gz")
    assert 0.02 < np.mean(first != second) < 0.5  # different anatomy, same kind of brain


@pytest.mark.parametrize("t1w_sequence, t2w_sequence", [("mprage", "tse"), ("se", "se")])
def test_contrast_facts_on_pure_tissue(t1w_sequence, t2w_sequence):
    volumes = simulate_subject(np.random.default_rng(3), t1w_sequence=t1w_sequence, t2w_sequence=t2w_sequence)
    labels = volumes["dseg"]
    core = {name: labels == value for name, value in LABELS.items()}
    t1, t2 = ({name: float(np.median(volumes[c][mask])) for name, mask in core.items()} for c in ("T1w", "T2w"))
    assert t1["CSF"] < t1["GM"] < t1["WM"]  # CSF darker than WM on T1w, GM between
    assert t2["WM"] < t2["GM"] < t2["CSF"]  # CSF brighter than WM on T2w, GM between


def test_mprage_has_the_strong_grey_white_contrast_of_research_t1w():
    # Noise-free, brain voxels by label: GM/WM 0.78 with MPRAGE (real ICBM 2009c: 0.79), 0.84 with
    # the lineage's spin echo.
    ratios = {}
    for name in ("mprage", "se"):
        volumes = simulate_subject(np.random.default_rng(0), t1w_sequence=name, **NO_VARIATION)
        t1w, labels = volumes["T1w"].astype(np.float32), volumes["dseg"]
        ratios[name] = t1w[labels == 2].mean() / t1w[labels == 3].mean()
    assert ratios["mprage"] < ratios["se"] - 0.03
    assert 0.70 < ratios["mprage"] < 0.85


def test_signal_equations_match_the_formulas():
    t1, t2, pd = 830.0, 80.0, 0.69
    assert tissue_signal(t1, t2, pd, "T1w-se") == pytest.approx(pd * (1 - np.exp(-500 / t1)) * np.exp(-10 / t2))
    assert tissue_signal(t1, t2, pd, "T2w-se") == pytest.approx(pd * (1 - np.exp(-4000 / t1)) * np.exp(-100 / t2))
    assert tissue_signal(t1, t2, pd, "T2w-tse") == pytest.approx(pd * (1 - np.exp(-4000 / t1)) * np.exp(-80 / t2))


def test_simulated_t1w_correlates_with_the_real_mni152_t1():
    # Measured (seeds 0-2, MPRAGE, head on): 0.983 without variation, 0.91-0.93 with bias, noise,
    # jitter and blur only, 0.70-0.74 with the default per-subject geometry (a different brain,
    # not registered).
    rng = np.random.default_rng
    assert mni_t1_correlation(simulate_subject(rng([0, 0]), **NO_VARIATION)["T1w"]) > 0.97
    assert mni_t1_correlation(simulate_subject(rng([0, 0]), **NO_GEOMETRY)["T1w"]) > 0.85
    assert mni_t1_correlation(simulate_subject(rng([0, 0]))["T1w"]) > 0.6


def test_phantom_tissue_ratios_agree_with_the_real_icbm_2009c_pair():
    # docs/phantom.md: measured errors -2 % to +6 % on T1w, -10 % to +3 % on T2w.
    table = calibration_table("mprage", "tse")
    for contrast, rows in table.items():
        for region, row in rows.items():
            assert abs(row["error"]) < TOLERANCE, (contrast, region, row)
    assert table["T2w"]["ventricles"]["real"] > 2.0 * table["T2w"]["GM"]["real"] / 1.32  # bright ventricles
    assert table["T1w"]["ventricles"]["real"] < 0.45


def sphere(radius=25, size=100):
    x, y, z = np.indices((size, size, size))
    centre = size // 2
    return (x - centre) ** 2 + (y - centre) ** 2 + (z - centre) ** 2 <= radius**2


def test_head_layers_have_their_thickness_along_a_ray():
    fractions = head_fractions(sphere(), voxel_mm=1.0)
    # Straight up from the centre (above the temporalis): each tissue's fractions add up to its
    # layers' thickness in mm.
    up = {tissue: float(fractions[tissue][50, 50, 50:].sum()) for tissue in fractions}
    expected = {}
    for _, tissue, mm in LAYERS:
        expected[tissue] = expected.get(tissue, 0.0) + mm
    assert up == pytest.approx(expected, abs=0.05)
    assert all(not values[sphere()].any() for values in fractions.values())  # nothing inside the brain
    total = sum(fractions.values())
    assert float(total.max()) <= 1.0 + 1e-5


def test_head_layer_thickness_varies_with_the_fields_and_at_the_temples():
    shape = sphere().shape
    rng = np.random.default_rng(0)
    fields = np.stack([np.full(shape, 1.0, dtype=np.float32)] * len(LAYERS))
    thick = head_fractions(sphere(), 1.0, fields, thickness_variation=0.25)
    # A unit field scales every layer by exp(0.25).
    assert float(thick["fat"][50, 50, 50:].sum()) == pytest.approx(4.0 * np.exp(0.25), abs=0.05)
    plain = head_fractions(sphere(), 1.0)
    # Left-right at mid-height (temporalis region): more muscle than straight up.
    assert float(plain["muscle"][50:, 50, 50].sum()) > float(plain["muscle"][50, 50, 50:].sum()) + 3.0
    with pytest.raises(ValueError, match=r"thickness_fields: expected shape \(7, 100, 100, 100\)"):
        head_fractions(sphere(), 1.0, rng.normal(size=(2, *shape)))
    with pytest.raises(ValueError, match="brain_mask: expected a non-empty 3D mask"):
        head_fractions(np.zeros((5, 5, 5), bool), 1.0)


def test_meninges_take_a_share_of_the_csf_at_the_brains_rim_only():
    mask = sphere()
    csf = mask.astype(np.float32)
    meninges = meninges_fraction(csf, mask, 1.0)
    # The outermost voxel's centre lies half a voxel inside the brain's edge.
    assert float(meninges[50, 50, 75]) == pytest.approx(MENINGES_SHARE * (1 - 0.5 / MENINGES_MM), abs=1e-4)
    assert not meninges[50, 50, 50:75 - int(MENINGES_MM)].any()  # deeper than MENINGES_MM: none
    assert np.all(meninges <= csf)


def test_simulate_without_a_head_and_with_the_spin_echo_t1w(tmp_path):
    subject = simulate(1, tmp_path / "bids", seed=0, head=False, t1w_sequence="se", noise=0.0, anatomy="mni152")[0]
    anat = subject / "anat"
    mask = load(anat / "sub-01_desc-brain_mask.nii.gz").astype(bool)
    t1w = load(anat / "sub-01_T1w.nii.gz").astype(np.float32)
    # No head and no noise: beyond the partial-volume and blur fringe of the brain (3 voxels), nothing.
    near = ndimage.binary_dilation(mask, iterations=3)
    assert t1w[~near].max() < 0.01 * np.median(t1w[mask])
    sidecar = json.loads((anat / "sub-01_T1w.json").read_text())
    assert sidecar["PulseSequenceType"] == "SE"


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_subjects: expected an integer >= 1, found 0"):
        simulate(0, tmp_path / "x")
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) \['noize'\]"):
        simulate(1, tmp_path / "x", noize=0.1)
    with pytest.raises(ValueError, match="resolution: expected 1 or 2"):
        simulate(1, tmp_path / "x", resolution=3)
    with pytest.raises(ValueError, match=r"skull_stripped: expected a share in \[0, 1\], found 1.5"):
        simulate(1, tmp_path / "x", skull_stripped=1.5)
    with pytest.raises(ValueError, match=r"t1w_sequence: expected one of \['mprage', 'se', 'spgr'\], found 'ir'"):
        simulate_subject(np.random.default_rng(0), t1w_sequence="ir")
    with pytest.raises(ValueError, match=r"t2w_sequence: expected one of \['tse', 'se'\], found 'flair'"):
        simulate_subject(np.random.default_rng(0), t2w_sequence="flair")
    with pytest.raises(ValueError, match="blur_mm: expected a value >= 0, found -1"):
        simulate_subject(np.random.default_rng(0), blur_mm=-1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="full: expected an empty or new folder"):
        simulate(1, tmp_path / "full")
