"""Sub-network builders: shapes, widths, variable counts, noise only while training."""

import keras
import numpy as np
import pytest

from gan_mri import networks


def _conv_widths(model):
    """Output channels of every conv, in layer order (a Conv2D kernel is (kh, kw, in, out))."""
    return [v.shape[-1] for v in model.weights if v.path.endswith("/kernel")]


def test_encoder_shape_widths_and_variables():
    encoder = networks.build_encoder((32, 32), 1, base_width=8, res_blocks=2)
    assert encoder.output_shape == (None, 8, 8, 32)
    # conv 7x7 (8), conv 3x3/2 (16), conv 3x3/2 (32), then 2 residual blocks of two 32-convs.
    assert _conv_widths(encoder) == [8, 16, 32, 32, 32, 32, 32]
    assert len(encoder.trainable_variables) == 3 * 2 + 2 * 6


def test_encoder_with_attention_and_spectral_norm():
    encoder = networks.build_encoder((32, 32), 3, 8, 1, attention=True, use_spectral_norm=True)
    assert encoder.get_layer("attention").use_spectral_norm
    # 3 convs + 1 block + attention (4 convs with bias, gamma).
    assert len(encoder.trainable_variables) == 6 + 6 + 9
    us = [v for v in encoder.non_trainable_variables if v.path.endswith("/u")]
    assert len(us) == 3 + 2 + 4


@pytest.mark.parametrize("preset, recipe, size, encoder_pool, generator_pool", [
    ("sa-enc-cl-sn", "default", 64, 2, None), ("sa-enc-cl-sn", "default", 128, 4, None),
    ("sa-enc-cl-sn", "lineage", 64, 1, None), ("sa-gen", "default", 64, None, 2), ("sa-gen", "default", 32, None, 1)])
def test_unit_attention_layers_take_the_configs_pool(preset, recipe, size, encoder_pool, generator_pool):
    from gan_mri.config import get_preset
    from gan_mri.models import build_model

    model = build_model(get_preset(preset, recipe=recipe, image_shape=(size, size), base_width=4))
    for network, pool in ((model.encoder_a, encoder_pool), (model.generator_b, generator_pool)):
        names = [layer.name for layer in network.layers]
        assert ("attention" in names) == (pool is not None)
        if pool is not None:
            assert network.get_layer("attention").pool_size == pool


def test_generator_output_is_float32_tanh_even_under_mixed_precision():
    generator = networks.build_generator((8, 8, 32), 3, base_width=8, res_blocks=1, attention=True,
                                         dtype="mixed_float16")
    # The policy goes to every layer; Keras's global policy is neither read nor changed.
    assert keras.mixed_precision.global_policy().name == "float32"
    assert generator.get_layer("upconv0").compute_dtype == "float16"
    assert generator.get_layer("attention").compute_dtype == "float16"
    assert generator.get_layer("gen_res0").norm1.compute_dtype == "float16"
    z = np.random.default_rng(0).normal(0, 50, (2, 8, 8, 32)).astype(np.float32)
    image = generator(z)
    assert image.shape == (2, 32, 32, 3) and image.dtype == "float32"
    assert np.all(np.abs(np.asarray(image)) <= 1.0)
    widths = [generator.get_layer(name).filters for name in ("upconv0", "upconv1", "to_image")]
    assert widths == [16, 8, 3]


def test_discriminator_three_scales_of_logits():
    disc = networks.build_discriminator((32, 64), 1, base_width=8)
    outputs = disc(np.zeros((2, 32, 64, 1), np.float32))
    assert [tuple(o.shape) for o in outputs] == [(2, 2, 4, 1), (2, 1, 2, 1), (2, 1, 1, 1)]
    assert all(o.dtype == "float32" for o in outputs)
    # Per scale: 8, 16, 32, 64 and the 1-channel logit conv, each scale with its own weights.
    assert sorted(_conv_widths(disc)) == sorted([8, 16, 32, 64, 1] * 3)
    assert len(disc.trainable_variables) == 3 * 5 * 2


