"""The remap prior (issue 39, item 1): the quantile remap as a Keras layer, its config option, its
fit on the training split, and its weights in .keras files, checkpoints and SavedModels.

The layer and training tests are backend-neutral; `test_layer_and_training_under_jax` reruns some
with KERAS_BACKEND=jax in a subprocess (the backend is read once, at `import keras`), started when the
module's first test starts, so that it runs beside the TensorFlow tests (on 2 cores: about 40 s for the
file instead of 75 s one after the other).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from gan_mri.baseline import IntensityRemap
from gan_mri.config import FAMILY_REGISTRY, CycleGANConfig, UNITConfig, config_from_dict, get_preset
from gan_mri.models import build_model
from gan_mri.remap_prior import BRAIN_THRESHOLD, QuantileRemap, interpolate

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
# The smallest networks of each family: the point is the prior's plumbing, not the networks.
TINY = {"unit": dict(image_shape=(SIZE, SIZE), base_width=4, encoder_res_blocks=0, generator_res_blocks=0),
        "cyclegan": dict(image_shape=(SIZE, SIZE), base_width=4, res_blocks=0)}


def _slices(rng, n, brain_mean):
    """(n, 32, 32, 1) slices: a brain disc of noisy tissue, background at -1 with noise below -0.95."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    brain = (yy - 16) ** 2 + (xx - 16) ** 2 <= 11 ** 2
    images = np.where(brain, np.clip(rng.normal(brain_mean, 0.3, (n, SIZE, SIZE)), -0.85, 1.0),
                      -1.0 + 0.05 * rng.random((n, SIZE, SIZE)) * (rng.random((n, SIZE, SIZE)) < 0.3))
    return images[..., None].astype(np.float32), np.broadcast_to(brain, (n, SIZE, SIZE))


# The layer's values and gradient, and both modes training CycleGAN: 35 s of CPU here, most of it the first
# model's eager weight initialization and the two compiled steps; UNIT's step compiles 2-3 times longer than
# CycleGAN's (the prior's code is the same; test_backends compares UNIT's step on both backends).
JAX_TESTS = "layer_is_the_baseline or gradient or (train_a_few_steps and cyclegan)"
JAX_TEST = "test_layer_and_training_under_jax"


@pytest.fixture(scope="module", autouse=True)
def jax_run(request, tmp_path_factory):
    """The JAX subprocess of `test_layer_and_training_under_jax`, started with the module's first test
    when that test is collected (and on TensorFlow): (process, its output file) or None."""
    if keras.config.backend() != "tensorflow" or not any(item.name == JAX_TEST for item in request.session.items):
        yield None
        return
    output = tmp_path_factory.mktemp("jax") / "pytest.txt"
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(output, "w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                                    "-k", JAX_TESTS], env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=ROOT)
    yield process, output
    if process.poll() is None:  # the JAX test did not run to its end
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    (x_a, mask_a), (x_b, mask_b) = _slices(rng, 6, 0.4), _slices(rng, 6, -0.1)
    remap = IntensityRemap.fit({"A": x_a, "B": x_b}, {"A": mask_a, "B": mask_b})
    return {"A": x_a, "B": x_b, "mask": mask_a, "remap": remap}


def _model(family, mode, remap=None, **overrides):
    model = build_model(get_preset(family, remap_prior=mode, **{**TINY[family], **overrides}))
    if remap is not None:
        model.set_intensity_remap(remap)
    return model


# ----------------------------------------------------------------------------------------- the layer
def test_interpolate_is_numpy_interp_with_repeated_and_out_of_range_points():
    xp = np.array([-0.5, -0.5, -0.2, 0.1, 0.1, 0.1, 0.6, 0.9, 0.9], np.float32)
    fp = np.linspace(0.0, 1.0, len(xp)).astype(np.float32)
    x = np.concatenate([np.linspace(-1, 1, 402), xp, [-0.5, 0.1, 0.9]]).astype(np.float32).reshape(3, -1)
    got = keras.ops.convert_to_numpy(interpolate(keras.ops.convert_to_tensor(x), xp, fp))
    np.testing.assert_allclose(got, np.interp(x, xp, fp), atol=1e-6)


@pytest.mark.parametrize("direction", ["A2B", "B2A"])
def test_layer_is_the_baseline_remap_inside_the_brain(data, direction):
    layer = QuantileRemap()
    layer.set_quantiles(data["remap"].quantiles)
    source = data[direction[0]]
    got = keras.ops.convert_to_numpy(layer(source, direction=direction))
    expected = data["remap"].translate(source, direction, data["mask"])
    brain = data["mask"][..., None] & np.ones_like(source, bool)
    np.testing.assert_allclose(got[brain], expected[brain], atol=1e-5)
    # Background (at or below the threshold) passes through unchanged, as the baseline leaves it.
    background = source <= BRAIN_THRESHOLD
    assert background.sum() > 1000 and not np.any(background & brain)
    np.testing.assert_array_equal(got[background], source[background])


def test_unfitted_layer_inverts_and_says_so_and_rejects_bad_quantiles():
    layer = QuantileRemap()
    assert not layer.fitted
    x = np.array([[[[-1.0], [-0.5], [0.25]]]], np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x, direction="A2B")), [[[[-1.0], [0.5], [-0.25]]]],
                               atol=1e-5)
    with pytest.raises(ValueError, match="domain B: expected 1001 finite non-decreasing quantiles; found shape"):
        layer.set_quantiles({"A": np.linspace(-1, 1, 1001), "B": np.linspace(1, -1, 1001)})
    with pytest.raises(ValueError, match="direction must be one of"):
        layer(x, direction="A2A")
    assert not layer.fitted


