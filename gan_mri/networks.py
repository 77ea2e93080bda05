"""Builder functions for the UNIT and CycleGAN sub-networks (Keras functional API).

Widths scale with `base_width` (lineage 64): encoders and generators use base, 2x and 4x
(64/128/256), discriminators base to 8x (64..512). The latent code has shape
(H / 4, W / 4, 4 * base_width). LeakyReLU slopes are 0.01 as in the lineage.

CycleGAN (same lineage): a ResNet generator image -> image (widths w, 2w, 4w; lineage w = 32) and
a PatchGAN discriminator (widths w..8w; lineage w = 64, LeakyReLU 0.2).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import keras
from keras import layers

from gan_mri.config import UPSAMPLING
from gan_mri.layers import ResidualBlock, SelfAttention, normalization, spectral_norm

LEAKY_SLOPE = 0.01
DISCRIMINATOR_SCALES = 3


def strided_conv_dtype(x, strides, dtype):
    """The dtype policy of a (not transposed) conv over ``x``: ``dtype``, but float32 for a strided conv
    whose input is one pixel wide or high when ``dtype`` computes in bfloat16.

    TensorFlow's oneDNN bfloat16 filter gradient (Conv2DBackpropFilter, TensorFlow 2.21 on CPU) of a
    conv with stride > 1 over an input one pixel wide returns undefined values in the kernel taps
    that see only padding: NaN in about half the calls, wrong finite numbers in most others
    (float32, float16, stride 1, the input gradient and JAX's are exact). UNIT's coarsest
    discriminator scale meets one at 32x32 (conv3 on 1x1): the NaN reaches the whole kernel through
    spectral normalization's sigma, or the output through NaN x 0 padding, and stopped bfloat16
    training within 2-4 steps (issue 37). A one-pixel conv costs nothing in float32, and float32
    policies are unchanged. A one-pixel-high input is guarded too, as a precaution (measured exact
    at 1x8).

    Args:
        x: the conv's input (a KerasTensor with static height and width).
        strides: the conv's strides (int or pair).
        dtype: the network's dtype policy (name or policy; None: Keras's global policy).

    Returns:
        "float32" or ``dtype``.
    """
    policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
    strided = max(strides if isinstance(strides, (tuple, list)) else (strides,)) > 1
    if policy.compute_dtype == "bfloat16" and strided and 1 in tuple(x.shape[1:3]):
        return "float32"
    return dtype


def _conv(filters, kernel, strides, sn, name, transpose=False, use_bias=True, dtype=None):
    cls = layers.Conv2DTranspose if transpose else layers.Conv2D
    return spectral_norm(cls(filters, kernel, strides=strides, padding="same", use_bias=use_bias, name=name,
                             dtype=dtype), sn)


def _conv_block(x, filters, kernel, strides, sn, conv_norm, name, upsample=None, dtype=None):
    """[upsample x2 ->] conv -> [conv_norm ->] LeakyReLU: one scale step of an encoder or generator.

    ``upsample`` None: a plain (strided) conv; "transpose": a transposed conv 3x3/2 (the lineage);
    "nearest": nearest-neighbour x2 then a conv, which cannot make the checkerboard pattern of
    transposed convs whose kernel is not a multiple of the stride (Odena et al. 2016).
    """
    if upsample == "nearest":
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"{name}_upsample", dtype=dtype)(x)
        strides = 1
    conv_dtype = strided_conv_dtype(x, strides, dtype) if upsample is None else dtype
    x = _conv(filters, kernel, strides, sn, name, transpose=upsample == "transpose",
              use_bias=conv_norm == "none", dtype=conv_dtype)(x)
    if conv_norm != "none":
        x = normalization(conv_norm, name=f"{name}_norm", dtype=dtype)(x)
    return layers.LeakyReLU(LEAKY_SLOPE, name=name.replace("conv", "lrelu"), dtype=dtype)(x)


def _res_blocks(x, count, norm, dropout, sn, prefix, dtype=None):
    for i in range(count):
        x = ResidualBlock(norm=norm, dropout=dropout, use_spectral_norm=sn, name=f"{prefix}_res{i}", dtype=dtype)(x)
    return x


def build_encoder(
    image_shape: Sequence[int],
    channels: int,
    base_width: int,
    res_blocks: int,
    norm: str = "instance",
    dropout: float = 0.0,
    attention: bool = False,
    use_spectral_norm: bool = False,
    conv_norm: str = "none",
    downsampling: int = 2,
    attention_pool: int = 1,
    name: str = "encoder",
    dtype=None,
) -> keras.Model:
    """Domain encoder: image -> features at the latent resolution.

    conv 7x7 (w) -> conv 3x3/2 (2w) -> conv 3x3/2 (4w), each with `conv_norm` and LeakyReLU, then
    `res_blocks` residual blocks and, when `attention`, a SelfAttention layer.

    Args:
        image_shape: (H, W).
        channels: image channels.
        base_width: w.
        res_blocks: number of residual blocks.
        norm, dropout: residual block settings.
        attention: append SelfAttention at the latent resolution.
        use_spectral_norm: spectrally normalize every conv.
        conv_norm: normalization after each conv, "none" (the lineage), "instance" or "layer".
        downsampling: number of stride-2 convs d (the lineage: 2); each doubles the width.
        attention_pool: the SelfAttention's `pool_size` (keys and values pooled p x p).
        name: model name.
        dtype: dtype policy of every layer (e.g. "mixed_float16"); None: Keras's global policy.

    Returns:
        A functional model (B, H, W, channels) -> (B, H/2^d, W/2^d, 2^d w).
    """
    image = keras.Input((*image_shape, channels), name="image")
    x = image
    steps = [(base_width, 7, 1)] + [(2**i * base_width, 3, 2) for i in range(1, downsampling + 1)]
    for i, (filters, kernel, strides) in enumerate(steps):
        x = _conv_block(x, filters, kernel, strides, use_spectral_norm, conv_norm, f"conv{i}", dtype=dtype)
    x = _res_blocks(x, res_blocks, norm, dropout, use_spectral_norm, "enc", dtype=dtype)
    if attention:
        x = SelfAttention(pool_size=attention_pool, use_spectral_norm=use_spectral_norm, name="attention",
                          dtype=dtype)(x)
    return keras.Model(image, x, name=name)


def build_shared_encoder(
    latent_shape: Sequence[int],
    res_blocks: int,
    norm: str = "instance",
    dropout: float = 0.0,
    noise_std: float = 1.0,
    use_spectral_norm: bool = False,
    name: str = "shared_encoder",
    dtype=None,
) -> keras.Model:
    """Shared encoder (one set of weights for both domains): residual blocks, then noise.

    `dtype` is the dtype policy of every layer (None: Keras's global policy).

    Returns:
        A functional model features -> [mu, z]: mu is the latent mean (the KL term's input),
        z = mu + N(0, noise_std^2) while training and z = mu at inference.
    """
    features = keras.Input(tuple(latent_shape), name="features")
    mu = _res_blocks(features, res_blocks, norm, dropout, use_spectral_norm, "shared_enc", dtype=dtype)
    z = layers.GaussianNoise(noise_std, name="latent_noise", dtype=dtype)(mu)
    return keras.Model(features, [mu, z], name=name)


def build_shared_decoder(
    latent_shape: Sequence[int],
    res_blocks: int,
    norm: str = "instance",
    dropout: float = 0.0,
    use_spectral_norm: bool = False,
    name: str = "shared_decoder",
    dtype=None,
) -> keras.Model:
    """Shared decoder (one set of weights for both domains): residual blocks on the latent code.

    `dtype` is the dtype policy of every layer (None: Keras's global policy).

    Returns:
        A functional model z -> features, both of shape `latent_shape`.
    """
    z = keras.Input(tuple(latent_shape), name="z")
    x = _res_blocks(z, res_blocks, norm, dropout, use_spectral_norm, "shared_dec", dtype=dtype)
    return keras.Model(z, x, name=name)


def build_generator(
    latent_shape: Sequence[int],
    channels: int,
    base_width: int,
    res_blocks: int,
    norm: str = "instance",
    dropout: float = 0.0,
    attention: bool = False,
    use_spectral_norm: bool = False,
    conv_norm: str = "none",
    upsample: str = "transpose",
    downsampling: int = 2,
    attention_pool: int = 1,
    prior_channels: int = 0,
    name: str = "generator",
    dtype=None,
) -> keras.Model:
    """Domain generator: latent features -> image in [-1, 1].

    `res_blocks` residual blocks (and SelfAttention when `attention`), `downsampling` x2
    upsampling steps (the lineage's two: 2w, then w channels), each with `conv_norm` and
    LeakyReLU, a 1x1 conv to `channels`, tanh in float32. `upsample` "transpose" is the lineage's
    transposed conv 3x3/2; "nearest" is nearest-neighbour x2 followed by a conv 3x3 (no
    checkerboard artefacts). `attention_pool` is the SelfAttention's `pool_size`. `dtype` is the
    dtype policy of every layer but the float32 tanh (None: Keras's global policy).
    `prior_channels` > 0 adds a second input, a prior image (the remap prior's "channel" mode,
    `gan_mri.remap_prior`), concatenated with the last upsampled features and mixed by a conv 3x3 (w)
    and LeakyReLU before the 1x1 conv.

    Returns:
        A functional model (B, H/2^d, W/2^d, 2^d w) -> (B, H, W, channels), float32 output; with
        `prior_channels`, [features, prior (B, H, W, prior_channels)] -> image.
    """
    features = keras.Input(tuple(latent_shape), name="features")
    x = _res_blocks(features, res_blocks, norm, dropout, use_spectral_norm, "gen", dtype=dtype)
    if attention:
        x = SelfAttention(pool_size=attention_pool, use_spectral_norm=use_spectral_norm, name="attention",
                          dtype=dtype)(x)
    if upsample not in UPSAMPLING:
        raise ValueError(f"upsample must be one of {list(UPSAMPLING)}; found {upsample!r}")
    for i in range(downsampling):
        filters = 2 ** (downsampling - 1 - i) * base_width
        x = _conv_block(x, filters, 3, 2, use_spectral_norm, conv_norm, f"upconv{i}", upsample=upsample, dtype=dtype)
    inputs = features
    if prior_channels:
        prior = keras.Input((*x.shape[1:3], prior_channels), name="prior")
        x = layers.Concatenate(name="with_prior", dtype=dtype)([x, prior])
        x = _conv_block(x, base_width, 3, 1, use_spectral_norm, "none", "prior_conv", dtype=dtype)
        inputs = [features, prior]
    x = _conv(channels, 1, 1, use_spectral_norm, "to_image", dtype=dtype)(x)
    # tanh in float32: a float16 tanh output would quantise intensities near +-1.
    image = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(inputs, image, name=name)


def multi_scale_discriminator(
    image_shape: Sequence[int],
    channels: int,
    single_scale: Callable,
    scales: int,
    downsample: Callable,
    name: str,
    always_list: bool = True,
) -> keras.Model:
    """A discriminator that applies one single-scale discriminator per scale, each with its own weights.

    Scale 0 sees the image, scale s the image downsampled s times by `downsample` (Wang et al.'s
    pix2pixHD; UNIT and CycleGAN's multi-scale option). Each scale's output is cast to float32.

    Args:
        image_shape: (H, W).
        channels: image channels.
        single_scale: `single_scale(x, prefix)` adds one scale's layers (named `<prefix>_...`) to
            the graph of `x` and returns its score or logit map; the prefix of scale s is "s<s>".
        scales: number of scales (>= 1).
        downsample: `downsample(s)` returns the layer that halves the image before scale s.
        name: model name.
        always_list: return a list even for one scale (False: a single map when `scales` is 1).

    Returns:
        A functional model image -> list of `scales` maps (coarser scales give smaller maps).
    """
    image = keras.Input((*image_shape, channels), name="image")
    outputs = []
    x_scale = image
    for s in range(scales):
        if s > 0:
            x_scale = downsample(s)(x_scale)
        x = single_scale(x_scale, f"s{s}")
        outputs.append(layers.Activation("linear", dtype="float32", name=f"s{s}_float32")(x))
    return keras.Model(image, outputs if always_list or scales > 1 else outputs[0], name=name)


def unit_discriminator_scale(x, prefix: str, base_width: int, use_spectral_norm: bool = False, dtype=None):
    """UNIT's single-scale discriminator: 4 convs 3x3/2 (w, 2w, 4w, 8w) with LeakyReLU(0.01), then a
    1x1 conv to one logit map. Layers are named `<prefix>_conv<i>`, `<prefix>_lrelu<i>`, `<prefix>_logits`."""
    for i, mult in enumerate([1, 2, 4, 8]):
        x = _conv(mult * base_width, 3, 2, use_spectral_norm, f"{prefix}_conv{i}",
                  dtype=strided_conv_dtype(x, 2, dtype))(x)
        x = layers.LeakyReLU(LEAKY_SLOPE, name=f"{prefix}_lrelu{i}", dtype=dtype)(x)
    return _conv(1, 1, 1, use_spectral_norm, f"{prefix}_logits", dtype=dtype)(x)


def build_discriminator(
    image_shape: Sequence[int],
    channels: int,
    base_width: int,
    use_spectral_norm: bool = False,
    scales: int = DISCRIMINATOR_SCALES,
    name: str = "discriminator",
    dtype=None,
) -> keras.Model:
    """UNIT's multi-scale discriminator: `unit_discriminator_scale` at the input, /2 and /4.

    The image is average-pooled (3x3, stride 2) between scales. Outputs are logits (no sigmoid),
    in float32, for `from_logits`-style losses. `dtype` is the dtype policy of every layer but the
    float32 outputs (None: Keras's global policy).

    Returns:
        A functional model image -> list of `scales` logit maps.
    """
    return multi_scale_discriminator(
        image_shape, channels,
        functools.partial(unit_discriminator_scale, base_width=base_width, use_spectral_norm=use_spectral_norm,
                          dtype=dtype),
        scales, lambda s: layers.AveragePooling2D(3, strides=2, padding="same", name=f"down{s}", dtype=dtype), name)


# ------------------------------------------------------------------------------- CycleGAN
PATCH_LEAKY_SLOPE = 0.2


def _conv_norm_act(x, filters, kernel, strides, norm, name, transpose=False, activation="relu", dtype=None):
    """Conv (no bias: the norm removes it) -> norm -> activation; `norm=None` keeps the bias."""
    cls = layers.Conv2DTranspose if transpose else layers.Conv2D
    x = cls(filters, kernel, strides=strides, padding="same", use_bias=norm is None, name=f"{name}_conv",
            dtype=dtype if transpose else strided_conv_dtype(x, strides, dtype))(x)
    if norm is not None:
        x = normalization(norm, name=f"{name}_norm", dtype=dtype)(x)
    if activation == "relu":
        return layers.ReLU(name=f"{name}_relu", dtype=dtype)(x)
    return layers.LeakyReLU(PATCH_LEAKY_SLOPE, name=f"{name}_lrelu", dtype=dtype)(x)


def build_resnet_generator(
    image_shape: Sequence[int],
    channels: int,
    base_width: int = 32,
    res_blocks: int = 9,
    norm: str = "instance",
    prior_channels: int = 0,
    name: str = "generator",
    dtype=None,
) -> keras.Model:
    """CycleGAN ResNet generator (Johnson et al. 2016, as in the GAN-MRI lineage): image -> image.

    conv 7x7 (w) -> conv 3x3/2 (2w) -> conv 3x3/2 (4w) -> `res_blocks` residual blocks (4w)
    -> transposed conv 3x3/2 (2w) -> transposed conv 3x3/2 (w) -> conv 7x7 (channels) -> tanh.
    Every conv but the last is followed by `norm` and ReLU. Lineage: w = 32, 9 blocks.
    Zero "same" padding replaces the lineage's reflection padding of the 7x7 convs.

    Args:
        image_shape: (H, W), multiples of 4.
        channels: image channels (input and output).
        base_width: w.
        res_blocks: residual blocks at the bottleneck (no dropout).
        norm: "instance" or "batch".
        prior_channels: > 0 adds a second input, a prior image (the remap prior's "channel" mode,
            `gan_mri.remap_prior`), concatenated with the image as extra input channels.
        name: model name.
        dtype: dtype policy of every layer but the float32 tanh (None: Keras's global policy).

    Returns:
        A functional model (B, H, W, channels) -> (B, H, W, channels), float32 output in [-1, 1];
        with `prior_channels`, [image, prior (B, H, W, prior_channels)] -> translation.
    """
    image = keras.Input((*image_shape, channels), name="image")
    inputs, x = image, image
    if prior_channels:
        prior = keras.Input((*image_shape, prior_channels), name="prior")
        inputs, x = [image, prior], layers.Concatenate(name="with_prior", dtype=dtype)([image, prior])
    x = _conv_norm_act(x, base_width, 7, 1, norm, "in", dtype=dtype)
    for i, mult in enumerate([2, 4]):
        x = _conv_norm_act(x, mult * base_width, 3, 2, norm, f"down{i}", dtype=dtype)
    x = _res_blocks(x, res_blocks, norm, 0.0, False, "gen", dtype=dtype)
    for i, mult in enumerate([2, 1]):
        x = _conv_norm_act(x, mult * base_width, 3, 2, norm, f"up{i}", transpose=True, dtype=dtype)
    x = layers.Conv2D(channels, 7, padding="same", name="to_image", dtype=dtype)(x)
    # tanh in float32: a float16 tanh output would quantise intensities near +-1.
    translated = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(inputs, translated, name=name)


def patch_discriminator_scale(x, prefix: str, base_width: int = 64, norm: str = "instance", dtype=None):
    """CycleGAN's single-scale PatchGAN (70x70 receptive field): conv 4x4/2 (w, no norm) -> conv 4x4/2 (2w)
    -> conv 4x4/2 (4w) -> conv 4x4/1 (8w), each with LeakyReLU(0.2) and `norm` after all but the first,
    then a conv 4x4/1 to one score map (no activation: least-squares GAN scores). Layers are named
    `<prefix>_c<i>_...` and `<prefix>_scores`."""
    for i, (mult, strides) in enumerate([(1, 2), (2, 2), (4, 2), (8, 1)]):
        x = _conv_norm_act(x, mult * base_width, 4, strides, None if i == 0 else norm, f"{prefix}_c{i}",
                           activation="leaky", dtype=dtype)
    return layers.Conv2D(1, 4, padding="same", name=f"{prefix}_scores", dtype=dtype)(x)


def build_patch_discriminator(
    image_shape: Sequence[int],
    channels: int,
    base_width: int = 64,
    scales: int = 1,
    norm: str = "instance",
    name: str = "discriminator",
    dtype=None,
) -> keras.Model:
    """PatchGAN discriminator (`patch_discriminator_scale`), optionally multi-scale.

    Scale s sees the image average-pooled by 2^s (the lineage's multi-scale option uses 2 scales).
    Lineage: w = 64.

    Args:
        image_shape: (H, W).
        channels: image channels.
        base_width: w.
        scales: number of scales (1 = plain PatchGAN).
        norm: "instance" or "batch".
        name: model name.
        dtype: dtype policy of every layer but the float32 outputs (None: Keras's global policy).

    Returns:
        A functional model image -> float32 score map (B, H/8, W/8, 1) when `scales` is 1,
        else a list of `scales` score maps (coarser scales give smaller maps).
    """
    return multi_scale_discriminator(
        image_shape, channels,
        functools.partial(patch_discriminator_scale, base_width=base_width, norm=norm, dtype=dtype),
        scales, lambda s: layers.AveragePooling2D(2, name=f"down{s}", dtype=dtype), name, always_list=False)
