"""Tests for gan_mri.evaluation and gan_mri.results: evaluate(), results files, the per-epoch callback, Table 7(b).

A stand-in Keras model (intensity inversion inside the head is an exact T1w <-> T2w
translation for the synthetic tissue layout below) keeps these tests fast and exact.
"""

import csv
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_mri import evaluation, metrics
from gan_mri.results import save_results, ssim_table, write_ssim_table

# Tissue intensities in [0, 1]; T2w = 1 - T1w inside the head, so inverting is exact.
T1_INTENSITY = {1: 0.2, 2: 0.5, 3: 0.8}
SIZE = 32


def tissue_labels(radii):
    rows, cols = np.mgrid[:SIZE, :SIZE]
    radius = np.hypot(rows - 15.5, cols - 16.5)
    labels = np.zeros((SIZE, SIZE), dtype=np.int32)
    for label, limit in zip((1, 2, 3), radii[::-1]):
        labels[radius < limit] = label
    return labels


def paired_arrays(n_slices=6):
    """Paired T1w/T2w slices in [-1, 1] with brain masks and tissue labels."""
    labels = np.stack([tissue_labels((5 + i % 3, 9 + i % 2, 12 + i % 3)) for i in range(n_slices)])
    t1 = np.zeros(labels.shape, np.float32)
    for label, value in T1_INTENSITY.items():
        t1[labels == label] = value
    t2 = np.where(labels > 0, 1.0 - t1, 0.0).astype(np.float32)
    return {
        "a": (2 * t1 - 1)[..., None],
        "b": (2 * t2 - 1)[..., None],
        "brain_mask": labels > 0,
        "subject": np.array([f"sub-{i // 3:02d}" for i in range(n_slices)]),
        "slice": np.arange(n_slices, dtype=np.int32),
        "labels": labels,
    }


def paired_dataset(n_slices=6, batch_size=2, with_labels=True):
    arrays = paired_arrays(n_slices)
    if not with_labels:
        arrays.pop("labels")
    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size)


class InvertingModel(keras.Model):
    """Stand-in for UNIT: translation = intensity inversion inside the head, times ``gain``.

    ``shift`` rolls the translation by that many pixels, to perturb the anatomy.
    """

    def __init__(self, gain=1.0, shift=0):
        super().__init__()
        self.gain = self.add_weight(shape=(), initializer=keras.initializers.Constant(gain), name="gain")
        self.shift = shift

    def call(self, x):
        return x * self.gain

    def translate(self, x, direction):
        x = keras.ops.convert_to_tensor(x, "float32")
        translated = keras.ops.where(x > -0.999, -x * self.gain, -1.0)
        return keras.ops.roll(translated, self.shift, axis=2) if self.shift else translated

    def reconstruct(self, x, domain):
        return self(keras.ops.convert_to_tensor(x, "float32"))

    def train_step(self, data):
        x_a, x_b = data
        loss = keras.ops.mean(keras.ops.abs(self.translate(x_a, "A2B") - x_b))
        return {"g_loss": loss, "d_loss": 0.5 * loss}


def test_evaluate_perfect_translation_scores_perfectly():
    results = evaluation.evaluate(InvertingModel(), paired_dataset())
    assert sorted(results) == ["A2B", "B2A"]
    for values in results.values():
        assert values["ssim"] == pytest.approx(1.0, abs=1e-9)
        assert values["ssim_brain"] == pytest.approx(1.0, abs=1e-9)
        assert values["psnr"] == pytest.approx(100.0) and values["psnr_brain"] == pytest.approx(100.0)
        assert values["mae"] == 0.0 and values["mae_brain"] == 0.0
        assert values["recon_ssim"] == pytest.approx(1.0) and values["recon_mae"] == 0.0
        for tissue in ("csf", "gm", "wm"):
            assert values[f"dice_{tissue}"] == 1.0
            assert values[f"label_dice_{tissue}"] == 1.0
        assert values["n_slices"] == 6


def test_evaluate_intensity_error_keeps_structure_and_matches_numpy():
    arrays = paired_arrays()
    results = evaluation.evaluate(InvertingModel(gain=0.8), paired_dataset(), directions=("A2B",))
    assert list(results) == ["A2B"]
    values = results["A2B"]
    # In [0, 1], |(-0.8 a + 1)/2 - (-a + 1)/2| = 0.1 |a| inside the head, 0 outside.
    error = np.where(arrays["brain_mask"], 0.1 * np.abs(arrays["a"][..., 0]), 0.0)
    assert values["mae"] == pytest.approx(error.mean(axis=(1, 2)).mean(), rel=1e-5)
    assert values["mae_brain"] == pytest.approx(
        np.mean([e[m].mean() for e, m in zip(error, arrays["brain_mask"])]), rel=1e-5
    )
    assert 0.5 < values["ssim"] < 0.999 and values["psnr"] < 40
    # Scaling keeps the tissue order, so the structure scores stay perfect.
    assert values["dice_gm"] == 1.0 and values["label_dice_wm"] == 1.0


