"""Lesions: the phantom's white-matter hyperintensities, their labels through prepare, lesion fidelity."""

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from gan_mri.data.dataset import prepare
from gan_mri.data.phantom import simulate, simulate_subject
from gan_mri.lesions import lesion_fidelity


def test_lesions_are_bright_on_t2w_dark_on_t1w_and_change_nothing_else():
    plain = simulate_subject(np.random.default_rng([0, 3]), resolution=2)
    lesioned = simulate_subject(np.random.default_rng([0, 3]), resolution=2, lesions=6)
    labels = lesioned["lesions"]
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == set(range(7))
    assert (plain["dseg"][labels > 0] == 3).mean() > 0.95  # inside white matter, which the dseg keeps
    white = (plain["dseg"] == 3) & ~ndimage.binary_dilation(labels > 0, iterations=2)
    core = ndimage.binary_erosion(labels > 0)  # away from the partial-volume edge
    assert lesioned["T2w"][core].mean() > 1.3 * plain["T2w"][white].mean()
    assert lesioned["T1w"][core].mean() < 0.95 * plain["T1w"][white].mean()
    # The lesions come from a spawned generator: away from them (and the blur), the same subject.
    far = ~ndimage.binary_dilation(labels > 0, iterations=4)
    for contrast in ("T1w", "T2w"):
        np.testing.assert_array_equal(lesioned[contrast][far], plain[contrast][far])


@pytest.fixture(scope="module")
def lesion_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("lesions")
    simulate(5, root / "bids", seed=1, lesions=4, head=False)  # lesions in prepare's default test subject only
    return root


def test_lesions_go_into_the_test_subjects_only_and_through_prepare(lesion_cohort):
    files = sorted(p.name for p in (lesion_cohort / "bids").rglob("*_label-lesion_mask.nii.gz"))
    dataset = prepare(lesion_cohort / "bids", lesion_cohort / "data", image_shape=(48, 48), seed=0)
    (test_subject,) = dataset.manifest["split"]["test"]
    assert files == [f"{test_subject}_label-lesion_mask.nii.gz"]
    assert dataset.lesion_subjects == [test_subject]
    lesions = dataset.array("test_lesions")
    assert lesions.shape == dataset.array("test_a").shape and lesions.dtype == np.uint8 and lesions.max() >= 1
    assert not (lesions.astype(bool) & ~dataset.array("test_mask")).any()
    participants = (lesion_cohort / "bids" / "participants.tsv").read_text().splitlines()
    columns = participants[0].split("\t")
    assert columns == ["participant_id", "skull_stripped", "lesions", "anatomy", "field_T", "T1w", "acquisition"]
    rows = {line.split("\t")[0]: dict(zip(columns, line.split("\t"))) for line in participants[1:]}
    assert rows[test_subject]["lesions"] == "4" and rows[test_subject]["skull_stripped"] == "no"
    assert all(row["lesions"] == "0" for subject, row in rows.items() if subject != test_subject)


def test_simulate_refuses_bad_lesion_settings(tmp_path):
    with pytest.raises(ValueError, match="lesions: expected an integer >= 0, found -1"):
        simulate(2, tmp_path / "a", lesions=-1)
    with pytest.raises(ValueError, match=r"lesions_in: expected one of \('test', 'all'\), found 'train'"):
        simulate(2, tmp_path / "b", lesions=2, lesions_in="train")


def test_a_lesion_that_is_kept_lost_or_invented_is_scored_as_such():
    rng = np.random.default_rng(0)
    truth = 0.5 + rng.normal(0, 0.01, (12, 24, 24))
    lesions = np.zeros(truth.shape, dtype=np.uint8)
    lesions[5:8, 5:9, 5:9] = 1
    truth[lesions == 1] += 0.2
    white = np.ones(truth.shape, dtype=bool)

    kept = lesion_fidelity(truth, truth, lesions, white)
    assert kept["n_lesions"] == 1 and kept["mean_contrast_ratio"] == pytest.approx(1.0)
    assert kept["detected_share"] == 1.0 and kept["hallucinated_spots"] == 0

    lost = truth.copy()
    lost[lesions == 1] = 0.5
    scores = lesion_fidelity(lost, truth, lesions, white)
    assert abs(scores["mean_contrast_ratio"]) < 0.05 and scores["detected_share"] == 0.0

    invented = truth.copy()
    invented[2:4, 15:19, 15:19] += 0.2  # a lesion-like spot where the truth has none
    scores = lesion_fidelity(invented, truth, lesions, white)
    assert scores["hallucinated_spots"] == 1 and scores["spots_translation"] == 1 and scores["spots_truth"] == 0


