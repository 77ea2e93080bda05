"""Per-volume intensity standardization: landmarks, the map, the manifest, the pipelines, the model."""

import json
import shutil

import keras
import nibabel as nib
import numpy as np
import pytest

from gan_mri.baseline import IntensityRemap
from gan_mri.config import get_preset
from gan_mri.data.dataset import PreparedDataset
from gan_mri.evaluation import evaluate
from gan_mri.export import export_saved_model
from gan_mri.inference import translate_volume
from gan_mri.models import build_model
from gan_mri.standardization import LANDMARK_PERCENTILES, IntensityStandardization, landmarks

REFERENCE = {"A": np.linspace(-0.5, 0.9, len(LANDMARK_PERCENTILES)),
             "B": np.linspace(-0.6, 0.8, len(LANDMARK_PERCENTILES))}


def volume_rows(dataset, name):
    """(landmarks, start, stop) of every volume stored in array ``name``."""
    return [(np.asarray(r["landmarks"]), *r["rows"]) for r in dataset.manifest["volumes"]
            if r.get("file") == f"{name}.npy"]


def test_landmarks_are_the_percentiles_of_the_brain_voxels():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (3, 8, 8)).astype(np.float32)
    mask = np.zeros((3, 8, 8), bool)
    mask[:, 2:6, 2:6] = True
    expected = np.percentile(images[mask], LANDMARK_PERCENTILES)
    np.testing.assert_allclose(landmarks(images, mask), expected, rtol=1e-6)
    np.testing.assert_allclose(landmarks(images[..., None], mask), expected, rtol=1e-6)


def test_landmarks_refuse_an_empty_or_mismatched_mask():
    images = np.zeros((2, 4, 4), np.float32)
    with pytest.raises(ValueError, match="brain_mask: expected brain voxels"):
        landmarks(images, np.zeros((2, 4, 4), bool))
    with pytest.raises(ValueError, match=r"brain_mask: expected shape \(2, 4, 4\)"):
        landmarks(images, np.ones((2, 4, 5), bool))


def test_the_map_sends_landmarks_onto_the_reference_and_keeps_the_ends():
    standardization = IntensityStandardization(REFERENCE)
    source = np.linspace(-0.2, 0.7, len(LANDMARK_PERCENTILES))
    np.testing.assert_allclose(standardization.apply(source, "A", source), REFERENCE["A"], atol=1e-6)
    np.testing.assert_allclose(standardization.apply(source, "B", source), REFERENCE["B"], atol=1e-6)
    grid = np.linspace(-1, 1, 401, dtype=np.float32)
    mapped = standardization.apply(grid, "A", source)
    assert mapped.dtype == np.float32 and mapped.shape == grid.shape
    assert mapped[0] == -1.0 and mapped[-1] == 1.0
    assert np.all(np.diff(mapped) >= 0)
    # Values outside [-1, 1] are clipped first, as prepare clips them.
    assert standardization.apply(np.array([-3.0, 3.0]), "A", source).tolist() == [-1.0, 1.0]
    # Between two landmarks the map is linear.
    middle = (source[3] + source[4]) / 2
    assert standardization.apply(np.array([middle]), "A", source)[0] == pytest.approx(
        (REFERENCE["A"][3] + REFERENCE["A"][4]) / 2, abs=1e-6)


def test_fit_takes_the_mean_landmarks_of_each_contrast():
    marks = {"A": [REFERENCE["A"], REFERENCE["A"] - 0.1], "B": [REFERENCE["B"]]}
    fitted = IntensityStandardization.fit(marks)
    np.testing.assert_allclose(fitted.reference["A"], REFERENCE["A"] - 0.05)
    np.testing.assert_allclose(fitted.reference["B"], REFERENCE["B"])
    with pytest.raises(ValueError, match="expected training volumes of domain B, found none"):
        IntensityStandardization.fit({"A": marks["A"], "B": []})


@pytest.mark.parametrize("reference, message", [
    ({"A": REFERENCE["A"]}, r"missing \['B'\]"),
    ({"A": REFERENCE["A"][::-1], "B": REFERENCE["B"]}, "reference.A: expected non-decreasing"),
    ({"A": REFERENCE["A"], "B": REFERENCE["B"][:5]}, r"reference.B: expected 11 finite landmark intensities, found \(5,\)"),
    ({"A": REFERENCE["A"] * 2, "B": REFERENCE["B"]}, r"reference.A: expected non-decreasing landmark intensities in \[-1, 1\]"),
])
def test_a_malformed_reference_is_refused_by_name(reference, message):
    with pytest.raises(ValueError, match=message):
        IntensityStandardization(reference)