def test_evaluate_shifted_anatomy_lowers_dice_and_respects_max_batches():
    results = evaluation.evaluate(InvertingModel(shift=2), paired_dataset(), max_batches=2, reconstruction=False)
    for values in results.values():
        assert values["n_slices"] == 4
        assert 0.0 < values["dice_gm"] < 0.8 and values["dice_wm"] < 0.95
        assert values["label_dice_gm"] == pytest.approx(values["dice_gm"])
        assert "recon_ssim" not in values


def test_evaluate_accepts_numpy_batches_without_labels():
    arrays = paired_arrays(4)
    arrays.pop("labels")
    batches = [{key: value[i : i + 2] for key, value in arrays.items()} for i in (0, 2)]
    results = evaluation.evaluate(InvertingModel(), batches, structure=False)
    assert results["B2A"]["ssim"] == pytest.approx(1.0) and results["B2A"]["n_slices"] == 4
    assert "dice_csf" not in results["B2A"] and "label_dice_csf" not in results["B2A"]
    with_structure = evaluation.evaluate(InvertingModel(), batches)
    assert with_structure["A2B"]["dice_wm"] == 1.0 and "label_dice_wm" not in with_structure["A2B"]


def test_evaluate_bad_input_raises_clear_errors():
    model = InvertingModel()
    with pytest.raises(ValueError, match=r"directions: expected a non-empty subset of \('A2B', 'B2A'\), found \('a2b',\)"):
        evaluation.evaluate(model, paired_dataset(), directions=("a2b",))
    batch = paired_arrays(2)
    batch.pop("brain_mask")
    with pytest.raises(ValueError, match=r"test_dataset: expected keys .* missing \['brain_mask'\]"):
        evaluation.evaluate(model, [batch])
    with pytest.raises(ValueError, match=r"test_dataset: expected at least one batch, found none"):
        evaluation.evaluate(model, [])
    with pytest.raises(ValueError, match=r"test_dataset: expected dict batches"):
        evaluation.evaluate(model, [(batch["a"], batch["b"])])

    class CroppingModel(InvertingModel):
        def translate(self, x, direction):
            return super().translate(x, direction)[:, 1:]

    with pytest.raises(ValueError, match=r"model.translate\(A2B\): expected output shape \(2, 32, 32, 1\), found \(2, 31, 32, 1\)"):
        evaluation.evaluate(CroppingModel(), paired_dataset())


def test_save_results_json_and_csv(tmp_path):
    results = {"A2B": {"ssim": 0.5, "mae": 0.25, "dice_gm": math.nan, "n_slices": 3}, "B2A": {"ssim": 0.75, "mae": 0.125, "dice_gm": 0.5, "n_slices": 3}}
    json_path = save_results(results, tmp_path / "out" / "metrics.json", epoch=7)
    loaded = json.loads(json_path.read_text())
    assert loaded["A2B"] == {"ssim": 0.5, "mae": 0.25, "dice_gm": None, "n_slices": 3, "epoch": 7}
    csv_path = save_results(results, tmp_path / "metrics.csv")
    with csv_path.open() as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["direction", "ssim", "mae", "dice_gm", "n_slices"]
    assert rows[1] == {"direction": "B2A", "ssim": "0.75", "mae": "0.125", "dice_gm": "0.5", "n_slices": "3"}
    assert rows[0]["dice_gm"] == "nan"
    with pytest.raises(ValueError, match=r"path: expected a file ending in .json or .csv, found '.*metrics.txt'"):
        save_results(results, tmp_path / "metrics.txt")


def test_translation_examples_are_evenly_spaced_in_unit_range_with_requested_count():
    examples = evaluation.translation_examples(InvertingModel(), paired_dataset(batch_size=2), n_examples=3)
    # 6 slices, 3 examples: the inner points of linspace(0, 5, 5), i.e. slices 1, 2 and 4.
    arrays = {key: value[[1, 2, 4]] for key, value in paired_arrays(6).items()}
    for direction, source, target in (("A2B", "a", "b"), ("B2A", "b", "a")):
        images = examples[direction]
        assert sorted(images) == ["input", "reconstruction", "translation", "truth"]
        assert images["translation"].shape == (3, SIZE, SIZE, 1)
        np.testing.assert_allclose(images["input"], (arrays[source] + 1) / 2, atol=1e-6)
        np.testing.assert_allclose(images["translation"], images["truth"], atol=1e-6)
        np.testing.assert_allclose(images["truth"], (arrays[target] + 1) / 2, atol=1e-6)
    with pytest.raises(ValueError, match=r"n_examples: expected >= 1, found 0"):
        evaluation.translation_examples(InvertingModel(), paired_dataset(), n_examples=0)


