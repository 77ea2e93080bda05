"""SelfAttention, ResidualBlock and spectral normalization."""

import keras
import numpy as np
import pytest

from gan_mri.layers import ResidualBlock, SelfAttention, SpectralNormalization, normalization, spectral_norm


@pytest.fixture
def x():
    return np.random.default_rng(3).normal(size=(2, 4, 6, 16)).astype(np.float32)


def _conv1x1(layer, x):
    kernel, bias = (np.asarray(w) for w in layer.get_weights())
    return np.einsum("bhwc,ck->bhwk", x, kernel[0, 0]) + bias


def _max_pool(x, p):
    """p x p max pooling, stride p, "same" padding: a side p does not divide is padded by the
    missing positions, half of them (rounded down) before it, and pads never win the max."""
    b, h, w, c = x.shape
    rows, cols = -(-h // p), -(-w // p)
    top, left = (rows * p - h) // 2, (cols * p - w) // 2
    out = np.empty((b, rows, cols, c), x.dtype)
    for i in range(rows):
        for j in range(cols):
            r0, c0 = i * p - top, j * p - left
            window = x[:, max(r0, 0):r0 + p, max(c0, 0):c0 + p]
            out[:, i, j] = window.max(axis=(1, 2))
    return out


def _numpy_self_attention(layer, x, pool=1):
    b, h, w, c = x.shape
    f = _max_pool(_conv1x1(layer.f, x), pool).reshape(b, -1, layer.f.filters)
    g = _conv1x1(layer.g, x).reshape(b, h * w, -1)
    v = _max_pool(_conv1x1(layer.h, x), pool).reshape(b, -1, c)
    scores = np.einsum("bjk,bik->bji", g, f)  # s[j, i] = g_j . f_i
    beta = np.exp(scores - scores.max(-1, keepdims=True))
    beta /= beta.sum(-1, keepdims=True)  # softmax over the attended positions i
    o = _conv1x1(layer.out, np.einsum("bji,bic->bjc", beta, v).reshape(b, h, w, c))
    return float(np.asarray(layer.gamma)) * o + x


def test_self_attention_is_identity_at_initialization(x):
    layer = SelfAttention()
    np.testing.assert_array_equal(np.asarray(layer(x)), x)
    assert float(np.asarray(layer.gamma)) == 0.0
    # f, g: C/8 = 2 channels; h, out: C channels.
    assert layer.f.filters == 2 and layer.g.filters == 2 and layer.h.filters == 16
    assert len(layer.trainable_weights) == 9


def test_self_attention_matches_numpy_reference_with_gamma_one(x):
    layer = SelfAttention()
    layer(x)
    layer.gamma.assign(1.0)
    got = np.asarray(layer(x))
    expected = _numpy_self_attention(layer, x)
    assert np.abs(got - x).max() > 1e-2  # the attention branch contributes
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pool", [2, 4])
def test_pooled_self_attention_matches_numpy_reference(x, pool):
    # x is 4 x 6: pool 4 leaves a 4 x 2 border window on the 6-wide side, which still counts.
    layer = SelfAttention(pool_size=pool)
    layer(x)
    layer.gamma.assign(1.0)
    got = np.asarray(layer(x))
    np.testing.assert_allclose(got, _numpy_self_attention(layer, x, pool), rtol=1e-4, atol=1e-5)
    # Pooling changes the result, not the weights: the same weights unpooled give another output.
    unpooled = SelfAttention()
    unpooled(x)
    unpooled.set_weights(layer.get_weights())
    assert np.abs(np.asarray(unpooled(x)) - got).max() > 1e-3


@pytest.mark.parametrize("pool", [0, -1, 1.5, "2"])
def test_self_attention_rejects_a_bad_pool_size(pool):
    with pytest.raises(ValueError, match=f"SelfAttention pool_size must be an integer >= 1; found {pool!r}"):
        SelfAttention(pool_size=pool)


def test_self_attention_serialization_round_trip(x, tmp_path):
    layer = SelfAttention(key_channels=4, pool_size=2, use_spectral_norm=True, name="attn")
    layer(x)
    layer.gamma.assign(0.7)
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == "gan_mri>SelfAttention"
    clone = keras.saving.deserialize_keras_object(config)
    clone(x)
    clone.set_weights(layer.get_weights())
    assert clone.key_channels == 4 and clone.pool_size == 2 and clone.use_spectral_norm
    np.testing.assert_array_equal(np.asarray(clone(x)), np.asarray(layer(x)))

    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, SelfAttention(name="attn")(inputs))
    model.get_layer("attn").gamma.assign(0.5)
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_self_attention_under_mixed_float16_matches_float32(x):
    reference = SelfAttention()
    reference(x)
    reference.gamma.assign(1.0)
    keras.mixed_precision.set_global_policy("mixed_float16")
    layer = SelfAttention()
    keras.mixed_precision.set_global_policy("float32")
    layer(x)
    layer.set_weights(reference.get_weights())
    # Large activations would overflow a float16 softmax over f^T g.
    big = 40.0 * x
    got = np.asarray(layer(big)).astype(np.float32)
    assert layer(big).dtype == "float16"
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, np.asarray(reference(big)), rtol=2e-2, atol=0.5)