def test_apply_refuses_an_unknown_domain_and_malformed_landmarks():
    standardization = IntensityStandardization(REFERENCE)
    with pytest.raises(ValueError, match=r"domain: expected one of \['A', 'B'\], found 'C'"):
        standardization.apply(np.zeros(3), "C", REFERENCE["A"])
    with pytest.raises(ValueError, match="volume landmarks: expected 11 finite"):
        standardization.apply(np.zeros(3), "A", [0.0, np.nan] + [0.5] * 9)


def test_dict_round_trip_and_foreign_percentiles():
    standardization = IntensityStandardization(REFERENCE)
    data = json.loads(json.dumps(standardization.to_dict()))
    assert data["percentiles"] == list(LANDMARK_PERCENTILES)
    assert IntensityStandardization.from_dict(data) == standardization
    with pytest.raises(ValueError, match=r"standardization.percentiles: expected \[1.0, 10.0"):
        IntensityStandardization.from_dict({**data, "percentiles": [5, 50, 95]})
    with pytest.raises(ValueError, match='standardization: expected {"percentiles"'):
        IntensityStandardization.from_dict([1, 2])


def test_prepare_records_every_volume_s_landmarks_and_the_training_reference(tiny_dataset):
    for name in ("train_a", "train_b"):
        images, masks = tiny_dataset.array(name), tiny_dataset.array(f"{name}_mask")
        for marks, start, stop in volume_rows(tiny_dataset, name):
            np.testing.assert_allclose(marks, landmarks(images[start:stop], masks[start:stop]), rtol=1e-6)
    reference = tiny_dataset.standardization.reference
    for domain, name in (("A", "train_a"), ("B", "train_b")):
        np.testing.assert_allclose(reference[domain], np.mean([m for m, *_ in volume_rows(tiny_dataset, name)], axis=0))
    # The test volumes have landmarks of their own (each from its own image and mask).
    assert len(volume_rows(tiny_dataset, "test_a")) == len(volume_rows(tiny_dataset, "test_b")) == 1
    # T1w: white matter brightest; T2w: darker brain; the two references differ.
    assert reference["A"][5] > reference["B"][5]


def test_standardized_rows_put_each_volume_on_the_reference(tiny_dataset):
    standardization = tiny_dataset.standardization
    for name, domain in (("train_a", "A"), ("train_b", "B")):
        view = tiny_dataset.images(name, standardization)
        raw = tiny_dataset.array(name)
        masks = tiny_dataset.array(f"{name}_mask")
        assert view.shape == raw.shape and len(view) == len(raw)
        for marks, start, stop in volume_rows(tiny_dataset, name):
            rows = view[start:stop]
            np.testing.assert_array_equal(rows, standardization.apply(raw[start:stop], domain, marks))
            # Percentiles commute with a monotone map up to interpolation between voxels.
            np.testing.assert_allclose(landmarks(rows, masks[start:stop]), standardization.reference[domain],
                                       atol=0.02)
        picked = np.array([0, len(view) - 1, 1])
        np.testing.assert_array_equal(view[picked], np.stack([view[0:1][0], view[len(view) - 1:][0], view[1:2][0]]))
        np.testing.assert_array_equal(view[1], view[1:2][0])
    assert tiny_dataset.images("train_a") is tiny_dataset.array("train_a")


def test_test_batches_carry_standardized_inputs_beside_the_ground_truth(tiny_dataset):
    standardization = tiny_dataset.standardization
    batches = list(tiny_dataset.test_dataset(batch_size=8, standardization=standardization).as_numpy_iterator())
    for key, name in (("a", "test_a"), ("b", "test_b")):
        truth = np.concatenate([b[key][..., 0] for b in batches])
        inputs = np.concatenate([b[f"{key}_input"][..., 0] for b in batches])
        np.testing.assert_array_equal(truth, tiny_dataset.array(name))
        np.testing.assert_array_equal(inputs, tiny_dataset.images(name, standardization)[:])
        assert np.abs(inputs - truth).max() > 0.01
    assert "a_input" not in next(iter(tiny_dataset.test_dataset(batch_size=8).as_numpy_iterator()))


def test_the_baseline_learns_from_the_standardized_training_slices(tiny_dataset):
    standardization = tiny_dataset.standardization
    remap = IntensityRemap.from_dataset(tiny_dataset, standardization)
    images = {d: tiny_dataset.images(f"train_{d.lower()}", standardization)[:] for d in "AB"}
    masks = {d: np.asarray(tiny_dataset.array(f"train_{d.lower()}_mask")) for d in "AB"}
    assert remap.to_dict() == IntensityRemap.fit(images, masks).to_dict()
    assert remap.to_dict() != IntensityRemap.from_dataset(tiny_dataset).to_dict()