def test_ssim_table_maps_t1_to_b2a_and_t2_to_a2b(tmp_path):
    rows = [
        {"epoch": 25, "direction": "A2B", "ssim": 0.6834, "ssim_brain": 0.6},
        {"epoch": 25, "direction": "B2A", "ssim": 0.7443, "ssim_brain": 0.7},
        {"epoch": 1, "direction": "A2B", "ssim": 0.1, "ssim_brain": 0.2},
    ]
    table = ssim_table(rows)
    assert [line["Epoch"] for line in table] == [1, 25]
    assert table[1]["SSIM T1"] == 0.7443 and table[1]["SSIM T2"] == 0.6834
    assert math.isnan(table[0]["SSIM T1"])
    csv_path, md_path = write_ssim_table(rows, tmp_path)
    assert csv_path.read_text().splitlines()[2] == "25,0.7443,0.6834,0.7000,0.6000"
    markdown = md_path.read_text().splitlines()
    assert markdown[0] == "| Epoch | SSIM T1 | SSIM T2 | SSIM T1 brain | SSIM T2 brain |"
    assert markdown[3] == "| 25 | 0.7443 | 0.6834 | 0.7000 | 0.6000 |"
    with pytest.raises(ValueError, match=r"rows: expected a 'ssim' column"):
        ssim_table([{"epoch": 1, "direction": "A2B", "mae": 0.1}])


def read_csv(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def test_callback_evaluates_chosen_epochs_logs_and_resumes(tmp_path):
    model = InvertingModel(gain=0.9)
    model.compile()
    x = paired_arrays(4)
    train = tf.data.Dataset.from_tensor_slices((x["a"], x["b"])).batch(2)
    callback = evaluation.EvaluationCallback(paired_dataset(4), epochs=[1], out_dir=tmp_path, save_figures=False)
    history = model.fit(train, epochs=3, verbose=0, shuffle=False, callbacks=[callback, keras.callbacks.CSVLogger(str(tmp_path / "history.csv"))])

    rows = read_csv(tmp_path / "metrics.csv")
    assert [(r["epoch"], r["direction"]) for r in rows] == [("1", "A2B"), ("1", "B2A"), ("3", "A2B"), ("3", "B2A")]
    expected = evaluation.evaluate(model, paired_dataset(4))
    assert float(rows[2]["ssim"]) == pytest.approx(expected["A2B"]["ssim"], abs=1e-5)
    # History sees the metrics at evaluated epochs and NaN in between; CSVLogger gets the column.
    logged = history.history["val_ssim_a2b"]
    assert logged[0] == pytest.approx(expected["A2B"]["ssim"], abs=1e-5) and math.isnan(logged[1])
    assert sorted(history.history) == sorted(
        ["g_loss", "d_loss"] + [f"val_{m}_{d}" for m in evaluation.DEFAULT_LOG_METRICS for d in ("a2b", "b2a")]
    )
    logger_rows = read_csv(tmp_path / "history.csv")
    assert float(logger_rows[2]["val_ssim_brain_b2a"]) == pytest.approx(expected["B2A"]["ssim_brain"], abs=1e-5)
    table = (tmp_path / "ssim_table.md").read_text().splitlines()
    assert len(table) == 4 and table[2].startswith("| 1 | ") and table[3].startswith("| 3 | ")

    # Resume from epoch 3 with a new callback: earlier rows stay, epoch 5 is appended.
    resumed = evaluation.EvaluationCallback(paired_dataset(4), epochs=[5], out_dir=tmp_path, save_figures=False, fill_missing=False, evaluate_last=False)
    history = model.fit(train, initial_epoch=3, epochs=5, verbose=0, shuffle=False, callbacks=[resumed])
    assert [r["epoch"] for r in read_csv(tmp_path / "metrics.csv")] == ["1", "1", "3", "3", "5", "5"]
    assert "val_ssim_a2b" in history.history and len(history.history["val_ssim_a2b"]) == 1
    assert sorted(resumed.history) == [5]


def test_callback_writes_figures(tmp_path):
    model = InvertingModel()
    model.compile()
    callback = evaluation.EvaluationCallback(paired_dataset(4), epochs=[2], out_dir=tmp_path / "metrics", n_examples=2)
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)  # epoch 1: not chosen, only NaN placeholders
    assert math.isnan(logs["val_mae_b2a"]) and not (tmp_path / "metrics").exists()
    callback.on_epoch_end(1, logs)
    assert logs["val_mae_b2a"] == 0.0 and logs["val_ssim_a2b"] == pytest.approx(1.0)
    assert (tmp_path / "metrics" / "figures" / "translation_epoch_002.png").stat().st_size > 1000
    assert (tmp_path / "metrics" / "figures" / "ssim_curves.png").stat().st_size > 1000
    elsewhere = evaluation.EvaluationCallback(paired_dataset(4), epochs=[1], out_dir=tmp_path / "m2", figures_dir=tmp_path / "figs", n_examples=1)
    elsewhere.set_model(model)
    elsewhere.on_epoch_end(0, {})
    assert (tmp_path / "figs" / "translation_epoch_001.png").is_file() and (tmp_path / "m2" / "metrics.csv").is_file()


