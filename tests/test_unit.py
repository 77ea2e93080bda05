"""UNIT model: presets, shared weights, variable counts, train step, learning, save/load, errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan_mri.config import get_preset, preset_names
from gan_mri.models import build_model
from model_contract import MIXED_POLICIES, check_precision_policy, check_translation_model
from synthetic import random_shapes

TINY = dict(image_shape=(32, 32), base_width=8, encoder_res_blocks=1, generator_res_blocks=1,
            precision="float32")


def tiny(preset="unit", **overrides):
    return build_model(get_preset(preset, **{**TINY, **overrides}))


def images(n, channels=1, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 32, 32, channels)).astype(np.float32)


def expected_trainable(config):
    """Trainable variable count from the architecture: conv kernel+bias 2, residual block 6
    (2 bias-free convs, 2 norms with scale and offset), attention 9 (4 convs, gamma). An encoder
    has a 7x7 conv and one strided conv per downsampling step; a generator mirrors it."""
    attention = 9
    convs = 1 + config.downsampling_steps
    enc = convs * 2 + 6 * config.encoder_res_blocks + (attention if config.attention == "encoder" else 0)
    gen = 6 * config.generator_res_blocks + convs * 2 + (attention if config.attention == "generator" else 0)
    gen += 2 if config.remap_prior == "channel" else 0  # the conv that mixes the prior image in
    shared = 2 * 6 * config.shared_res_blocks
    disc = 3 * 5 * 2
    return 2 * (enc + gen + disc) + shared


def expected_spectral_vectors(config):
    """One power-iteration vector u per spectrally normalized conv."""
    att = 4
    convs = 1 + config.downsampling_steps
    counts = {
        "encoder": 2 * (convs + 2 * config.encoder_res_blocks + (att if config.attention == "encoder" else 0))
        + 2 * config.shared_res_blocks,
        "generator": 2 * (2 * config.generator_res_blocks + convs + (att if config.attention == "generator" else 0)
                          + (1 if config.remap_prior == "channel" else 0))
        + 2 * config.shared_res_blocks,
        "discriminator": 2 * 3 * 5,
    }
    return sum(counts[scope] for scope in config.spectral_norm)


@pytest.mark.parametrize("preset", preset_names())
def test_every_preset_translates_grayscale_and_rgb(preset):
    for channels in (1, 3):
        model = tiny(preset, channels=channels)
        x = images(2, channels)
        for direction in ("A2B", "B2A"):
            y = np.asarray(model.translate(x, direction))
            assert y.shape == (2, 32, 32, channels) and y.dtype == np.float32
            assert np.all(np.abs(y) <= 1.0)
        assert model.reconstruct(x, "A").shape == (2, 32, 32, channels)
        assert model.image_shape == (32, 32) and model.channels == channels


@pytest.mark.parametrize("preset, res_blocks", [("unit", 1), ("unit-sn", 2), ("sa-gen-cl-sn", 1),
                                                ("sa-enc-cl-sn", 2)])
def test_variable_counts_match_config(preset, res_blocks):
    model = tiny(preset, encoder_res_blocks=res_blocks, generator_res_blocks=res_blocks,
                 shared_res_blocks=res_blocks)
    config = model.config
    assert len(model.trainable_variables) == expected_trainable(config)
    assert len(model.generator_variables) + len(model.discriminator_variables) == len(
        model.trainable_variables)
    vectors = [v for v in model.non_trainable_variables if v.path.endswith("/u")]
    assert len(vectors) == expected_spectral_vectors(config)
    assert all(not v.trainable for v in vectors)


def _variables_used(model, x, domain):
    with tf.GradientTape() as tape:
        _, z = model.encode(x, domain, training=False)
        loss = tf.reduce_sum(model.decode(z, domain, training=False, prior=model.prior_image(x, domain, domain)))
    variables = model.generator_variables
    grads = tape.gradient(loss, variables)
    return {id(v) for v, g in zip(variables, grads) if g is not None}


def test_shared_encoder_and_decoder_are_the_same_objects_in_both_domain_paths():
    model = tiny("unit")
    x = images(1)
    used_a, used_b = _variables_used(model, x, "A"), _variables_used(model, x, "B")
    shared = {id(v) for v in model.shared_encoder.trainable_variables + model.shared_decoder.trainable_variables}
    assert used_a & used_b == shared
    assert {id(v) for v in model.encoder_a.trainable_variables} <= used_a - used_b
    assert {id(v) for v in model.generator_b.trainable_variables} <= used_b - used_a


def test_every_trainable_variable_gets_a_gradient_from_its_player():
    # "The weights changed" would not prove that every variable is trained by the right player.
    model = tiny("sa-enc-cl-sn")
    x_a, x_b = images(2, seed=5), images(2, seed=6)
    with tf.GradientTape(persistent=True) as tape:
        g_loss, _, _ = model._generator_loss(x_a, x_b, training=True)
        d_losses, d_accuracy = model._discriminator_loss(x_a, x_b, training=True)
        d_loss = d_losses["A"] + d_losses["B"]
    assert [len(d_accuracy[domain]) for domain in "AB"] == [3, 3]
    for loss, variables in ((g_loss, model.generator_variables), (d_loss, model.discriminator_variables)):
        grads = tape.gradient(loss, variables)
        assert [v.path for v, g in zip(variables, grads) if g is None] == []
    # The discriminator loss does not reach the generator (its fakes are constants to D).
    assert all(g is None for g in tape.gradient(d_loss, model.generator_variables))


def test_translate_and_reconstruct_reject_bad_input():
    model = tiny("unit")
    with pytest.raises(ValueError, match=r"shape \(batch, 32, 32, 1\).*found \(2, 32, 32, 3\)"):
        model.translate(images(2, channels=3), "A2B")
    with pytest.raises(ValueError, match=r"shape \(batch, 32, 32, 1\).*found \(32, 32, 1\)"):
        model.translate(images(1)[0], "B2A")
    with pytest.raises(ValueError, match=r"found \(1, 64, 64, 1\)"):
        model.translate(np.zeros((1, 64, 64, 1), np.float32), "A2B")
    with pytest.raises(ValueError, match=r"direction must be one of \['A2B', 'B2A'\]; found 'T1toT2'"):
        model.translate(images(1), "T1toT2")
    with pytest.raises(ValueError, match=r"domain must be one of \['A', 'B'\]; found 'C'"):
        model.reconstruct(images(1), "C")
    with pytest.raises(ValueError, match="config.model must be one of"):
        build_model(object())


def test_translate_is_deterministic():
    model = tiny("sa-enc-cl-sn", dropout=0.5, latent_noise_std=1.0)
    x = images(2)
    np.testing.assert_array_equal(np.asarray(model.translate(x, "A2B")), np.asarray(model.translate(x, "A2B")))


def test_a_model_saved_before_attention_pool_existed_loads_as_it_was_built(tmp_path):
    import json
    import zipfile

    x = images(2, seed=3)
    for pool in (1, 2):
        model = tiny("sa-enc-cl-sn", attention_pool=pool)
        model.encoder_a.get_layer("attention").gamma.assign(1.0)  # let the attention show
        expected = np.asarray(model.translate(x, "A2B"))
        path = tmp_path / f"pool{pool}.keras"
        model.save(path)
        assert keras.models.load_model(path).config.attention_pool == pool
    # The same pool-1 file as an older version wrote it: no attention_pool in its config.
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(tmp_path / "pool1.keras") as source, zipfile.ZipFile(old, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                del config["config"]["config"]["attention_pool"]
                data = json.dumps(config).encode()
            target.writestr(item, data)
    loaded = keras.models.load_model(old)
    assert loaded.config.attention_pool == 1
    assert loaded.encoder_a.get_layer("attention").pool_size == 1
    reference = keras.models.load_model(tmp_path / "pool1.keras")
    np.testing.assert_array_equal(np.asarray(loaded.translate(x, "A2B")), np.asarray(reference.translate(x, "A2B")))
    # A config a user writes still takes the present default for a field it leaves out.
    assert get_preset("sa-enc-cl-sn").attention_pool is None


def _attention_trains_from_the_first_step(model):
    """SAGAN's gamma starts at 0, which zeroes the gradients of the attention's convolutions in the
    first step; at 0.5 one step shows that they train."""
    for encoder in (model.encoder_a, model.encoder_b):
        encoder.get_layer("attention").gamma.assign(0.5)
    return model


def contract_model(**overrides):
    """The UNIT of the model contract: sa-enc-cl-sn holds every extra layer (attention, spectral norm);
    no residual blocks outside the shared ones keeps the steps short."""
    return _attention_trains_from_the_first_step(
        tiny("sa-enc-cl-sn", encoder_res_blocks=0, generator_res_blocks=0, **overrides))


def test_train_step_test_step_and_save_load_keep_the_model_contract(tmp_path):
    # tests/model_contract.py: both players update, test_step is stable, .keras, save_weights and (on
    # TensorFlow) tf.train.Checkpoint restore the weights and both optimizers; the restored models
    # translate and (TensorFlow) train on as the original does.
    run = check_translation_model(contract_model, images(2, seed=1), images(2, seed=2), tmp_path, precisions=())
    # UNIT's own: the recipe's optimizers and a discriminator accuracy per domain and scale.
    assert isinstance(run.model.g_optimizer, keras.optimizers.Adam)
    assert float(run.model.g_optimizer.learning_rate) == pytest.approx(2e-3)
    assert float(run.model.g_optimizer.beta_1) == 0.5
    assert {name for name in run.logs if name.startswith("d_acc_")} == {
        f"d_acc_{d}_s{s}" for d in "ab" for s in range(3)}
    assert all(0.0 <= run.logs[f"d_acc_{d}_s{s}"] <= 1.0 for d in "ab" for s in range(3))
    assert {"g_loss", "d_loss", "gan_loss", "recon_loss", "cycle_loss", "kl_loss"} <= set(run.logs)


@pytest.fixture(scope="module")
def float32_contract_model():
    """The float32 model that both mixed policies are compared with (built and traced once)."""
    keras.utils.set_random_seed(0)
    return contract_model()


@pytest.mark.parametrize("policy", MIXED_POLICIES)
def test_mixed_precision_keeps_the_model_contract(policy, float32_contract_model):
    # tests/model_contract.py: float32 variables and translations, the policy's compute dtype in every
    # other layer, translations close to float32's, loss scaling under float16, a finite train step.
    check_precision_policy(contract_model, images(2, seed=1), images(2, seed=2), policy, float32_contract_model)


def test_update_order_decides_which_losses_see_the_weights_before_the_step():
    # Deterministic training forward (no dropout, no latent noise, no spectral-norm state), so
    # a loss computed before the step can be compared with the one the step logs.
    x_a, x_b = images(2, seed=3), images(2, seed=4)
    logged, before = {}, {}
    for order in ("d_then_g", "g_then_d"):
        keras.utils.set_random_seed(0)
        model = tiny("unit", dropout=0.0, latent_noise_std=0.0, update_order=order)
        model.compile()
        assert [player for player, _ in model._updates()] == (["d", "g"] if order == "d_then_g" else ["g", "d"])
        g_loss, _, fakes = model._generator_loss(x_a, x_b, training=True)
        d_losses, _ = model._discriminator_loss(x_a, x_b, training=True)
        # The D update of "g_then_d" scores the G update's own translations: same loss as fresh ones.
        given, _ = model._discriminator_loss(x_a, x_b, training=True, fakes=fakes)
        for domain in "AB":
            np.testing.assert_allclose(float(given[domain]), float(d_losses[domain]), rtol=1e-6)
        before[order] = (float(g_loss), float(d_losses["A"] + d_losses["B"]))
        logs = model.train_step((x_a, x_b))
        logged[order] = (float(logs["g_loss"]), float(logs["d_loss"]))
    # Both orders score D before its update; only "g_then_d" scores G against the D before its update.
    for order in logged:
        assert logged[order][1] == pytest.approx(before[order][1], rel=1e-5)
    assert logged["g_then_d"][0] == pytest.approx(before["g_then_d"][0], rel=1e-5)
    assert logged["d_then_g"][0] != pytest.approx(before["d_then_g"][0], rel=1e-5)


def test_the_lesion_aware_term_is_logged_weighted_and_saved_only_when_on(tmp_path):
    x_a, x_b = images(2, seed=3), images(2, seed=4)
    plain = tiny("unit", dropout=0.0, latent_noise_std=0.0)
    assert "contrast_loss" not in plain.metric_names  # earlier runs keep their columns
    keras.utils.set_random_seed(0)
    aware = tiny("unit", dropout=0.0, latent_noise_std=0.0, contrast_weight=5.0)
    names = aware.metric_names
    assert names[names.index("structure_loss") + 1] == "contrast_loss"
    aware.compile()
    g_loss, terms, fakes = aware._generator_loss(x_a, x_b, training=True)
    from gan_mri import losses

    expected = (losses.local_contrast_loss(x_a, fakes["B"]) + losses.local_contrast_loss(x_b, fakes["A"]))
    assert float(terms["contrast"]) == pytest.approx(float(expected), rel=1e-5)
    without = aware.config.replace(contrast_weight=0.0)
    aware.config, weighted = without, float(g_loss)
    g_plain, _, _ = aware._generator_loss(x_a, x_b, training=True)
    assert weighted == pytest.approx(float(g_plain) + 5.0 * float(terms["contrast"]), rel=1e-5)
    aware.config = without.replace(contrast_weight=5.0)
    logs = aware.train_step((x_a, x_b))
    assert float(logs["contrast_loss"]) > 0
    aware.save(tmp_path / "aware.keras")
    loaded = keras.saving.load_model(tmp_path / "aware.keras")
    assert loaded.config.contrast_weight == 5.0 and "contrast_loss" in loaded.metric_names


def _fit(epochs, data):
    keras.utils.set_random_seed(0)
    # No residual blocks outside the shared parts: a smaller graph traces faster. No remap prior: random shapes
    # have no brain to remap (training with the prior: tests/test_remap_prior.py).
    model = tiny("unit", encoder_res_blocks=0, generator_res_blocks=0, remap_prior="none")
    model.compile()
    return model, model.fit(data, epochs=epochs, shuffle=False, verbose=0).history


def test_fit_learns_reconstruction_and_is_reproducible(tmp_path):
    rng = np.random.default_rng(0)
    # Unpaired: B holds intensity-inverted versions of other random shapes.
    x_a, x_b = random_shapes(rng, 64), -random_shapes(rng, 64)
    data = tf.data.Dataset.from_tensor_slices((x_a, x_b)).batch(4, drop_remainder=True)
    model, history = _fit(8, data)  # 128 steps
    recon = history["recon_loss"]
    # Measured: 1.84 in the first epoch, 0.21 in the eighth (a factor of ~9).
    assert recon[-1] < recon[0] / 4, recon
    assert set(history) >= {"g_loss", "d_loss", "gan_loss", "recon_loss", "cycle_loss", "kl_loss"}

    _, again = _fit(2, data)
    for name in ("g_loss", "d_loss", "recon_loss"):
        np.testing.assert_allclose(again[name], history[name][:2], rtol=1e-6)

    path = tmp_path / "fitted.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded.translate(x_a[:2], "A2B")),
                                  np.asarray(model.translate(x_a[:2], "A2B")))


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_training_on_another_backend_is_refused_by_name_while_translation_works(monkeypatch, backend):
    model = tiny()
    x = images(2)
    expected = np.asarray(model.translate(x, "A2B"))
    monkeypatch.setattr(keras.config, "backend", lambda: backend)
    with pytest.raises(RuntimeError) as info:
        model.compile()
    assert str(info.value) == (f"UNIT.compile: training runs on the TensorFlow or JAX backend, found "
                               f"KERAS_BACKEND={backend!r}; set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax "
                               "(translation works on any backend)")
    assert model.g_optimizer is None
    np.testing.assert_array_equal(np.asarray(model.translate(x, "A2B")), expected)


def test_cli_train_structure_weight_overrides_the_recipe(tiny_dataset, tmp_path):
    from gan_mri import cli

    base = ["train", "--data", str(tiny_dataset.path), "--out", str(tmp_path / "run")]

    def config(*extra):
        return cli._train_config(cli.build_parser().parse_args(base + list(extra)), tiny_dataset)

    assert config().structure_weight == 30.0 and config("--recipe", "lineage").structure_weight == 0.0
    assert config("--structure-weight", "0").structure_weight == 0.0
    assert config("--structure-weight", "5", "--recipe", "lineage").structure_weight == 5.0
    with pytest.raises(ValueError, match=r"UNITConfig.structure_weight must be a number >= 0; found -1.0"):
        config("--structure-weight", "-1")
    with pytest.raises(ValueError, match=r"Unknown CycleGANConfig fields \['structure_weight'\]"):
        config("--structure-weight", "0", "--model", "cyclegan")


def test_cli_train_contrast_weight_reaches_the_config_and_cyclegan_names_the_field(tiny_dataset, tmp_path):
    from gan_mri import cli

    base = ["train", "--data", str(tiny_dataset.path), "--out", str(tmp_path / "run"), "--contrast-weight", "50"]
    config = cli._train_config(cli.build_parser().parse_args(base), tiny_dataset)
    assert (config.name, config.contrast_weight, config.structure_weight) == ("sa-enc-cl-sn", 50.0, 30.0)
    assert cli._train_config(cli.build_parser().parse_args(base[:-2]), tiny_dataset).contrast_weight == 0.0
    with pytest.raises(ValueError, match=r"Unknown CycleGANConfig fields \['contrast_weight'\]"):
        cli._train_config(cli.build_parser().parse_args(base + ["--model", "cyclegan"]), tiny_dataset)