def _gradient(function, x):
    if keras.config.backend() == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: keras.ops.sum(function(v)))(x))
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = keras.ops.sum(function(x))
    return tape.gradient(y, x).numpy()


def test_gradient_is_the_slope_of_the_remap():
    # Smooth quantile functions, so that the piecewise-linear slope approximates a known derivative:
    # F_A(x) = ((x + 0.8) / 1.8)^2 and q_B(level) = -0.7 + 1.7 level^2, y = q_B(1 - F_A(x)).
    levels = np.linspace(0.0, 1.0, 1001)
    layer = QuantileRemap()
    layer.set_quantiles({"A": -0.8 + 1.8 * np.sqrt(levels), "B": -0.7 + 1.7 * levels**2})
    x = np.linspace(-0.6, 0.9, 64, dtype=np.float32).reshape(1, 8, 8, 1)
    gradient = _gradient(lambda v: layer(v, direction="A2B"), x)
    probability = ((x + 0.8) / 1.8) ** 2
    expected = 1.7 * 2 * (1 - probability) * -(2 * (x + 0.8) / 1.8**2)
    assert np.all(np.isfinite(gradient)) and np.all(gradient < 0)  # the remap inverts the contrast
    np.testing.assert_allclose(gradient, expected, rtol=0.02, atol=0.01)
    # Background (below the threshold) passes through: slope 1.
    np.testing.assert_allclose(_gradient(lambda v: layer(v, direction="A2B"), np.full((1, 2, 2, 1), -0.95, np.float32)),
                               1.0)


# ---------------------------------------------------------------------------------------- the config
@pytest.mark.parametrize("cls", [UNITConfig, CycleGANConfig])
def test_config_field_is_validated_and_round_trips(cls):
    with pytest.raises(ValueError) as raised:
        cls(remap_prior="affine")
    assert str(raised.value) == (f"{cls.__name__}.remap_prior must be one of ['none', 'residual', 'channel']; "
                                 f"found 'affine'")
    config = cls(remap_prior="channel")
    assert cls.from_json(config.to_json()) == config
    saved_before = {key: value for key, value in config.to_dict().items() if key != "remap_prior"}
    assert config_from_dict(saved_before, saved=True).remap_prior == "none"


def test_presets_keep_their_meaning_and_take_the_prior():
    # The prior is a recipe setting: no preset sets it, every preset takes it.
    assert not any("remap_prior" in fields for family in FAMILY_REGISTRY.values() for fields in family.presets.values())
    assert get_preset("sa-enc-cl-sn", remap_prior="channel").attention == "encoder"
    assert get_preset("cyclegan", remap_prior="channel").remap_prior == "channel"
    assert CycleGANConfig().remap_prior == "none"


def test_cli_train_passes_remap_prior(tmp_path):
    from gan_mri.cli import _train_config, build_parser

    class Shape:
        image_shape = (32, 32)

    args = build_parser().parse_args(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                                      "--remap-prior", "residual"])
    assert _train_config(args, Shape()).remap_prior == "residual"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--out", "r", "--remap-prior", "affine"])