# Every custom layer of gan_mri.layers (spectral norm around each kind of layer it takes), made by
# make(dtype) for the (2, 4, 6, 16) input `x`.
CUSTOM_LAYERS = {
    "self_attention": lambda dtype: SelfAttention(dtype=dtype),
    "self_attention_pooled_spectral_norm": lambda dtype: SelfAttention(pool_size=2, use_spectral_norm=True,
                                                                       dtype=dtype),
    "residual_block_instance_norm": lambda dtype: ResidualBlock(norm="instance", dtype=dtype),
    "residual_block_batch_norm": lambda dtype: ResidualBlock(norm="batch", dtype=dtype),
    "residual_block_spectral_norm": lambda dtype: ResidualBlock(use_spectral_norm=True, dtype=dtype),
    "spectral_norm_conv2d": lambda dtype: spectral_norm(keras.layers.Conv2D(8, 3, padding="same", dtype=dtype)),
    "spectral_norm_conv2d_transpose": lambda dtype: spectral_norm(
        keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", dtype=dtype)),
    "spectral_norm_dense": lambda dtype: spectral_norm(keras.layers.Dense(8, dtype=dtype)),
}
EPSILON = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
"""Machine epsilon of the compute dtypes (the spacing of numbers at 1)."""


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(CUSTOM_LAYERS))
def test_custom_layer_under_a_mixed_policy_computes_in_its_dtype_with_float32_variables_close_to_float32(
        x, name, policy):
    compute = policy.removeprefix("mixed_")
    reference, layer = CUSTOM_LAYERS[name]("float32"), CUSTOM_LAYERS[name](policy)
    reference(x)
    layer(x)
    if isinstance(reference, SelfAttention):
        reference.gamma.assign(1.0)  # let the attention show
    layer.set_weights(reference.get_weights())
    assert (layer.compute_dtype, layer.variable_dtype) == (compute, "float32")
    assert [w.path for w in layer.weights if w.dtype != "float32"] == []
    out = layer(x)
    assert keras.backend.standardize_dtype(out.dtype) == compute
    got, expected = keras.ops.convert_to_numpy(keras.ops.cast(out, "float32")), np.asarray(reference(x))
    assert np.all(np.isfinite(got))
    # Measured: largest error up to 1.5 epsilons of the output's largest value, mean error up to 0.8
    # epsilons of its mean magnitude, in either dtype.
    error, eps = np.abs(got - expected), EPSILON[compute]
    assert error.max() <= 8 * eps * np.abs(expected).max(), (error.max(), np.abs(expected).max())
    assert error.mean() <= 2 * eps * np.abs(expected).mean(), (error.mean(), np.abs(expected).mean())
    # A training call advances spectral norm's u (a float32 variable) as the float32 layer's does:
    # the power iteration runs in float32 on the float32 kernel (see the test below).
    layer(x, training=True)
    reference(x, training=True)
    vectors = [(w, r) for w, r in zip(layer.weights, reference.weights) if w.path.endswith("/u")]
    assert len(vectors) == {"self_attention_pooled_spectral_norm": 4, "residual_block_spectral_norm": 2}.get(
        name, 1 if name.startswith("spectral_norm") else 0)
    for mixed_u, float32_u in vectors:
        assert mixed_u.dtype == "float32"
        np.testing.assert_allclose(np.asarray(mixed_u), np.asarray(float32_u), rtol=1e-6, atol=1e-7)
    assert all(np.all(np.isfinite(np.asarray(w))) for w in layer.weights)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_spectral_norm_power_iteration_under_a_mixed_policy_reads_the_float32_kernel(x, policy):
    # Keras autocasts variables read inside a mixed layer's call to the compute dtype; the wrapper
    # turns that off, so u and sigma are the float32 layer's, not those of a rounded kernel.
    reference = spectral_norm(keras.layers.Conv2D(8, 3, padding="same"))
    layer = spectral_norm(keras.layers.Conv2D(8, 3, padding="same", dtype=policy))
    reference(x)
    layer(x)
    layer.set_weights(reference.get_weights())
    layer(x, training=True)
    reference(x, training=True)
    np.testing.assert_allclose(np.asarray(layer.u), np.asarray(reference.u), rtol=1e-6, atol=1e-7)
    normalized = keras.ops.convert_to_numpy(layer.normalized_kernel())
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, np.asarray(reference.normalized_kernel()), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("norm, trainable, non_trainable", [("instance", 6, 0), ("batch", 6, 4)])
def test_residual_block_shapes_and_variables(x, norm, trainable, non_trainable):
    block = ResidualBlock(norm=norm, dropout=0.5)
    y = block(x, training=True)
    assert y.shape == x.shape
    # 2 bias-free convs + 2 norms (scale, offset); batch norm adds 4 moving statistics.
    assert len(block.trainable_weights) == trainable
    assert len(block.non_trainable_weights) == non_trainable


