"""CycleGAN: config and preset, networks, LSGAN losses, image pool, LR schedule, train step,
learning, save/load, and the shared train/evaluate/translate/export path."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_mri import losses as L
from gan_mri import networks
from gan_mri.config import CycleGANConfig, all_preset_names, config_from_dict, get_preset
from gan_mri.models import CycleGAN, build_model
from gan_mri.models.cyclegan import ImagePool, LinearDecaySchedule
from model_contract import MIXED_POLICIES, check_precision_policy, check_translation_model
from synthetic import random_shapes

TINY = dict(image_shape=(32, 32), base_width=8, res_blocks=1, precision="float32")


def tiny(**overrides):
    return build_model(get_preset("cyclegan", **{**TINY, **overrides}))


def images(n, channels=1, seed=0, size=32):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, channels)).astype(np.float32)


# ------------------------------------------------------------------------------------ config
def test_preset_has_the_lineage_values_and_round_trips_through_json(tmp_path):
    config = get_preset("cyclegan")
    assert isinstance(config, CycleGANConfig) and config.name == "cyclegan" and config.model == "cyclegan"
    assert (config.base_width, config.discriminator_width, config.res_blocks) == (32, 64, 9)
    assert (config.cycle_weight, config.identity_weight, config.pool_size) == (10.0, 0.0, 50)
    assert (config.g_learning_rate, config.d_learning_rate, config.beta_1, config.beta_2) == (2e-4, 2e-4, 0.5, 0.999)
    assert config.decay_start == 0.5 and config.norm == "instance"
    assert "cyclegan" in all_preset_names() and all_preset_names()[:8][-1] == "sa-enc-cl-sn"

    small = get_preset("cyclegan", image_shape=(32, 64), base_width=8, discriminator_scales=2)
    assert config_from_dict(json.loads(small.to_json())) == small
    small.to_json(tmp_path / "config.json")
    assert CycleGANConfig.from_json(tmp_path / "config.json") == small
    assert small.image_shape == (32, 64) and small.discriminator_width == 16


@pytest.mark.parametrize("overrides, message", [
    ({"image_shape": (30, 32)}, r"CycleGANConfig.image_shape must be .*multiples of 4; found \(30, 32\)"),
    ({"pool_size": -1}, r"CycleGANConfig.pool_size must be an integer >= 0; found -1"),
    ({"identity_weight": -0.5}, r"CycleGANConfig.identity_weight must be a number >= 0; found -0.5"),
    ({"decay_start": 1.5}, r"CycleGANConfig.decay_start must be a fraction in \[0, 1\]; found 1.5"),
    ({"norm": "group"}, r"CycleGANConfig.norm must be one of \['instance', 'layer', 'batch'\]; found 'group'"),
    ({"discriminator_scales": 0}, r"discriminator_scales must be an integer >= 1; found 0"),
    ({"res_block": 2}, r"Unknown CycleGANConfig fields \['res_block'\]"),
])
def test_invalid_fields_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        get_preset("cyclegan", **overrides)


def test_unknown_preset_lists_cyclegan_too():
    with pytest.raises(ValueError, match=r"Unknown preset 'cycle-gan'.*'sa-enc-cl-sn', 'cyclegan'\]"):
        get_preset("cycle-gan")


# ---------------------------------------------------------------------------------- networks
@pytest.mark.parametrize("res_blocks", [1, 2])
def test_resnet_generator_layout(res_blocks):
    net = networks.build_resnet_generator((32, 32), 1, base_width=8, res_blocks=res_blocks)
    assert net.output_shape == (None, 32, 32, 1)
    assert net.get_layer("in_conv").kernel.shape == (7, 7, 1, 8)
    assert net.get_layer("down0_conv").output.shape == (None, 16, 16, 16)
    assert net.get_layer("down1_conv").output.shape == (None, 8, 8, 32)
    assert net.get_layer("up1_conv").output.shape == (None, 32, 32, 8)
    assert net.get_layer("to_image").kernel.shape == (7, 7, 8, 1)
    assert len([layer for layer in net.layers if "res" in layer.name]) == res_blocks
    # Bias-free convs before a norm: 5 + 2 per block, each norm with scale and offset; the output
    # conv has kernel and bias.
    assert len(net.trainable_variables) == 3 * (5 + 2 * res_blocks) + 2


def test_patch_discriminator_layout_and_scales():
    one = networks.build_patch_discriminator((64, 64), 3, base_width=16)
    assert one.output_shape == (None, 8, 8, 1)
    assert [one.get_layer(f"s0_c{i}_conv").kernel.shape[-1] for i in range(4)] == [16, 32, 64, 128]
    assert one.get_layer("s0_c3_conv").strides == (1, 1) and one.get_layer("s0_c0_conv").strides == (2, 2)
    two = networks.build_patch_discriminator((64, 64), 1, base_width=16, scales=2)
    outputs = two(images(1, size=64))
    assert [tuple(o.shape) for o in outputs] == [(1, 8, 8, 1), (1, 4, 4, 1)]


# ------------------------------------------------------------------------------------ losses
def test_discriminator_loss_is_the_halved_least_squares_loss_with_its_accuracy():
    model = tiny()
    x = {"A": images(2, seed=3), "B": images(2, seed=4)}
    fakes = {"A": images(2, seed=5), "B": images(2, seed=6)}
    losses, accuracy = model._discriminator_loss(x, fakes, training=False)
    for domain in "AB":
        real_out = model.discriminator(domain)(x[domain], training=False)
        fake_out = model.discriminator(domain)(fakes[domain], training=False)
        expected = 0.5 * (np.mean((np.asarray(real_out) - 1) ** 2) + np.mean(np.asarray(fake_out) ** 2))
        np.testing.assert_allclose(float(losses[domain]), expected, rtol=1e-5)
        right = 0.5 * (np.mean(np.asarray(real_out) > 0.5) + np.mean(np.asarray(fake_out) < 0.5))
        assert [float(a) for a in accuracy[domain]] == [pytest.approx(right)]


# -------------------------------------------------------------------------------- image pool
def constant_batch(values):
    """A batch of 2x2 images, image i filled with values[i]."""
    return np.asarray(values, np.float32)[:, None, None, None] * np.ones((1, 2, 2, 1), np.float32)


def pool_values(pool):
    return sorted(np.asarray(pool.images)[: int(pool.count), 0, 0, 0].tolist())


def test_image_pool_fills_first_then_returns_new_or_stored_images():
    keras.utils.set_random_seed(0)
    pool = ImagePool(3)
    pool.build((None, 2, 2, 1))
    # Filling: every image is stored and returned unchanged, in batch order.
    out = np.asarray(pool(constant_batch([1, 2])))
    np.testing.assert_array_equal(out, constant_batch([1, 2]))
    assert int(pool.count) == 2 and pool_values(pool) == [1, 2]
    # The second image of this batch finds the pool full.
    out = np.asarray(pool(constant_batch([3, 4])))
    assert out[0, 0, 0, 0] == 3 and int(pool.count) == 3
    second = float(out[1, 0, 0, 0])
    assert (second == 4 and pool_values(pool) == [1, 2, 3]) or (
        second in (1, 2, 3) and pool_values(pool) == sorted({1, 2, 3, 4} - {second}))

    stored_returned = 0
    for step in range(5, 205):
        before = pool_values(pool)
        returned = float(np.asarray(pool(constant_batch([step])))[0, 0, 0, 0])
        after = pool_values(pool)
        if returned == step:  # the new image passes through; the pool is unchanged
            assert after == before
        else:  # a stored image comes out and the new image takes its place
            stored_returned += 1
            assert returned in before
            expected = list(before)
            expected.remove(returned)
            assert after == sorted(expected + [step])
        assert int(pool.count) == 3
    # Probability 0.5 over 200 draws: 100 +- 7 (one standard deviation).
    assert 70 <= stored_returned <= 130, stored_returned
    assert all(value >= 1 for value in pool_values(pool))


def test_image_pool_of_size_zero_passes_images_through_and_pool_runs_compiled():
    keras.utils.set_random_seed(0)
    empty = ImagePool(0)
    empty.build((None, 2, 2, 1))
    np.testing.assert_array_equal(np.asarray(empty(constant_batch([5, 6]))), constant_batch([5, 6]))
    assert empty.weights == []

    pool = ImagePool(2)
    pool.build((None, 2, 2, 1))
    step = tf.function(pool, jit_compile=False)
    for value in range(1, 21):
        out = np.asarray(step(constant_batch([value])))
        assert out[0, 0, 0, 0] <= value
    assert int(pool.count) == 2 and len(set(pool_values(pool))) == 2


# ---------------------------------------------------------------------------- LR schedule
def test_linear_decay_schedule_values_and_serialization():
    schedule = LinearDecaySchedule.over_training(2e-4, total_steps=1000, decay_start=0.5)
    assert (schedule.decay_start, schedule.decay_steps) == (500, 500)
    values = {step: float(schedule(step)) for step in (0, 250, 500, 750, 999, 1000, 1200)}
    assert values[0] == pytest.approx(2e-4) and values[250] == pytest.approx(2e-4)
    assert values[500] == pytest.approx(2e-4)
    assert values[750] == pytest.approx(1e-4)
    assert values[999] == pytest.approx(2e-4 / 500, rel=1e-4)
    assert values[1000] == 0.0 and values[1200] == 0.0
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(restored, LinearDecaySchedule) and restored.get_config() == schedule.get_config()
    with pytest.raises(ValueError, match="decay_steps >= 1; found decay_start=10, decay_steps=0"):
        LinearDecaySchedule(1e-3, 10, 0)


def test_compile_decays_both_learning_rates_over_the_second_half():
    model = tiny()
    model.compile(total_steps=8)
    for optimizer in (model.g_optimizer, model.d_optimizer):
        assert isinstance(optimizer, keras.optimizers.Adam) and float(optimizer.beta_1) == 0.5
        schedule = optimizer._learning_rate
        assert isinstance(schedule, LinearDecaySchedule)
        assert [float(schedule(s)) for s in (0, 4, 6, 8)] == pytest.approx([2e-4, 2e-4, 1e-4, 0.0])
    x = images(1)
    for _ in range(6):
        model.train_on_batch(x, x)
    assert float(model.g_optimizer.learning_rate) == pytest.approx(1e-4)
    constant = tiny(decay_start=1.0)
    constant.compile(total_steps=8)
    assert float(constant.d_optimizer.learning_rate) == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="total_steps must be a positive integer or None; found 0"):
        tiny().compile(total_steps=0)
    with pytest.raises(ValueError, match="no 'optimizer'"):
        tiny().compile(optimizer="adam")


# ---------------------------------------------------------------------------------- the model
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_grayscale_and_rgb(channels):
    model = tiny(channels=channels, discriminator_scales=2)
    x = images(2, channels)
    for direction in ("A2B", "B2A"):
        y = np.asarray(model.translate(x, direction))
        assert y.shape == (2, 32, 32, channels) and y.dtype == np.float32 and np.all(np.abs(y) <= 1)
    np.testing.assert_allclose(
        np.asarray(model.reconstruct(x, "A")),
        # A compiled graph against eager calls: XLA (JAX) fuses differently, ~1e-6 apart.
        np.asarray(model.generator_b2a(model.generator_a2b(x, training=False), training=False)), atol=1e-5)
    assert model.image_shape == (32, 32) and model.channels == channels
    scores = model.discriminator_a(x)
    assert [tuple(s.shape) for s in scores] == [(2, 4, 4, 1), (2, 2, 2, 1)]
    assert model.pool_a.images.shape == (50, 32, 32, channels)


def test_translate_and_reconstruct_reject_bad_input_and_are_deterministic():
    model = tiny()
    with pytest.raises(ValueError, match=r"shape \(batch, 32, 32, 1\).*found \(2, 32, 32, 3\)"):
        model.translate(images(2, channels=3), "A2B")
    with pytest.raises(ValueError, match=r"found \(32, 32, 1\)"):
        model.translate(images(1)[0], "B2A")
    with pytest.raises(ValueError, match=r"direction must be one of \['A2B', 'B2A'\]; found 'T1toT2'"):
        model.translate(images(1), "T1toT2")
    with pytest.raises(ValueError, match=r"domain must be one of \['A', 'B'\]; found 'C'"):
        model.reconstruct(images(1), "C")
    x = images(2)
    np.testing.assert_array_equal(np.asarray(model.translate(x, "B2A")), np.asarray(model.translate(x, "B2A")))


def contract_model(**overrides):
    """The CycleGAN of the model contract: an identity term and a pool that one batch does not fill."""
    return tiny(identity_weight=5.0, pool_size=3, **overrides)


def test_train_step_test_step_and_save_load_keep_the_model_contract(tmp_path):
    with pytest.raises(ValueError, match="must be compiled"):
        tiny().train_step((images(1), images(1)))

    def pools_hold_the_step_translations(model, logs):
        assert set(logs) == {"g_loss", "d_loss", "gan_loss", "cycle_loss", "identity_loss", "d_loss_a", "d_loss_b",
                             "d_acc_a_s0", "d_acc_b_s0"}  # one PatchGAN scale per domain
        assert logs["identity_loss"] > 0
        assert logs["g_loss"] == pytest.approx(logs["gan_loss"] + 10 * logs["cycle_loss"] + 5 * logs["identity_loss"],
                                               rel=1e-5)
        assert logs["d_loss"] == pytest.approx(logs["d_loss_a"] + logs["d_loss_b"], rel=1e-6)
        # The pools hold the two translations of this step (made before the generator update).
        assert int(model.pool_a.count) == 2 and int(model.pool_b.count) == 2
        assert np.abs(np.asarray(model.pool_b.images)[:2]).max() > 0 and not np.asarray(model.pool_b.images)[2].any()

    # tests/model_contract.py: both players update, test_step is stable, .keras, save_weights and (on
    # TensorFlow) tf.train.Checkpoint restore the weights, both optimizers and the pools (their images and
    # counts are variables); the restored models translate and (TensorFlow) train on as the original does.
    check_translation_model(contract_model, images(2, seed=1), images(2, seed=2), tmp_path, precisions=(),
                            after_train_step=pools_hold_the_step_translations)


@pytest.fixture(scope="module")
def float32_contract_model():
    """The float32 model that both mixed policies are compared with (built and traced once)."""
    keras.utils.set_random_seed(0)
    return contract_model()


@pytest.mark.parametrize("policy", MIXED_POLICIES)
def test_mixed_precision_keeps_the_model_contract_and_the_pools_float32(policy, float32_contract_model):
    # tests/model_contract.py: float32 variables and translations, the policy's compute dtype in every
    # other layer, translations close to float32's, loss scaling under float16, a finite train step.
    model = check_precision_policy(contract_model, images(2, seed=1), images(2, seed=2), policy,
                                   float32_contract_model)
    assert model.generator_a2b.get_layer("in_conv").compute_dtype == policy.removeprefix("mixed_")
    # The pools store the step's translations (the generators' float32 outputs) in float32.
    for pool in (model.pool_a, model.pool_b):
        assert pool.compute_dtype == "float32" and pool.images.dtype == "float32" and int(pool.count) == 2


def test_fit_learns_cycle_consistency_on_unpaired_shapes():
    rng = np.random.default_rng(0)
    # Unpaired: B holds intensity-inverted versions of other random shapes.
    x_a, x_b = random_shapes(rng, 64), -random_shapes(rng, 64)
    data = tf.data.Dataset.from_tensor_slices((x_a, x_b)).batch(4, drop_remainder=True)
    keras.utils.set_random_seed(0)
    # A larger learning rate than the lineage's 2e-4, so a CPU test sees learning in seconds.
    model = tiny(g_learning_rate=1e-3, d_learning_rate=1e-3)
    model.compile(total_steps=6 * 16)
    history = model.fit(data, epochs=6, verbose=0).history
    cycle = history["cycle_loss"]
    # Measured: 1.35 in the first epoch, 0.31 in the sixth (a factor of ~4.4).
    assert cycle[-1] < cycle[0] / 2.5, cycle
    assert all(np.isfinite(history["d_loss"]))
    # After the last of the 96 steps the schedule has reached 0.
    assert int(model.g_optimizer.iterations) == 96 and float(model.g_optimizer.learning_rate) == 0.0


# ------------------------------------------------------------- the shared train/evaluate/export path
def test_cyclegan_goes_through_train_evaluate_translate_and_export(tiny_dataset, tmp_path):
    from gan_mri.evaluation import evaluate
    from gan_mri.export import export_saved_model
    from gan_mri.inference import load_model, translate_slices
    from gan_mri.training import RunFolder, restore_checkpoint, train

    config = get_preset("cyclegan", image_shape=(32, 32), base_width=8, res_blocks=1, pool_size=4)
    model, run = train(config, tiny_dataset, tmp_path / "run", epochs=1, batch_size=16, eval_epochs=[1],
                       seed=2, verbose=0)
    steps = tiny_dataset.steps_per_epoch(16)
    assert isinstance(model, CycleGAN) and int(model.g_optimizer.iterations) == steps
    # train() handed the run's length to compile: the decay ends at the last step.
    schedule = model.g_optimizer._learning_rate
    assert schedule.decay_start + schedule.decay_steps == steps
    assert json.loads(run.config_file.read_text())["model"] == "cyclegan"
    header = run.history_file.read_text().splitlines()[0].split(",")
    assert {"g_loss", "cycle_loss", "identity_loss", "d_loss_a", "val_ssim_a2b"} <= set(header)
    assert (run.metrics_dir / "ssim_table.md").read_text().startswith("| Epoch | SSIM T1 | SSIM T2")
    assert int(model.pool_a.count) == 4

    # The checkpoint restores weights, both optimizers and the pools into a fresh model.
    fresh = build_model(RunFolder.open(run.root).load_config())
    fresh.compile(total_steps=steps)
    assert restore_checkpoint(fresh, run) == 1
    np.testing.assert_array_equal(np.asarray(fresh.pool_b.images), np.asarray(model.pool_b.images))
    assert int(fresh.d_optimizer.iterations) == steps

    loaded = load_model(run.root)
    test_set = tiny_dataset.test_dataset(batch_size=8)
    results = evaluate(loaded, test_set, max_batches=1, structure=False)
    for direction in ("A2B", "B2A"):
        assert 0 < results[direction]["n_slices"] <= 8
        assert -1 <= results[direction]["ssim"] <= 1 and -1 <= results[direction]["recon_ssim"] <= 1
        assert results[direction]["mae"] > 0

    slices = next(iter(test_set))["a"].numpy()
    translated = translate_slices(loaded, slices, "A2B", batch_size=3)
    # Batches of 3 against one of 8: oneDNN may pick other kernels per batch size (measured 1.3e-6 apart).
    np.testing.assert_allclose(translated, np.asarray(model.translate(slices, "A2B")), rtol=0, atol=1e-5)

    path = export_saved_model(loaded, tmp_path / "export" / "1")
    served = tf.saved_model.load(str(path))
    out = served.signatures["b2a"](image=tf.constant(slices))["translated"].numpy()
    np.testing.assert_allclose(out, np.asarray(model.translate(slices, "B2A")), atol=1e-5)
    info = json.loads((path / "serving_info.json").read_text())
    assert info["config"]["model"] == "cyclegan"


def test_cli_train_selects_cyclegan_by_model_or_preset(tiny_dataset, tmp_path, capsys):
    from gan_mri import cli

    base = ["train", "--data", str(tiny_dataset.path), "--out", str(tmp_path / "run"), "--width", "8"]
    for spelling in (["--model", "cyclegan"], ["--preset", "cyclegan"]):
        config = cli._train_config(cli.build_parser().parse_args(base + spelling), tiny_dataset)
        assert isinstance(config, CycleGANConfig) and config.name == "cyclegan"
        assert config.image_shape == (32, 32) and config.base_width == 8 and config.res_blocks == 9
    unit = cli._train_config(cli.build_parser().parse_args(base + ["--model", "unit"]), tiny_dataset)
    assert unit.model == "unit" and unit.name == "unit"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(base + ["--model", "pix2pix"])
    assert "invalid choice: 'pix2pix'" in capsys.readouterr().err

    # A run through the CLI (a tiny CycleGAN config JSON: 9 residual blocks would be slow here).
    get_preset("cyclegan", **TINY).to_json(tmp_path / "cyclegan.json")
    base = [arg for arg in base if arg not in ("--width", "8")]
    assert cli.main(base + ["--config", str(tmp_path / "cyclegan.json"), "--epochs", "1", "--batch-size", "16",
                            "--eval-epochs", "none"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"] == "cyclegan"
    assert isinstance(keras.models.load_model(tmp_path / "run" / "model.keras"), CycleGAN)
