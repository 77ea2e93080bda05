"""Precision policies: "auto" decided by the probe (injected), mixed_bfloat16 layers, models, train
steps on both backends, and a bfloat16 model's SavedModel export.

The layer, model and train-step tests rerun under KERAS_BACKEND=jax in a subprocess
(`test_bfloat16_tests_pass_under_jax`). This machine's CPU has no bfloat16 units, so every shape is tiny.
"""

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from gan_mri import precision
from gan_mri.config import UNITConfig, get_preset
from gan_mri.layers import ResidualBlock, SelfAttention, SpectralNormalization
from gan_mri.models import build_model

ROOT = Path(__file__).resolve().parent.parent
TINY_UNIT = dict(image_shape=(32, 32), base_width=4, encoder_res_blocks=0, generator_res_blocks=0)
MIXED = ("mixed_float16", "mixed_bfloat16")
COMPUTE = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}


def _images(n=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 32, 32, 1)).astype(np.float32)


# ------------------------------------------------------------------------------ resolve_precision
# (the CPU decision of "auto", its probe and its cache: tests/test_precision_auto.py)


@pytest.fixture(autouse=True)
def _auto_is_not_pinned(monkeypatch, tmp_path):
    """conftest.py pins "auto" to float32 for the rest of the suite; here "auto" must decide, with its
    cache in a folder of the test's own."""
    monkeypatch.delenv(precision.AUTO_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.mark.parametrize("name", ["float32", "mixed_float16", "mixed_bfloat16"])
def test_concrete_precisions_pass_through_without_a_probe(name, monkeypatch):
    monkeypatch.setattr(precision, "probe_conv_speed", lambda *a, **k: pytest.fail("probed for a concrete precision"))
    monkeypatch.setattr(precision, "_has_gpu", lambda: pytest.fail("looked for a GPU for a concrete precision"))
    assert precision.resolve_precision(name) == name
    assert precision.choose_precision(name, precision.ModelShape()) == precision.PrecisionChoice(
        name, "setting", "set explicitly")


@pytest.mark.parametrize("value", ["bfloat16", "float16", "fp8", "", None, "AUTO"])
def test_invalid_precisions_are_named(value):
    with pytest.raises(ValueError) as raised:
        precision.resolve_precision(value)
    assert str(raised.value) == f"precision must be one of {list(precision.PRECISIONS)}; found {value!r}"
    assert "mixed_bfloat16" in precision.PRECISIONS


def _probe(speedup):
    def probe(shape, repeats=3):
        return {"backend": keras.config.backend(), "inputs": [list(s) for s in shape.probe_inputs()],
                "float32_ms": 2.0, "bfloat16_ms": 2.0 / speedup, "speedup": speedup}
    return probe


def test_auto_on_a_gpu_is_mixed_float16_without_a_probe(monkeypatch, caplog):
    monkeypatch.setattr(precision, "_has_gpu", lambda: True)
    monkeypatch.setattr(precision, "probe_conv_speed", lambda *a, **k: pytest.fail("probed on a GPU"))
    with caplog.at_level(logging.INFO, logger="gan_mri.precision"):
        choice = precision.choose_precision("auto", precision.ModelShape(32, 32, 1, 4, 2))
    assert (choice.precision, choice.source) == ("mixed_float16", "gpu")
    assert caplog.records[-1].getMessage() == (f"precision auto: mixed_float16 (the {keras.config.backend()} "
                                               f"backend sees a GPU)")


def test_auto_reaches_the_config_and_the_model(monkeypatch):
    monkeypatch.setattr(precision, "_has_gpu", lambda: False)
    monkeypatch.setattr(precision, "cpu_features", lambda: ("Intel Xeon", frozenset({"amx_bf16"})))
    shapes = []
    monkeypatch.setattr(precision, "probe_conv_speed", lambda shape: shapes.append(shape) or _probe(3.0)(shape))
    model = build_model(get_preset("unit", **TINY_UNIT), batch_size=2)
    assert model.config.precision == "auto" and model.precision_policy == "mixed_bfloat16"
    assert shapes == [precision.ModelShape(height=32, width=32, channels=1, base_width=4, batch=2)]
    assert build_model(get_preset("unit", **TINY_UNIT), batch_size=2).precision_policy == "mixed_bfloat16"
    assert len(shapes) == 1  # the second model read the cached decision


@pytest.mark.parametrize("pinned", ["float32", "mixed_bfloat16"])
def test_the_environment_pins_auto_without_a_probe(pinned, monkeypatch, caplog):
    monkeypatch.setenv(precision.AUTO_ENV, pinned)
    monkeypatch.setattr(precision, "_has_gpu", lambda: pytest.fail("looked for a GPU although pinned"))
    monkeypatch.setattr(precision, "probe_conv_speed", lambda *a, **k: pytest.fail("probed although pinned"))
    with caplog.at_level(logging.INFO, logger="gan_mri.precision"):
        assert precision.resolve_precision("auto") == pinned
    assert caplog.records[-1].getMessage() == f"precision auto: {pinned} (pinned by GAN_MRI_AUTO_PRECISION)"
    assert precision.choose_precision("auto").to_dict() == {"precision": pinned, "source": "pinned",
                                                            "reason": "pinned by GAN_MRI_AUTO_PRECISION"}
    assert precision.resolve_precision("mixed_float16") == "mixed_float16"  # a concrete setting wins
    monkeypatch.setenv(precision.AUTO_ENV, "fast")
    with pytest.raises(ValueError, match=r"GAN_MRI_AUTO_PRECISION: expected one of \['float32', 'mixed_float16', "
                                         r"'mixed_bfloat16'\]; found 'fast'"):
        precision.resolve_precision("auto")


def test_the_config_accepts_mixed_bfloat16():
    config = UNITConfig(precision="mixed_bfloat16")
    assert UNITConfig.from_dict(config.to_dict()).precision == "mixed_bfloat16"


# ------------------------------------------------------------------------------ layers


def _assert_float32_variables(layer):
    assert layer.weights and all(w.dtype == "float32" for w in layer.weights), [(w.path, w.dtype) for w in layer.weights]


def run_precision_test(make_layer, inputs, policy, rtol=0.05):
    """The contract of a custom layer under a mixed policy: float32 variables, outputs in the compute
    dtype, the float32 layer's result with the same weights to low-precision accuracy, finite
    gradients-free training call.

    Args:
        make_layer: `dtype -> layer`.
        inputs: float32 numpy input.
        policy: "mixed_float16" or "mixed_bfloat16".
        rtol: tolerance relative to the largest output magnitude.
    """
    reference = make_layer("float32")
    expected = keras.ops.convert_to_numpy(reference(inputs))
    layer = make_layer(policy)
    layer(inputs)
    layer.set_weights(reference.get_weights())
    assert layer.compute_dtype == COMPUTE[policy] and layer.variable_dtype == "float32"
    _assert_float32_variables(layer)
    got = layer(inputs)
    assert keras.backend.standardize_dtype(got.dtype) == COMPUTE[policy]
    got = keras.ops.convert_to_numpy(keras.ops.cast(got, "float32"))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, atol=rtol * np.abs(expected).max())
    trained = keras.ops.convert_to_numpy(keras.ops.cast(layer(inputs, training=True), "float32"))
    assert np.all(np.isfinite(trained))
    _assert_float32_variables(layer)  # a training call writes state (spectral-norm u) back in float32
    return layer


