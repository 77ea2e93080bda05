"""Sim-to-real scores (gan_mri.sim_to_real): the scoring functions on synthetic volumes, the no-learning
references on the real ICBM 2009c pair, and sim_to_real with a tiny untrained UNIT model."""

import json

import keras
import numpy as np
import pytest

from gan_mri import DIRECTIONS, Direction
from gan_mri.baseline import IntensityRemap
from gan_mri.config import get_preset
from gan_mri.data.icbm152 import load_icbm152
from gan_mri.models import build_model
from gan_mri.report import save_sim_to_real
from gan_mri.sim_to_real import (
    FAIR_REFERENCE,
    ORACLES,
    RESULTS,
    STRUCTURES,
    format_sim_to_real,
    inverse_quantile_remap,
    lookup_table,
    resolution_ceiling,
    scale_to_unit,
    score_volume,
    scores_only,
    sim_to_real,
    sim_to_real_line,
    remap_volume,
    structure_ratios,
    ventricle_ratio,
)


@pytest.fixture(scope="module")
def pair():
    return load_icbm152()


def _ramp_volume():
    """A (1, 1, 10001) 'volume' whose brain values are 0, 0.01, ..., 100: brain percentiles 1 and 99 are
    exactly 1 and 99."""
    values = np.linspace(0.0, 100.0, 10001).reshape(1, 1, -1)
    return values, np.ones(values.shape, bool)


# ------------------------------------------------------------------------------- scale_to_unit
def test_scale_to_unit_maps_the_brain_percentiles_to_0_and_1():
    volume, brain = _ramp_volume()
    unit = scale_to_unit(volume, brain)
    assert unit.shape == volume.shape
    assert unit[0, 0, 100] == pytest.approx(0.0, abs=1e-12)  # value 1 (p1)
    assert unit[0, 0, 9900] == pytest.approx(1.0, abs=1e-12)  # value 99 (p99)
    assert unit[0, 0, 5000] == pytest.approx(49.0 / 98.0, abs=1e-12)  # value 50
    assert unit[0, 0, :100].max() == 0.0 and unit[0, 0, 9900:].min() == 1.0  # clipped
    np.testing.assert_allclose(unit[0, 0, 100:9901], (volume[0, 0, 100:9901] - 1.0) / 98.0, atol=1e-12)


def test_scale_to_unit_takes_percentiles_inside_the_brain_only():
    volume, brain = _ramp_volume()
    volume = np.concatenate([volume, np.full((1, 1, 500), 1000.0)], axis=2)  # a bright skull, outside the brain
    brain = np.concatenate([brain, np.zeros((1, 1, 500), bool)], axis=2)
    unit = scale_to_unit(volume, brain)
    assert unit[0, 0, 5000] == pytest.approx(49.0 / 98.0, abs=1e-12)
    assert np.all(unit[0, 0, 10001:] == 1.0)


def test_scale_to_unit_of_a_flat_brain_is_finite():
    unit = scale_to_unit(np.full((4, 4, 4), 7.0), np.ones((4, 4, 4), bool))
    assert np.all(unit == 0.0)


# ------------------------------------------------------------------------------- ventricle_ratio
def test_ventricle_ratio_on_a_known_volume():
    volume, brain = _ramp_volume()
    ventricles = (volume >= 80.0) & (volume <= 90.0)  # mean 85 -> (85 - 1) / 98 on the unit scale
    white_matter = (volume >= 30.0) & (volume <= 50.0)  # mean 40 -> 39 / 98
    assert ventricle_ratio(volume, brain, ventricles, white_matter) == pytest.approx(84.0 / 39.0, rel=1e-9)
    # The unit scale is invariant to a linear change of intensities (another scanner's gain and offset).
    assert ventricle_ratio(3.0 * volume + 20.0, brain, ventricles, white_matter) == pytest.approx(84.0 / 39.0, rel=1e-9)


def test_ventricle_ratio_of_the_real_pair(pair):
    wm = pair.dseg == 3
    # Measured on the brain's [0, 1] scale: 6.90 on T2w (bright ventricles), 0.120 on T1w (dark ones).
    t2w = ventricle_ratio(pair.array("T2w"), pair.brain_mask, pair.ventricles, wm)
    t1w = ventricle_ratio(pair.array("T1w"), pair.brain_mask, pair.ventricles, wm)
    assert 5.5 < t2w < 8.5
    assert 0.05 < t1w < 0.2


