"""Custom layers of the UNIT family: SAGAN self-attention, the residual block, spectral norm.

Every layer is registered under the "gan_mri" package and implements `get_config`, so models that
use them save to `.keras` files and load with `keras.models.load_model` without custom code paths.
"""

from __future__ import annotations

import keras
from keras import layers, ops

PACKAGE = "gan_mri"


def spectral_norm(layer: keras.layers.Layer, enabled: bool = True, power_iterations: int = 1):
    """Wraps a layer that has a kernel in `keras.layers.SpectralNormalization` when asked.

    Args:
        layer: a Conv2D, Conv2DTranspose, Dense, ... layer.
        enabled: wrap only when True (so callers can pass a config flag straight through).
        power_iterations: power iterations per training call.

    Returns:
        The wrapped layer, or `layer` itself when `enabled` is False.
    """
    if not enabled:
        return layer
    # The wrapper takes the wrapped layer's dtype policy, whatever the global policy is now.
    return layers.SpectralNormalization(
        layer, power_iterations=power_iterations, name=f"sn_{layer.name}", dtype=layer.dtype_policy
    )


def normalization(norm: str, name: str | None = None, dtype=None) -> keras.layers.Layer:
    """Returns the normalization layer of a residual block.

    Args:
        norm: "instance" (per-sample, per-channel statistics over height and width, with a
            learned scale and offset) or "batch".
        name: layer name.
        dtype: dtype policy (default: the global policy).

    Raises:
        ValueError: for any other value of `norm`.
    """
    if norm == "instance":
        # groups=-1 puts every channel in its own group: instance normalization.
        return layers.GroupNormalization(groups=-1, epsilon=1e-5, name=name, dtype=dtype)
    if norm == "batch":
        return layers.BatchNormalization(name=name, dtype=dtype)
    raise ValueError(f"norm must be one of ['instance', 'batch']; found {norm!r}")


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualBlock(layers.Layer):
    """Residual block: conv3x3 -> norm -> ReLU -> conv3x3 -> norm -> dropout -> + input.

    Args:
        norm: "instance" or "batch".
        dropout: dropout rate before the skip connection (active only while training).
        use_spectral_norm: wrap both convolutions in spectral normalization.
        **kwargs: base `Layer` arguments (name, dtype, ...).

    Input and output shape: (batch, H, W, C); the block keeps C.
    """

    def __init__(self, norm: str = "instance", dropout: float = 0.0, use_spectral_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.norm = norm
        self.dropout = dropout
        self.use_spectral_norm = use_spectral_norm
        # Sub-layers take this layer's policy, not the global one at build time.
        self.norm1 = normalization(norm, name="norm1", dtype=self.dtype_policy)
        self.norm2 = normalization(norm, name="norm2", dtype=self.dtype_policy)
        self.drop = layers.Dropout(dropout, name="dropout", dtype=self.dtype_policy)
        self.conv1 = None
        self.conv2 = None

    def build(self, input_shape):
        channels = input_shape[-1]

        def conv(name):
            # The norm that follows each conv removes any bias, so the convs have none.
            layer = layers.Conv2D(
                channels, 3, padding="same", use_bias=False, name=name, dtype=self.dtype_policy
            )
            return spectral_norm(layer, self.use_spectral_norm)

        self.conv1 = conv("conv1")
        self.conv2 = conv("conv2")
        self.conv1.build(input_shape)
        self.norm1.build(input_shape)
        self.conv2.build(input_shape)
        self.norm2.build(input_shape)

    def call(self, inputs, training=None):
        x = self.conv1(inputs, training=training)
        x = self.norm1(x, training=training)
        x = ops.relu(x)
        x = self.conv2(x, training=training)
        x = self.norm2(x, training=training)
        x = self.drop(x, training=training)
        return inputs + ops.cast(x, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(norm=self.norm, dropout=self.dropout, use_spectral_norm=self.use_spectral_norm)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class SelfAttention(layers.Layer):
    """SAGAN self-attention (Zhang et al. 2018) over all spatial positions.

    With x of shape (B, H, W, C) and N = H * W positions:
        f = W_f x,  g = W_g x  (1x1 convs, C // 8 channels),  h = W_h x  (1x1 conv, C channels)
        beta[j, i] = softmax_i( g_j . f_i )            attention of output j on input i
        o_j = W_o( sum_i beta[j, i] h_i )              (W_o a 1x1 conv, C channels)
        y = gamma * o + x,  gamma a trainable scalar initialised to 0 (the layer starts as
        the identity).

    The attention itself runs through `keras.ops.dot_product_attention` (scale 1, as in SAGAN)
    in float32, so the softmax cannot overflow under mixed_float16.

    Args:
        key_channels: channels of f and g; default max(1, C // 8).
        use_spectral_norm: wrap the four 1x1 convs in spectral normalization.
        **kwargs: base `Layer` arguments.
    """

    def __init__(self, key_channels: int | None = None, use_spectral_norm: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.key_channels = key_channels
        self.use_spectral_norm = use_spectral_norm

    def build(self, input_shape):
        channels = input_shape[-1]
        keys = self.key_channels or max(1, channels // 8)

        def conv(filters, name):
            layer = layers.Conv2D(filters, 1, name=name, dtype=self.dtype_policy)
            return spectral_norm(layer, self.use_spectral_norm)

        self.f = conv(keys, "f")
        self.g = conv(keys, "g")
        self.h = conv(channels, "h")
        self.out = conv(channels, "out")
        for sub in (self.f, self.g, self.h):
            sub.build(input_shape)
        self.out.build(input_shape)
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros", trainable=True)

    def call(self, inputs, training=None):
        batch = ops.shape(inputs)[0]
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]

        def tokens(x):
            # (B, H, W, K) -> (B, N, 1 head, K) in float32 for a safe softmax.
            return ops.cast(ops.reshape(x, (batch, height * width, 1, x.shape[-1])), "float32")

        query = tokens(self.g(inputs, training=training))
        key = tokens(self.f(inputs, training=training))
        value = tokens(self.h(inputs, training=training))
        attended = ops.dot_product_attention(query, key, value, scale=1.0)
        attended = ops.reshape(attended, (batch, height, width, channels))
        o = self.out(ops.cast(attended, self.compute_dtype), training=training)
        return inputs + ops.cast(ops.cast(self.gamma, o.dtype) * o, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(key_channels=self.key_channels, use_spectral_norm=self.use_spectral_norm)
        return config