def test_residual_block_is_deterministic_and_instance_normalized_at_inference(x):
    block = ResidualBlock(norm="instance", dropout=0.5)
    first = np.asarray(block(x, training=False))
    np.testing.assert_array_equal(first, np.asarray(block(x, training=False)))
    # Instance norm: a sample's output does not depend on the other samples in the batch.
    other = np.concatenate([x[:1], 5.0 * x[1:]])
    np.testing.assert_allclose(np.asarray(block(other, training=False))[0], first[0], atol=1e-5)
    # Dropout is active while training.
    assert np.abs(np.asarray(block(x, training=True)) - first).max() > 1e-3


def test_residual_block_config_round_trip():
    block = ResidualBlock(norm="batch", dropout=0.25, use_spectral_norm=True, name="rb")
    clone = ResidualBlock.from_config(block.get_config())
    assert (clone.norm, clone.dropout, clone.use_spectral_norm, clone.name) == ("batch", 0.25, True, "rb")


def _top_singular_value(kernel, out_axis=-1):
    kernel = np.moveaxis(np.asarray(kernel), out_axis, -1)
    return np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]


@pytest.mark.parametrize("make, out_axis", [
    (lambda: keras.layers.Conv2D(8, 3, padding="same", kernel_initializer="he_normal"), -1),
    (lambda: keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", kernel_initializer="he_normal"), -2),
    (lambda: keras.layers.Dense(8, kernel_initializer="he_normal"), -1),
])
def test_spectral_norm_normalizes_in_the_forward_pass_and_leaves_the_kernel_alone(make, out_axis):
    rng = np.random.default_rng(0)
    layer = make()
    wrapped = spectral_norm(layer, enabled=True)
    assert isinstance(wrapped, SpectralNormalization)
    x = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    wrapped(x)
    # A kernel of our own (not the backend's random initializer), so sigma is the same everywhere.
    layer.kernel.assign(rng.normal(scale=0.5, size=tuple(layer.kernel.shape)).astype(np.float32))
    kernel = np.asarray(layer.kernel).copy()
    assert _top_singular_value(kernel, out_axis) > 1.2  # far from 1 before normalization
    for _ in range(200):  # each training call runs one power iteration
        wrapped(x, training=True)
    np.testing.assert_array_equal(np.asarray(layer.kernel), kernel)  # never written into
    normalized = np.asarray(wrapped.normalized_kernel())
    np.testing.assert_allclose(_top_singular_value(normalized, out_axis), 1.0, atol=2e-3)
    np.testing.assert_allclose(normalized * _top_singular_value(kernel, out_axis), kernel, rtol=1e-3, atol=1e-5)
    # The output is the wrapped layer's with W / sigma(W), and inference does not move u.
    u = np.asarray(wrapped.u).copy()
    layer.kernel.assign(normalized)
    expected = np.asarray(layer(x))
    layer.kernel.assign(kernel)
    np.testing.assert_allclose(np.asarray(wrapped(x, training=False)), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(wrapped.u), u)
    assert [w.name for w in wrapped.non_trainable_weights] == ["u"]


def test_spectral_norm_gradient_flows_through_sigma_and_it_trains():
    # d(W / sigma(W)) / dW is not 1 / sigma: scaling W leaves W_SN and the output unchanged, so the
    # gradient along W itself is zero.
    rng = np.random.default_rng(1)
    import tensorflow as tf

    wrapped = spectral_norm(keras.layers.Dense(3, use_bias=False), enabled=True)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    wrapped(x)
    for _ in range(30):
        wrapped(x, training=True)
    kernel = wrapped.layer.kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapped(x) ** 2)
    grad = np.asarray(tape.gradient(loss, kernel.value))
    assert abs(float(np.sum(grad * np.asarray(kernel)))) < 1e-3 * np.abs(grad).sum() * np.abs(np.asarray(kernel)).max()
    # It trains: fit a target produced by another unit-norm linear map.
    target_map = np.linalg.qr(rng.normal(size=(5, 3)))[0].astype(np.float32)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, spectral_norm(keras.layers.Dense(3, use_bias=False, name="d"))(inputs))
    model.compile(keras.optimizers.Adam(0.05), "mse")
    data = rng.normal(size=(256, 5)).astype(np.float32)
    before = model.evaluate(data, data @ target_map, verbose=0)
    model.fit(data, data @ target_map, epochs=30, batch_size=32, verbose=0)
    assert model.evaluate(data, data @ target_map, verbose=0) < 0.05 * before