@pytest.mark.parametrize("family", ["unit", "cyclegan"])
def test_both_families_discriminators_are_one_single_scale_network_per_scale(family):
    if family == "unit":
        disc = networks.build_discriminator((32, 32), 1, base_width=4, scales=2, dtype="mixed_float16")
        first = ["s0_conv0", "s0_lrelu0", "s0_conv1", "s0_lrelu1", "s0_conv2", "s0_lrelu2", "s0_conv3", "s0_lrelu3",
                 "s0_logits"]
    else:
        disc = networks.build_patch_discriminator((32, 32), 1, base_width=4, scales=2, dtype="mixed_float16")
        first = ["s0_c0_conv", "s0_c0_lrelu", "s0_c1_conv", "s0_c1_norm", "s0_c1_lrelu", "s0_c2_conv", "s0_c2_norm",
                 "s0_c2_lrelu", "s0_c3_conv", "s0_c3_norm", "s0_c3_lrelu", "s0_scores"]
    names = [layer.name for layer in disc.layers]
    # Scale 1 repeats scale 0's layers under its own prefix (own weights) after the downsampling.
    assert [n for n in names if n.startswith("s0_") and n != "s0_float32"] == first
    assert [n for n in names if n.startswith("s1_") and n != "s1_float32"] == [n.replace("s0_", "s1_") for n in first]
    assert "down1" in names and "down0" not in names
    assert disc.get_layer(first[0]).compute_dtype == "float16"
    outputs = disc(np.zeros((2, 32, 32, 1), np.float32))
    assert len(outputs) == 2 and all(o.dtype == "float32" for o in outputs)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_shared_encoder_adds_noise_only_while_training():
    shared = networks.build_shared_encoder((8, 8, 32), res_blocks=1, noise_std=1.0)
    features = np.random.default_rng(1).normal(size=(2, 8, 8, 32)).astype(np.float32)
    mu, z = shared(features, training=False)
    np.testing.assert_array_equal(np.asarray(mu), np.asarray(z))
    mu, z = shared(features, training=True)
    noise = np.asarray(z) - np.asarray(mu)
    assert noise.std() == pytest.approx(1.0, abs=0.1)


def test_shared_decoder_keeps_latent_shape():
    decoder = networks.build_shared_decoder((8, 4, 16), res_blocks=2, norm="batch")
    assert decoder.output_shape == (None, 8, 4, 16)
    assert len(decoder.trainable_variables) == 2 * 6


@pytest.mark.parametrize("downsampling, latent", [(1, (16, 16, 16)), (2, (8, 8, 32)), (3, (4, 4, 64))])
def test_downsampling_sets_the_latent_resolution_and_the_generator_inverts_it(downsampling, latent):
    encoder = networks.build_encoder((32, 32), 1, base_width=8, res_blocks=1, downsampling=downsampling)
    assert encoder.output_shape == (None, *latent)
    assert [encoder.get_layer(f"conv{i}").strides for i in range(downsampling + 1)] == [(1, 1)] + [(2, 2)] * downsampling
    generator = networks.build_generator(latent, 1, base_width=8, res_blocks=1, downsampling=downsampling)
    assert generator.output_shape == (None, 32, 32, 1)
    assert [generator.get_layer(f"upconv{i}").filters for i in range(downsampling)] == [
        8 * 2 ** (downsampling - 1 - i) for i in range(downsampling)]


def test_nearest_upsampling_and_conv_norm_build_the_documented_layers():
    generator = networks.build_generator((8, 8, 32), 1, base_width=8, res_blocks=0, upsample="nearest",
                                         conv_norm="instance")
    assert isinstance(generator.get_layer("upconv0_upsample"), keras.layers.UpSampling2D)
    conv = generator.get_layer("upconv0")
    assert isinstance(conv, keras.layers.Conv2D) and not isinstance(conv, keras.layers.Conv2DTranspose)
    assert conv.strides == (1, 1) and not conv.use_bias  # the norm that follows removes a bias
    assert isinstance(generator.get_layer("upconv0_norm"), keras.layers.GroupNormalization)
    transposed = networks.build_generator((8, 8, 32), 1, base_width=8, res_blocks=0)
    assert isinstance(transposed.get_layer("upconv0"), keras.layers.Conv2DTranspose)
    assert transposed.get_layer("upconv0").use_bias
    with pytest.raises(ValueError, match=r"upsample must be one of \['transpose', 'nearest'\]; found 'bilinear'"):
        networks.build_generator((8, 8, 32), 1, base_width=8, res_blocks=0, upsample="bilinear")