# ------------------------------------------------------------------------------- score_volume
def test_perfect_prediction_scores_ssim_1_and_the_psnr_ceiling_of_100_db(pair):
    truth = pair.array("T2w")
    scores = score_volume(truth, truth, pair.brain_mask)
    assert set(scores) == {"ssim_brain", "psnr_brain"}
    assert scores["ssim_brain"] == pytest.approx(1.0, abs=1e-12)
    # metrics.psnr floors the MSE at 1e-10: identical volumes score 10 log10(1 / 1e-10) = 100 dB, not inf.
    assert scores["psnr_brain"] == pytest.approx(100.0)
    # Each volume is put on its brain's [0, 1] scale first: a linear change of intensities costs nothing.
    rescaled = score_volume(3.0 * truth + 7.0, truth, pair.brain_mask)
    assert rescaled["ssim_brain"] == pytest.approx(1.0, abs=1e-9)
    assert rescaled["psnr_brain"] > 90.0


def test_degraded_prediction_scores_lower(pair):
    truth = pair.array("T2w")
    noisy = truth + np.random.default_rng(0).normal(0.0, 5.0, truth.shape).astype(np.float32)
    scores = score_volume(noisy, truth, pair.brain_mask)
    # Measured: SSIM 0.639, PSNR 20.8 dB (noise sigma 5 on a brain of 0-105).
    assert 0.55 < scores["ssim_brain"] < 0.72
    assert 19.0 < scores["psnr_brain"] < 23.0
    # The other contrast is anti-correlated with the truth: measured SSIM -0.29, PSNR 5.2 dB.
    other = score_volume(pair.array("T1w"), truth, pair.brain_mask)
    assert other["ssim_brain"] < 0.0 and other["psnr_brain"] < 8.0


def test_score_volume_refuses_mismatched_shapes():
    volume = np.zeros((8, 8, 8))
    with pytest.raises(ValueError) as info:
        score_volume(volume, np.zeros((8, 8, 7)), np.ones((8, 8, 8), bool))
    assert str(info.value) == ("prediction, truth, brain_mask: expected one shape, found (8, 8, 8), (8, 8, 7) "
                               "and (8, 8, 8)")


# ------------------------------------------------------------------------------- intensity maps
def test_inverse_quantile_remap_sends_quantile_q_to_1_minus_q():
    rng = np.random.default_rng(0)
    shape = (12, 10, 8)
    brain = np.zeros(shape, bool)
    brain[2:10, 2:8, 1:7] = True
    count = int(brain.sum())
    source = rng.normal(100.0, 20.0, shape)
    target = rng.gamma(3.0, 10.0, shape)
    remapped = inverse_quantile_remap(source, target, brain)
    assert remapped.dtype == np.float32 and remapped.shape == shape
    assert not np.any(remapped[~brain])
    # With distinct values the brain voxel of source rank r gets the target's (count - 1 - r)-th smallest value.
    ranks = np.argsort(np.argsort(source[brain]))
    expected = np.sort(target[brain])[count - 1 - ranks]
    np.testing.assert_allclose(remapped[brain], expected.astype(np.float32))
    # So the brain's histogram is the target's, and the order is the source's, reversed.
    np.testing.assert_allclose(np.sort(remapped[brain]), np.sort(target[brain]).astype(np.float32))
    assert np.all(np.diff(remapped[brain][np.argsort(source[brain])]) <= 0)


@pytest.mark.parametrize(
    "name, function",
    [("sqrt", np.sqrt), ("decreasing exp", lambda x: np.exp(-3.0 * x)), ("hyperbola", lambda x: 1.0 / (0.2 + x))],
)
def test_lookup_table_reproduces_a_monotone_intensity_map(name, function):
    rng = np.random.default_rng(0)
    source = rng.uniform(0.0, 1.0, (30, 30, 30))
    brain = np.zeros(source.shape, bool)
    brain[3:27, 3:27, 3:27] = True
    target = function(source)
    fitted = lookup_table(source, target, brain)
    assert fitted.dtype == np.float32 and not np.any(fitted[~brain])
    spread = np.ptp(target[brain])
    error = np.abs(fitted - target)[brain]
    # Measured (256 bins of 54 voxels): mean error 0.1 % of the range, max 3.6 % (sqrt's steep first bin).
    assert error.mean() < 0.005 * spread
    assert error.max() < 0.06 * spread
    # Each bin gets its target mean: the brain's mean is kept.
    assert fitted[brain].mean() == pytest.approx(target[brain].mean(), rel=1e-5)


def test_lookup_table_is_a_step_function_of_the_source():
    source = np.arange(1000.0).reshape(10, 10, 10)
    target = np.random.default_rng(1).normal(size=source.shape)
    fitted = lookup_table(source, target, np.ones(source.shape, bool), bins=10)
    # 10 bins of 100 consecutive source values each: every bin holds its target mean.
    flat_fitted, flat_target = fitted.ravel(), target.ravel()
    for start in range(0, 1000, 100):
        np.testing.assert_allclose(flat_fitted[start:start + 100], flat_target[start:start + 100].mean(), rtol=1e-5)