class Identity:
    """A 'model' that returns its input and records what it was given."""

    def __init__(self, image_shape=(32, 32), standardization=None):
        self.image_shape, self.channels, self.standardization = image_shape, 1, standardization
        self.seen = []

    def translate(self, x, direction):
        self.seen.append(np.asarray(x))
        return x

    def reconstruct(self, x, domain):
        return x


def test_evaluate_translates_the_standardized_input_and_scores_against_the_truth():
    rng = np.random.default_rng(1)
    truth = rng.uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32)
    batch = {"a": truth, "b": truth, "a_input": -truth, "b_input": truth, "brain_mask": np.ones((4, 16, 16), bool)}
    results = evaluate(Identity((16, 16)), [batch], structure=False)
    # A2B translated a_input (= -truth): far from the truth; B2A translated b_input (= truth): exact.
    assert results["B2A"]["ssim"] == pytest.approx(1.0)
    assert results["A2B"]["ssim"] < 0.0


def test_images_of_a_dataset_without_landmarks_say_how_to_go_on(tiny_dataset, tmp_path):
    copy = tmp_path / "old"
    shutil.copytree(tiny_dataset.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["standardization"]
    for record in manifest["volumes"]:
        record.pop("landmarks", None)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    old = PreparedDataset.open(copy)
    assert old.standardization is None
    with pytest.raises(ValueError, match=r"old: prepared without intensity landmarks .* \(--no-standardize\)"):
        old.images("train_a", tiny_dataset.standardization)


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["standardization"]["reference"].pop("B"), r"standardization: expected reference landmarks .* missing \['B'\]"),
    (lambda m: m["volumes"][0].pop("landmarks"), r"volumes\[0\].landmarks: expected 11 numbers, found"),
    (lambda m: m["volumes"][0].update(rows=[0, 10 ** 6]), r"volumes\[0\].rows: expected \[start, stop\] within"),
])
def test_a_damaged_standardization_in_the_manifest_is_named(tiny_dataset, tmp_path, edit, message):
    copy = tmp_path / "damaged"
    shutil.copytree(tiny_dataset.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=message):
        PreparedDataset.open(copy)


def tiny_model(standardization):
    model = build_model(get_preset("unit", image_shape=(32, 32), base_width=8))
    model.standardization = standardization
    return model


def test_the_model_keeps_its_standardization_in_the_keras_file_and_the_export(tiny_dataset, tmp_path):
    standardization = tiny_dataset.standardization
    model = tiny_model(standardization)
    model.save(tmp_path / "m.keras")
    assert keras.models.load_model(tmp_path / "m.keras").standardization == standardization
    plain = tiny_model(None)
    plain.save(tmp_path / "plain.keras")
    assert keras.models.load_model(tmp_path / "plain.keras").standardization is None

    export_saved_model(model, tmp_path / "export")
    info = json.loads((tmp_path / "export" / "serving_info.json").read_text())
    assert info["standardization"]["reference"]["A"] == standardization.to_dict()["reference"]["A"]
    assert "landmarks" in info["standardization"]["note"]
    export_saved_model(plain, tmp_path / "export-plain")
    assert "standardization" not in json.loads((tmp_path / "export-plain" / "serving_info.json").read_text())


def test_translate_volume_standardizes_the_volume_for_a_model_that_was_trained_so(tiny_dataset, tiny_phantom):
    # A brain-extracted subject, so that the voxels above the background are the brain.
    path = next(p for p in sorted(tiny_phantom.glob("sub-*/anat/*_T1w.nii.gz"))
                if json.loads(p.with_name(p.name.replace(".nii.gz", ".json")).read_text())["SkullStripped"])
    standardization = tiny_dataset.standardization
    standardized, plain = Identity(standardization=standardization), Identity()
    translate_volume(standardized, path, "A2B")
    translate_volume(plain, path, "A2B")
    seen, raw = np.concatenate(standardized.seen), np.concatenate(plain.seen)
    assert seen.shape == raw.shape == (nib.load(path).shape[2], 32, 32, 1)
    # The map is monotone and fixes the background; the brain's median moves onto the reference's.
    assert np.all(seen[raw == -1.0] == -1.0)
    brain = raw > -0.5
    order = np.argsort(raw[brain])
    assert np.all(np.diff(seen[brain][order]) >= -1e-6)
    assert np.median(seen[brain]) == pytest.approx(standardization.reference["A"][5], abs=0.1)