def _spectral(kind):
    def make(dtype):
        inner = {"conv": lambda: keras.layers.Conv2D(8, 3, padding="same", dtype=dtype),
                 "transpose": lambda: keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", dtype=dtype),
                 "dense": lambda: keras.layers.Dense(8, dtype=dtype)}[kind]()
        return SpectralNormalization(inner, dtype=dtype)
    return make


LAYERS = {
    "self_attention": lambda dtype: SelfAttention(use_spectral_norm=True, dtype=dtype),
    "self_attention_pooled": lambda dtype: SelfAttention(pool_size=2, dtype=dtype),
    "residual_block_instance": lambda dtype: ResidualBlock(norm="instance", use_spectral_norm=True, dtype=dtype),
    "residual_block_layer": lambda dtype: ResidualBlock(norm="layer", dtype=dtype),
    "residual_block_batch": lambda dtype: ResidualBlock(norm="batch", dtype=dtype),
    "spectral_conv": _spectral("conv"),
    "spectral_transpose": _spectral("transpose"),
    "spectral_dense": _spectral("dense"),
}


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("name", LAYERS)
def test_every_custom_layer_under_mixed_precision(name, policy):
    x = np.random.default_rng(3).normal(size=(2, 4, 6, 16)).astype(np.float32)
    layer = LAYERS[name]
    if name == "self_attention":
        # gamma 1 so the attention path counts; large inputs would overflow a float16 softmax.
        def layer(dtype, make=LAYERS[name]):
            made = make(dtype)
            made(x)
            made.gamma.assign(1.0)
            return made
        x = 10.0 * x
    run_precision_test(layer, x, policy)