def test_spectral_norm_round_trips_through_a_keras_file(tmp_path):
    inputs = keras.Input((6, 6, 2))
    model = keras.Model(inputs, spectral_norm(keras.layers.Conv2D(4, 3, name="c"), power_iterations=2)(inputs))
    x = np.random.default_rng(2).normal(size=(1, 6, 6, 2)).astype(np.float32)
    model(x, training=True)
    model.save(tmp_path / "sn.keras")
    loaded = keras.models.load_model(tmp_path / "sn.keras")
    assert loaded.get_layer("sn_c").power_iterations == 2
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_spectral_norm_rejects_layers_without_a_supported_kernel():
    with pytest.raises(ValueError, match="expected a Conv2D, Conv2DTranspose or Dense layer, found Embedding"):
        SpectralNormalization(keras.layers.Embedding(4, 2))
    with pytest.raises(ValueError, match="power_iterations must be an integer >= 1; found 0"):
        SpectralNormalization(keras.layers.Dense(2), power_iterations=0)


def test_spectral_norm_disabled_returns_layer_and_bad_norm_is_rejected():
    conv = keras.layers.Conv2D(4, 3)
    assert spectral_norm(conv, enabled=False) is conv
    with pytest.raises(ValueError, match=r"norm must be one of \['instance', 'layer', 'batch'\]; found 'group'"):
        normalization("group")