# ------------------------------------------------------------------------------- resolution ceiling
def test_resolution_ceiling_is_the_target_at_the_model_s_slice_size(pair):
    truth = pair.array("T2w")
    ssim = {}
    for size in (32, 256):
        ceiling = resolution_ceiling(pair.image("T2w"), (size, size))
        assert ceiling.shape == truth.shape and ceiling.dtype == np.float32
        ssim[size] = score_volume(ceiling, truth, pair.brain_mask)["ssim_brain"]
        if size == 256:
            # Measured at 256 x 256: mean |error| 1.5 % of the brain's mean, SSIM 0.979.
            error = np.abs(ceiling - truth)[pair.brain_mask].mean() / truth[pair.brain_mask].mean()
            assert error < 0.03
    # Measured: 0.304 at 32 x 32 (the 193 x 229 slices shrunk 7-fold), 0.979 at 256 x 256.
    assert ssim[256] > 0.95
    assert 0.2 < ssim[32] < 0.4


# ------------------------------------------------------------------------------- sim_to_real with a model
# A remap of "training data" for the tiny model: T1w quantiles -0.9..0.9 sent to T2w's inverted ones.
TRAINING_REMAP = IntensityRemap({"A": np.linspace(-0.9, 0.9, 11), "B": np.linspace(-0.9, 0.6, 11) ** 3})


@pytest.fixture(scope="module")
def results():
    """sim_to_real of a tiny untrained UNIT (32 x 32) that keeps a remap of its training data: measured 37 s,
    of which ~20 s registering the template to the whole-head T1w."""
    keras.utils.set_random_seed(7)
    config = get_preset("sa-enc-cl-sn", image_shape=(32, 32), base_width=8, encoder_res_blocks=1,
                        generator_res_blocks=1)
    model = build_model(config)
    model.training_remap = TRAINING_REMAP
    return sim_to_real(model), model


def test_sim_to_real_structure(results, pair):
    results, _ = results
    assert set(results) == set(DIRECTIONS) | {"volumes"}
    for direction in DIRECTIONS:
        entry = results[direction]
        assert set(entry) == set(RESULTS) | {"truth_ventricle_ratio", "truth_structure_ratios", "image_shape"}
        assert entry["image_shape"] == [32, 32]
        assert set(entry["truth_structure_ratios"]) == set(STRUCTURES)
        for name in RESULTS:
            assert set(entry[name]) == {"ssim_brain", "psnr_brain", "ventricle_ratio", "structure_ratios"}, name
            assert set(entry[name]["structure_ratios"]) == set(STRUCTURES)
            values = [v for k, v in entry[name].items() if k != "structure_ratios"]
            assert all(isinstance(v, float) and np.isfinite(v) for v in values), name
            assert 0.0 <= entry[name]["ssim_brain"] <= 1.0, name
        arrays = results["volumes"][direction]
        assert set(arrays) == {"source", "source_whole_head", "model", "model_whole_head", "truth",
                               "truth_whole_head", "brain_mask", "basal_ganglia_z"}
        for key, array in arrays.items():
            if key != "basal_ganglia_z":
                assert array.shape == pair.t1w.shape, key
        assert pair.structure_mask("putamen")[:, :, arrays["basal_ganglia_z"]].sum() > 300
        np.testing.assert_array_equal(arrays["brain_mask"], pair.brain_mask)
    np.testing.assert_array_equal(results["volumes"]["A2B"]["truth"], pair.array("T2w"))
    np.testing.assert_array_equal(results["volumes"]["B2A"]["truth_whole_head"], pair.array("T1w", False))


@pytest.mark.parametrize("direction, source, target", [("A2B", "T1w", "T2w"), ("B2A", "T2w", "T1w")])
def test_references_do_not_depend_on_the_model(results, pair, direction, source, target):
    results, model = results
    entry = results[direction]
    truth, brain, wm = pair.array(target), pair.brain_mask, pair.dseg == 3
    assert entry["truth_ventricle_ratio"] == ventricle_ratio(truth, brain, pair.ventricles, wm)
    assert entry["truth_structure_ratios"] == structure_ratios(truth, pair)
    references = {"ceiling": resolution_ceiling(pair.image(target), (32, 32)),
                  "oracle_remap": inverse_quantile_remap(pair.array(source), truth, brain),
                  "oracle_lookup_table": lookup_table(pair.array(source), truth, brain),
                  # The fair reference: the model's remap of its training data, on the slices the model sees.
                  FAIR_REFERENCE: remap_volume(model, TRAINING_REMAP, pair.image(source), Direction(direction))}
    for name, volume in references.items():
        expected = dict(score_volume(volume, truth, brain),
                        ventricle_ratio=ventricle_ratio(volume, brain, pair.ventricles, wm))
        scores = dict(entry[name])
        assert scores.pop("structure_ratios") == pytest.approx(structure_ratios(volume, pair), rel=1e-9), name
        assert scores == pytest.approx(expected, rel=1e-9), name