@pytest.mark.parametrize("policy", MIXED)
def test_spectral_norm_power_iteration_runs_in_float32(policy):
    layer = SpectralNormalization(keras.layers.Conv2D(4, 3, dtype=policy), dtype=policy)
    layer(np.ones((1, 6, 6, 3), np.float32), training=True)
    assert layer.u.dtype == "float32"
    assert keras.backend.standardize_dtype(layer.normalized_kernel().dtype) == "float32"


# ------------------------------------------------------------------------------ models


def _is_strided_one_pixel_conv(layer):
    conv = layer.layer if isinstance(layer, SpectralNormalization) else layer
    return (isinstance(conv, keras.layers.Conv2D) and not isinstance(conv, keras.layers.Conv2DTranspose)
            and max(conv.strides) > 1 and 1 in tuple(layer.input.shape[1:3]))


@pytest.mark.parametrize("policy, strides, input_shape, expected", [
    ("mixed_bfloat16", 2, (1, 1, 64), "float32"),      # UNIT's coarsest scale at 32x32
    ("mixed_bfloat16", (2, 2), (8, 1, 64), "float32"),  # one pixel wide (measured: undefined filter gradient)
    ("mixed_bfloat16", 2, (1, 8, 64), "float32"),      # one pixel high (guarded)
    ("mixed_bfloat16", 1, (1, 1, 64), "mixed_bfloat16"),  # stride 1 is exact
    ("mixed_bfloat16", 2, (2, 2, 64), "mixed_bfloat16"),
    ("mixed_float16", 2, (1, 1, 64), "mixed_float16"),
    ("float32", 2, (1, 1, 64), "float32"),
])
def test_strided_convs_over_one_pixel_compute_in_float32_under_bfloat16(policy, strides, input_shape, expected):
    from gan_mri.networks import strided_conv_dtype

    x = keras.Input(input_shape)
    assert strided_conv_dtype(x, strides, policy) == expected
    keras.mixed_precision.set_global_policy(policy)  # None reads the global policy (conftest restores float32)
    assert strided_conv_dtype(x, strides, None) == ("float32" if expected != policy else None)


@pytest.mark.parametrize("preset", ["sa-enc-cl-sn", "cyclegan"])
def test_a_bfloat16_model_keeps_its_outputs_and_variables_float32(preset):
    overrides = dict(image_shape=(32, 32), base_width=4)
    overrides.update(res_blocks=1) if preset == "cyclegan" else overrides.update(encoder_res_blocks=1,
                                                                                generator_res_blocks=1)
    keras.utils.set_random_seed(0)
    reference = build_model(get_preset(preset, precision="float32", **overrides))
    model = build_model(get_preset(preset, precision="mixed_bfloat16", **overrides))
    model.set_weights(reference.get_weights())
    networks = [layer for layer in model._flatten_layers(include_self=False, recursive=False)
                if isinstance(layer, keras.Model)]
    assert networks
    heads = {}
    one_pixel = {}
    for network in networks:
        layers = [layer for layer in network.layers if not isinstance(layer, keras.layers.InputLayer)]
        # Everything computes in bfloat16 but the float32 heads (the tanh, the discriminators' logits) and
        # the strided convs over a one-pixel-wide input (at 32x32: UNIT's coarsest discriminator scale's conv3).
        one_pixel[network.name] = [layer.name for layer in layers if _is_strided_one_pixel_conv(layer)]
        float32 = [layer.name for layer in layers if layer.compute_dtype == "float32"]
        heads[network.name] = [name for name in float32 if name not in one_pixel[network.name]]
        assert all(layer.compute_dtype == "bfloat16" for layer in layers if layer.name not in float32)
        assert set(one_pixel[network.name]) <= set(float32), (network.name, one_pixel, float32)
        assert all(name == "tanh" or name.endswith("_float32") for name in heads[network.name]), heads
        if heads[network.name]:
            assert all(keras.backend.standardize_dtype(out.dtype) == "float32" for out in network.outputs)
    generators = [name for name in heads if name.startswith("generator")]
    discriminators = [name for name in heads if name.startswith("discriminator")]
    assert len(generators) == len(discriminators) == 2, sorted(heads)
    assert all(heads[name] == ["tanh"] for name in generators), heads
    assert all(heads[name] and all(n.endswith("_float32") for n in heads[name]) for name in discriminators), heads
    expected = ["sn_s2_conv3"] if preset == "sa-enc-cl-sn" else []  # CycleGAN's PatchGAN stops at 4x4
    assert all(one_pixel[name] == expected for name in discriminators), one_pixel
    assert not any(one_pixel[name] for name in one_pixel if name not in discriminators), one_pixel
    assert all(w.dtype == "float32" for w in model.weights if "float" in w.dtype)  # (CycleGAN's pool counts int32)
    x = _images()
    got = keras.ops.convert_to_numpy(model.translate(x, "A2B"))
    assert got.dtype == np.float32 and np.abs(got).max() <= 1.0
    # Same weights, bfloat16 arithmetic (8 bits of mantissa): close to the float32 translation. A few
    # pixels of a random network move more (0.25 at 1 % of the pixels on JAX, measured).
    error = np.abs(got - keras.ops.convert_to_numpy(reference.translate(x, "A2B")))
    assert error.mean() < 0.02 and np.percentile(error, 95) < 0.05, (error.mean(), np.percentile(error, 95))