def test_evaluation_reports_lesion_fidelity_and_close_ups(lesion_cohort, tmp_path):
    from gan_mri.config import get_preset
    from gan_mri.models import build_model
    from gan_mri.report import evaluate_to_folder

    dataset = prepare(lesion_cohort / "bids", tmp_path / "data", image_shape=(48, 48), seed=0)
    model = build_model(get_preset("unit", image_shape=(48, 48), base_width=4, encoder_res_blocks=0,
                                   generator_res_blocks=0))
    evaluate_to_folder(model, dataset, tmp_path / "evaluation", real=False)
    volumes = json.loads((tmp_path / "evaluation" / "volumes.json").read_text())
    for direction in ("A2B", "B2A"):
        pooled = volumes[direction]["lesions"]["all"]
        assert pooled["n_lesions"] >= 1 and pooled["spots_translation"] >= 0
        (subject,) = volumes[direction]["lesions"]["subjects"]
        record = volumes[direction]["lesions"]["subjects"][subject]["lesions"][0]
        assert {"contrast_truth", "contrast_translation", "detectable_truth", "detectable_translation"} <= set(record)
    assert (tmp_path / "evaluation" / "lesion_closeups.png").stat().st_size > 3000


@pytest.fixture(scope="module")
def tiny_unit():
    from gan_mri.config import get_preset
    from gan_mri.models import build_model

    return build_model(get_preset("unit", image_shape=(48, 48), base_width=4, encoder_res_blocks=0,
                                  generator_res_blocks=0))


@pytest.mark.parametrize("method", ["cycle", "latent", "flip"])
def test_uncertainty_maps_have_the_slices_shape_and_are_reproducible(tiny_unit, method):
    from gan_mri.confidence import uncertainty_map

    slices = np.random.default_rng(0).uniform(-1, 1, (3, 48, 48, 1)).astype(np.float32)
    first = uncertainty_map(tiny_unit, slices, "T1->T2", method)
    assert first.shape == (3, 48, 48) and first.dtype == np.float32 and (first >= 0).all() and first.max() > 0
    np.testing.assert_array_equal(first, uncertainty_map(tiny_unit, slices, "A2B", method))


def test_latent_uncertainty_of_a_slice_does_not_depend_on_its_batch(tiny_unit):
    from gan_mri.confidence import uncertainty_map

    slices = np.random.default_rng(0).uniform(-1, 1, (3, 48, 48, 1)).astype(np.float32)
    together = uncertainty_map(tiny_unit, slices, "A2B", "latent")
    one_by_one = uncertainty_map(tiny_unit, slices, "A2B", "latent", batch_size=1)
    np.testing.assert_allclose(one_by_one, together, rtol=1e-5, atol=1e-6)
    assert np.abs(uncertainty_map(tiny_unit, slices, "A2B", "latent", seed=1) - together).max() > 1e-4


def test_uncertainty_map_refuses_an_unknown_method_and_latent_without_a_latent_space():
    from gan_mri.config import get_preset
    from gan_mri.confidence import default_method, uncertainty_map
    from gan_mri.models import build_model

    cyclegan = build_model(get_preset("cyclegan", image_shape=(32, 32), base_width=4))
    slices = np.zeros((1, 32, 32, 1), dtype=np.float32)
    assert default_method(cyclegan) == "cycle"
    with pytest.raises(ValueError, match=r"method 'latent': CycleGAN has no latent space"):
        uncertainty_map(cyclegan, slices, "A2B", "latent")
    with pytest.raises(ValueError, match=r"method: expected one of \('cycle', 'latent', 'flip'\), found 'mc'"):
        uncertainty_map(cyclegan, slices, "A2B", "mc")


def test_translate_writes_the_uncertainty_map_beside_the_translation(lesion_cohort, tiny_unit, tmp_path):
    from gan_mri.inference import translate_path

    t1w = lesion_cohort / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    written = translate_path(tiny_unit, t1w, tmp_path / "out" / "t2w.nii.gz", "A2B", confidence="default")
    assert [p.name for p in written] == ["t2w.nii.gz", "t2w_uncertainty.nii.gz"]
    source, spread = nib.load(t1w), nib.load(written[1])
    assert spread.shape == source.shape and np.allclose(spread.affine, source.affine)
    values = np.asarray(spread.dataobj)
    assert values.min() >= 0 and values.max() > 0
    with pytest.raises(ValueError, match="t2w_uncertainty.nii.gz already exists"):
        (tmp_path / "out" / "t2w.nii.gz").unlink()
        translate_path(tiny_unit, t1w, tmp_path / "out" / "t2w.nii.gz", "A2B", confidence="cycle")