def test_the_fair_reference_is_the_training_remap_on_the_models_slices(results, pair):
    _, model = results
    volume = remap_volume(model, TRAINING_REMAP, pair.image("T1w"), Direction("A2B"))
    assert volume.shape == pair.t1w.shape
    # Brain voxels are remapped (darker where the T1w is bright: an inverted map), the rest keeps the input.
    white, ventricles = pair.structure_mask("cerebral white matter"), pair.ventricles
    assert volume[ventricles].mean() > volume[white].mean()


def test_scores_of_the_real_pair(results):
    results, _ = results
    a2b, b2a = results["A2B"], results["B2A"]
    # Measured truth ventricle/WM on the [0, 1] scale: 6.90 (T2w target), 0.120 (T1w target).
    assert a2b["truth_ventricle_ratio"] > 10 * b2a["truth_ventricle_ratio"]
    # The real T2w: the pallidum darker than white matter (iron), the putamen and thalamus brighter, the caudate
    # and hippocampus brighter still (measured 0.34, 1.65, 1.74, 2.73, 3.07 on the [0, 1] scale).
    t2w = a2b["truth_structure_ratios"]
    assert t2w["pallidum"] < 0.5 < 1.2 < t2w["putamen"] < t2w["caudate"] < t2w["hippocampus"]
    # Measured SSIM: oracle remap 0.793 / 0.819, oracle lookup table 0.741 / 0.827, ceiling at 32 px 0.304 / 0.448.
    for entry in (a2b, b2a):
        assert entry["oracle_remap"]["ssim_brain"] > 0.7 and entry["oracle_lookup_table"]["ssim_brain"] > 0.65
        assert 0.2 < entry["ceiling"]["ssim_brain"] < 0.55
        # An untrained model is far below all of them (measured 0.04-0.08, whole head alike).
        for name in ("model", "model_whole_head"):
            assert entry[name]["ssim_brain"] < 0.5 * entry["ceiling"]["ssim_brain"], name
    # The intensity maps keep the ventricles' contrast: measured remap 6.92 vs truth 6.90 (T1w -> T2w).
    assert a2b["oracle_remap"]["ventricle_ratio"] == pytest.approx(a2b["truth_ventricle_ratio"], rel=0.1)
    assert b2a["oracle_remap"]["ventricle_ratio"] < 0.5 and a2b["oracle_lookup_table"]["ventricle_ratio"] > 4.0


def test_results_written_before_the_oracles_were_renamed_still_read():
    old = {"A2B": {"image_shape": [64, 64], "truth_ventricle_ratio": 6.9,
                   **{name: {"ssim_brain": 0.5, "psnr_brain": 15.0, "ventricle_ratio": 3.0}
                      for name in ("model", "model_whole_head", "remap", "lookup_table", "ceiling")}}}
    upgraded = scores_only(old)
    assert set(upgraded["A2B"]) == {"image_shape", "truth_ventricle_ratio", "model", "model_whole_head",
                                    *ORACLES, "ceiling"}
    table = format_sim_to_real(old)
    assert "remap to target histogram (oracle)" in table and "remap of training data" not in table
    assert "oracle intensity map 0.500" in sim_to_real_line(old)


def test_report_text_and_files(results, tmp_path):
    results, _ = results
    scores = scores_only(results)
    assert set(scores) == set(DIRECTIONS)
    table = format_sim_to_real(results).splitlines()
    assert len(table) == 3 + len(DIRECTIONS) * (1 + len(RESULTS))
    assert table[3].startswith("T1w -> T2w") and f"{results['A2B']['truth_ventricle_ratio']:.2f}" in table[3]
    pallidum = results["A2B"]["truth_structure_ratios"]["pallidum"]
    assert table[3].split()[-3] == f"{pallidum:.2f}"  # the columns: vent thal caud put pall hipp ctx
    assert any(line.strip().startswith("ceiling 32x32 px") for line in table)
    assert any(line.strip().startswith("remap of training data (fair)") for line in table)
    line = sim_to_real_line(results)
    assert f"T1w->T2w {results['A2B']['model']['ssim_brain']:.3f}" in line
    assert f"remap of training data {results['A2B'][FAIR_REFERENCE]['ssim_brain']:.3f}" in line
    assert f"ceiling {results['B2A']['ceiling']['ssim_brain']:.3f}" in line
    written = save_sim_to_real(results, tmp_path / "report")
    assert json.loads(written["sim-to-real scores"].read_text()) == scores
    assert written["sim-to-real figure"].stat().st_size > 0