@pytest.mark.parametrize("policy, scaled", [("float32", False), ("mixed_float16", True), ("mixed_bfloat16", False)])
def test_only_float16_scales_the_loss(policy, scaled):
    model = build_model(get_preset("unit", precision=policy, **TINY_UNIT))
    model.compile()
    for optimizer in (model.g_optimizer, model.d_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer) is scaled


def _train_step(model, batch, steps=2):
    """`steps` train steps on the active backend (JAX: jitted and stateless); returns the last logs."""
    if keras.config.backend() == "jax":
        import jax

        state = tuple([v.value for v in variables] for variables in (
            model.trainable_variables, model.non_trainable_variables, model.optimizer.variables,
            model.metrics_variables))
        step = jax.jit(model.train_step)
        for _ in range(steps):
            logs, state = step(state, batch)
        return logs
    for _ in range(steps):
        logs = model.train_step(batch)
    return logs


def test_a_bfloat16_train_step_on_a_tiny_unit():
    keras.utils.set_random_seed(0)
    model = build_model(get_preset("unit", precision="mixed_bfloat16", **TINY_UNIT))
    model.compile()
    assert model.precision_policy == "mixed_bfloat16"
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_variables]
    logs = _train_step(model, (_images(seed=1), _images(seed=2)))
    for name, value in logs.items():
        value = keras.ops.convert_to_numpy(value)
        assert value.dtype == np.float32 and np.all(np.isfinite(value)), name
    if keras.config.backend() == "tensorflow":  # JAX's stateless step leaves the variables alone
        after = [keras.ops.convert_to_numpy(w) for w in model.trainable_variables]
        assert all(w.dtype == np.float32 for w in after)
        assert sum(not np.array_equal(a, b) for a, b in zip(before, after)) > len(before) // 2


def test_bfloat16_tests_pass_under_jax():
    if keras.config.backend() == "jax":
        pytest.skip("this is the JAX rerun")
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_precision.py",
         "-k", "train_step or power_iteration or (keeps_its_outputs and not cyclegan)"],
        env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


# ------------------------------------------------------------------------------ export

_SERVE = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(sys.argv[1])
    out = loaded.signatures["a2b"](image=tf.constant(np.load(sys.argv[2])))["translated"]
    np.save(sys.argv[3], out.numpy())
    print("RESULT " + json.dumps({"dtype": out.dtype.name,
                                  "gan_mri": any(m.split(".")[0] == "gan_mri" for m in sys.modules)}))
    """
)


def test_a_bfloat16_trained_model_exports_a_float32_saved_model(tmp_path):
    if keras.config.backend() != "tensorflow":
        pytest.skip("SavedModel export runs on the TensorFlow backend")
    from gan_mri.export import export_saved_model

    keras.utils.set_random_seed(0)
    model = build_model(get_preset("sa-enc-cl-sn", precision="mixed_bfloat16", **TINY_UNIT))
    model.compile()
    _train_step(model, (_images(seed=1), _images(seed=2)), steps=1)
    path = export_saved_model(model, tmp_path / "export" / "1")
    assert json.loads((path / "serving_info.json").read_text())["config"]["precision"] == "mixed_bfloat16"
    x = _images(3, seed=4)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "serve.py").write_text(_SERVE)
    done = subprocess.run([sys.executable, str(tmp_path / "serve.py"), str(path), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads([row for row in done.stdout.splitlines() if row.startswith("RESULT ")][-1][7:])
    assert result == {"dtype": "float32", "gan_mri": False}
    served = np.load(tmp_path / "y.npy")
    assert served.dtype == np.float32 and served.shape == x.shape
    expected = keras.ops.convert_to_numpy(model.translate(x, "A2B"))
    np.testing.assert_allclose(served, expected, atol=1e-2)