# --------------------------------------------------------------------------------------- the models
def test_a_model_without_the_prior_has_no_remap_weights():
    plain = _model("unit", "none")
    assert plain.intensity_remap is None and plain.prior_image(np.zeros((1, 32, 32, 1)), "A", "B") is None
    with pytest.raises(ValueError, match="remap_prior is 'none'"):
        plain.set_intensity_remap(IntensityRemap({"A": [-1, 1], "B": [-1, 1]}))
    assert not any("quantiles" in v.path for v in plain.weights)


@pytest.mark.parametrize("family", ["unit", "cyclegan"])
@pytest.mark.parametrize("mode", ["residual", "channel"])
def test_both_modes_train_a_few_steps(data, family, mode):
    model = _model(family, mode)
    # TensorFlow eagerly: tracing its train step costs more than the 2 steps (test_training_fits_the_remap_...
    # traces one); JAX compiled: op by op it compiles every op once, 50 s for UNIT's step here.
    model.compile(run_eagerly=keras.config.backend() == "tensorflow")
    with pytest.raises(ValueError, match=rf"fit: config.remap_prior is '{mode}' but the model's intensity remap "
                                         r"is not fitted; call model.set_intensity_remap"):
        model.fit(data["A"][:2], data["B"][:2], verbose=0)
    model.set_intensity_remap(data["remap"])
    quantiles = model.intensity_remap.get_quantiles()
    weights = [keras.ops.convert_to_numpy(v) for v in model.generator_variables]
    history = model.fit(data["A"][:4], data["B"][:4], batch_size=2, epochs=1, verbose=0).history
    assert np.isfinite(history["g_loss"][-1]) and np.isfinite(history["d_loss"][-1])
    moved = [np.abs(keras.ops.convert_to_numpy(v) - w).max() > 0 for v, w in zip(model.generator_variables, weights)]
    assert np.mean(moved) > 0.9
    # The quantiles are the remap's, not trained.
    for domain, values in model.intensity_remap.get_quantiles().items():
        np.testing.assert_array_equal(values, quantiles[domain])
    translated = keras.ops.convert_to_numpy(model.translate(data["A"][:2], "A2B"))
    assert translated.shape == (2, SIZE, SIZE, 1) and np.abs(translated).max() <= 1.0


def test_residual_translation_is_the_remap_plus_the_generators_correction(data):
    model = _model("cyclegan", "residual", data["remap"])
    x = data["A"][:2]
    correction = keras.ops.convert_to_numpy(model.generator_a2b(x))
    remapped = data["remap"].translate(x, "A2B", x[..., 0] > BRAIN_THRESHOLD)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.translate(x, "A2B")),
                               np.clip(remapped + 2 * correction, -1, 1), atol=1e-5)


def test_unit_decode_needs_the_prior_image(data):
    model = _model("unit", "channel", data["remap"])
    mu, _ = model.encode(data["A"][:1], "A")
    with pytest.raises(ValueError, match=r"decode: this model has a remap prior \('channel'\); pass prior="):
        model.decode(mu, "B")
    prior = model.prior_image(data["A"][:1], "A", "B")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.decode(mu, "B", prior=prior)),
                               keras.ops.convert_to_numpy(model.translate(data["A"][:1], "A2B")), atol=1e-6)
    # The latent uncertainty map (and so the SavedModel's *_uncertainty signatures) decodes with the prior.
    from gan_mri.confidence import uncertainty_map

    spread = uncertainty_map(model, data["A"][:1], "A2B", "latent", samples=2)
    assert spread.shape == (1, SIZE, SIZE) and np.isfinite(spread).all() and spread.max() > 0


# ------------------------------------------------------------------------------------- saved files
def _forget_quantiles(model):
    model.intensity_remap.set_quantiles({domain: np.linspace(-1, 1, 1001) for domain in "AB"})
    model.intensity_remap.fitted_flag.assign(0.0)


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="SavedModel export is TensorFlow's")
def test_keras_file_checkpoint_and_savedmodel_carry_the_quantiles(data, tmp_path):
    import tensorflow as tf

    from gan_mri.export import export_saved_model

    # CycleGAN: its five signatures trace in a third of UNIT's time (its uncertainty map is the cycle's).
    model = _model("cyclegan", "residual", data["remap"])
    x = data["B"][:2]
    expected = keras.ops.convert_to_numpy(model.translate(x, "B2A"))
    model.save(tmp_path / "model.keras")
    model.save_weights(tmp_path / "checkpoint.weights.h5")
    export_saved_model(model, tmp_path / "export" / "1")
    served = tf.saved_model.load(str(tmp_path / "export" / "1"))
    # Nothing below may read the quantiles from the live model.
    _forget_quantiles(model)
    assert np.abs(keras.ops.convert_to_numpy(model.translate(x, "B2A")) - expected).max() > 1e-2

    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.intensity_remap.fitted and loaded.config.remap_prior == "residual"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.translate(x, "B2A")), expected, atol=1e-5)
    fresh = _model("cyclegan", "residual")
    fresh.load_weights(tmp_path / "checkpoint.weights.h5")
    assert fresh.intensity_remap.fitted
    np.testing.assert_allclose(fresh.intensity_remap.get_quantiles()["A"], data["remap"].quantiles["A"], atol=1e-6)
    np.testing.assert_allclose(served.signatures["b2a"](image=tf.constant(x))["translated"].numpy(), expected,
                               atol=1e-5)
    info = json.loads((tmp_path / "export" / "1" / "serving_info.json").read_text())
    assert info["config"]["remap_prior"] == "residual"