def test_callback_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"epochs: expected positive 1-based integers, found \[0, 5\]"):
        evaluation.EvaluationCallback(paired_dataset(), epochs=[0, 5], out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"log_metrics: expected names from .* found unknown \['ssmi'\]"):
        evaluation.EvaluationCallback(paired_dataset(), epochs=[1], out_dir=tmp_path, log_metrics=("ssmi",))
    with pytest.raises(ValueError, match=r"directions: expected a non-empty subset"):
        evaluation.EvaluationCallback(paired_dataset(), epochs=[1], out_dir=tmp_path, directions=("T1toT2",))


def test_real_unit_on_phantom_prepared_dataset(tmp_path):
    """Integration: a tiny real UNIT evaluated on a prepared phantom test split (with labels)."""
    from gan_mri.config import get_preset
    from gan_mri.data import phantom
    from gan_mri.data.dataset import prepare
    from gan_mri.models import build_model

    phantom.simulate(2, tmp_path / "bids", seed=0, resolution=2)
    prepared = prepare(tmp_path / "bids", tmp_path / "prepared", image_shape=(32, 32), test_fraction=0.5, seed=0)
    model = build_model(get_preset("unit", image_shape=(32, 32), base_width=8))
    callback = evaluation.EvaluationCallback(
        prepared.test_dataset(batch_size=2), epochs=[1], out_dir=tmp_path / "run", max_batches=3, n_examples=2
    )
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)

    rows = read_csv(tmp_path / "run" / "metrics.csv")
    assert [(r["epoch"], r["direction"], r["n_slices"]) for r in rows] == [("1", "A2B", "6"), ("1", "B2A", "6")]
    for row in rows:
        # An untrained model: SSIM far from 1, finite scores, Dice in [0, 1] against the phantom labels.
        assert -0.5 < float(row["ssim"]) < 0.5 and float(row["mae"]) > 0.05
        for name in ("dice_csf", "dice_gm", "dice_wm", "label_dice_csf", "label_dice_gm", "label_dice_wm"):
            assert 0.0 <= float(row[name]) <= 1.0
    assert logs["val_ssim_b2a"] == pytest.approx(float(rows[1]["ssim"]), abs=1e-5)
    assert (tmp_path / "run" / "figures" / "translation_epoch_001.png").is_file()
    # The phantom's ground-truth T2w, segmented by the same method, agrees with its labels (partial volume
    # at 32x32 and the deep grey nuclei, labelled grey but between grey and white, keep it well below 1:
    # measured 0.63 / 0.52 / 0.72 for CSF / GM / WM), and far better than with T1w's tissue order.
    test = {key: [] for key in ("b", "brain_mask", "labels")}
    for batch in prepared.test_dataset(batch_size=32).as_numpy_iterator():
        for key in test:
            test[key].append(batch[key])
    t2w, mask, labels = (np.concatenate(test[key]) for key in ("b", "brain_mask", "labels"))
    labels = np.where(mask, labels, 0)
    right = metrics.tissue_dice(metrics.segment_tissues(metrics.to_unit_range(t2w), mask, "T2w"), labels)
    wrong = metrics.tissue_dice(metrics.segment_tissues(metrics.to_unit_range(t2w), mask, "T1w"), labels)
    assert right["dice_csf"] > 0.55 and right["dice_gm"] > 0.45 and right["dice_wm"] > 0.6
    assert wrong["dice_wm"] < 0.2 and wrong["dice_csf"] < right["dice_csf"]