def _png_folders(root, rng):
    """GAN-MRI PNG folders of the synthetic slices: unpaired trainA/trainB, and testA/testB whose brains
    are much darker (T1w) and brighter (T2w) than the training ones, so a fit that saw them would differ."""
    from PIL import Image

    for folder, count, brain_mean in (("trainA", 8, 0.4), ("trainB", 8, -0.1), ("testA", 2, -0.5), ("testB", 2, 0.8)):
        (root / folder).mkdir(parents=True)
        for index, image in enumerate(_slices(rng, count, brain_mean)[0]):
            levels = np.round((image[..., 0] + 1) * 127.5).astype(np.uint8)
            Image.fromarray(levels).save(root / folder / f"slice_{index:02d}.png")
    return root


@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="train() streams tf.data")
def test_training_fits_the_remap_on_the_training_split_only(tmp_path, monkeypatch):
    from gan_mri.data.dataset import PreparedDataset, prepare
    from gan_mri.training import train

    dataset = prepare(_png_folders(tmp_path / "pngs", np.random.default_rng(1)), tmp_path / "data",
                      image_shape=(SIZE, SIZE))
    read = []
    for method in ("images", "array"):
        original = getattr(PreparedDataset, method)
        monkeypatch.setattr(PreparedDataset, method,
                            lambda self, name, *args, _original=original, **kwargs: read.append(name)
                            or _original(self, name, *args, **kwargs))
    config = get_preset("cyclegan", remap_prior="channel", **TINY["cyclegan"])
    model, run = train(config, dataset, tmp_path / "run", epochs=1, batch_size=4)
    assert read and all(name.startswith("train_") for name in read), sorted(set(read))
    monkeypatch.undo()
    expected = IntensityRemap.from_dataset(dataset, model.standardization)
    for domain, values in model.intensity_remap.get_quantiles().items():
        np.testing.assert_allclose(values, expected.quantiles[domain], atol=1e-6)
    # A fit that had seen the (darker) test T1w slices would be another remap.
    with_test = IntensityRemap.fit(
        {domain: np.concatenate([dataset.images(f"train_{domain.lower()}"), dataset.images(f"test_{domain.lower()}")])
         for domain in "AB"},
        {domain: np.concatenate([dataset.array(f"train_{domain.lower()}_mask"), dataset.array("test_mask")])
         for domain in "AB"})
    assert np.abs(with_test.quantiles["A"] - expected.quantiles["A"]).max() > 0.1
    record = run.read_run_info()["remap_prior"]
    assert record["mode"] == "channel" and record["fitted_on"] == ["train_a", "train_b"]
    assert record["slices"] == {"train_a": 8, "train_b": 8}
    assert record["quantiles"]["B"][3] == pytest.approx(np.interp(0.5, expected.levels["B"], expected.quantiles["B"]),
                                                        abs=1e-4)
    # The saved model carries the fitted quantiles.
    loaded = keras.models.load_model(run.model_file)
    np.testing.assert_allclose(loaded.intensity_remap.get_quantiles()["A"], expected.quantiles["A"], atol=1e-6)


# ------------------------------------------------------------------------------------------------ JAX
@pytest.mark.skipif(keras.config.backend() != "tensorflow", reason="starts the JAX run from the TensorFlow one")
def test_layer_and_training_under_jax(jax_run):
    process, output = jax_run
    returncode = process.wait(timeout=600)
    report = output.read_text()
    assert returncode == 0, report[-4000:]
    passed = int(report.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed == 5 and "failed" not in report, report[-1000:]
