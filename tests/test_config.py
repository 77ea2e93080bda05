"""UNITConfig: lineage defaults, presets, overrides, validation errors, JSON round trip."""

import json
import subprocess
import sys

import pytest

from gan_mri.config import PRESETS, UNITConfig, config_from_dict, get_preset, preset_names


def test_defaults_are_the_library_recipe():
    config = UNITConfig()
    assert config.recipe == "default" and config.image_shape == (256, 256)
    assert (config.base_width, config.encoder_res_blocks, config.shared_res_blocks,
            config.generator_res_blocks) == (64, 3, 1, 3)
    assert (config.gan_weight, config.kl_weight, config.recon_weight,
            config.cycle_kl_weight, config.cycle_weight, config.structure_weight) == (30.0, 0.1, 100.0, 0.1, 100.0, 30.0)
    assert (config.g_learning_rate, config.d_learning_rate, config.beta_1, config.beta_2) == (
        2e-3, 2e-3, 0.5, 0.999)
    assert (config.decay_start, config.latent_noise_std, config.dropout) == (0.5, 1.0, 0.1)
    assert (config.update_order, config.attention_pool) == ("g_then_d", None)
    assert (config.gan_loss, config.conv_norm, config.upsample) == ("bce", "none", "transpose")
    # 256x256 keeps the lineage's 64x64 code: two stride-2 convs.
    assert config.downsampling is None and config.downsampling_steps == 2
    assert config.latent_shape == (64, 64, 256)
    assert config.attention_pool_size == 4  # 16x16 pooled keys on the 64x64 code


@pytest.mark.parametrize("size, steps, pool", [(32, 1, 1), (64, 1, 2), (128, 1, 4), (256, 2, 4), (512, 3, 4)])
def test_automatic_downsampling_keeps_a_64_pixel_code_and_pooling_16x16_keys(size, steps, pool):
    config = UNITConfig(image_shape=(size, size), base_width=8)
    assert config.downsampling_steps == steps
    assert config.latent_shape == (size // 2**steps, size // 2**steps, 8 * 2**steps)
    assert config.attention_pool_size == pool
    # A pool the user sets wins; so does a downsampling that changes the code.
    assert UNITConfig(image_shape=(size, size), attention_pool=3).attention_pool_size == 3
    assert UNITConfig(image_shape=(256, 256), downsampling=3).attention_pool_size == 2


def test_lineage_recipe_is_the_papers_setting():
    config = get_preset("sa-enc-cl-sn", recipe="lineage", image_shape=(64, 64))
    assert config.recipe == "lineage" and config.attention == "encoder"
    assert (config.g_learning_rate, config.d_learning_rate, config.decay_start) == (1e-4, 1e-4, 1.0)
    assert (config.dropout, config.latent_noise_std, config.downsampling) == (0.5, 1.0, 2)
    assert (config.gan_weight, config.structure_weight, config.update_order) == (10.0, 0.0, "d_then_g")
    assert config.attention_pool == 1  # the paper's attention over every position
    assert config.latent_shape == (16, 16, 256)
    # Overrides win over the recipe, and a recipe name is validated.
    assert get_preset("unit", recipe="lineage", dropout=0.2).dropout == 0.2
    with pytest.raises(ValueError, match=r"Unknown recipe 'fast'; valid recipes are \['default', 'lineage'\]"):
        get_preset("unit", recipe="fast")
    with pytest.raises(ValueError, match=r"UNITConfig.recipe must be one of \['default', 'lineage'\]"):
        UNITConfig(recipe="fast")


def test_the_eight_presets_of_the_paper():
    assert preset_names() == ("unit-rgb", "unit", "unit-cl", "unit-sn", "sa-gen", "sa-gen-cl",
                              "sa-gen-cl-sn", "sa-enc-cl-sn")
    expected = {
        # name: (channels, attention, recon_loss, spectral_norm)
        "unit-rgb": (3, "none", "mae", ()),
        "unit": (1, "none", "mae", ()),
        "unit-cl": (1, "none", "charbonnier", ()),
        "unit-sn": (1, "none", "mae", ("encoder", "generator", "discriminator")),
        "sa-gen": (1, "generator", "mae", ()),
        "sa-gen-cl": (1, "generator", "charbonnier", ()),
        "sa-gen-cl-sn": (1, "generator", "charbonnier", ("encoder", "generator", "discriminator")),
        "sa-enc-cl-sn": (1, "encoder", "charbonnier", ("encoder", "generator", "discriminator")),
    }
    for name, (channels, attention, recon, sn) in expected.items():
        config = get_preset(name)
        assert config.name == name
        assert (config.channels, config.attention, config.recon_loss, config.spectral_norm) == (
            channels, attention, recon, sn)
        # Everything a preset does not mention stays at the recipe's default.
        assert config.recon_weight == 100.0 and config.base_width == 64


def test_overrides_apply_and_are_validated():
    config = get_preset("sa-enc-cl-sn", image_shape=(32, 32), base_width=8)
    assert config.image_shape == (32, 32) and config.base_width == 8
    assert config.latent_shape == (16, 16, 16)
    assert get_preset("sa-enc-cl-sn", image_shape=(32, 32), base_width=8,
                      downsampling=2).latent_shape == (8, 8, 32)
    with pytest.raises(ValueError, match="base_width must be an integer >= 1; found -8"):
        get_preset("unit", base_width=-8)
    with pytest.raises(ValueError, match=r"Unknown UNITConfig fields \['widht'\]"):
        get_preset("unit", widht=8)


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown preset 'sa-unit'.*'unit-rgb'.*'sa-enc-cl-sn'"):
        get_preset("sa-unit")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("attention", "encodr",
         r"UNITConfig.attention must be one of \['none', 'encoder', 'generator'\]; found 'encodr'"),
        ("norm", "group", r"UNITConfig.norm must be one of \['instance', 'layer', 'batch'\]; found 'group'"),
        ("conv_norm", "batch", r"UNITConfig.conv_norm must be one of \['none', 'instance', 'layer'\]; found 'batch'"),
        ("upsample", "bilinear", r"UNITConfig.upsample must be one of \['transpose', 'nearest'\]; found 'bilinear'"),
        ("gan_loss", "wgan", r"UNITConfig.gan_loss must be one of \['bce', 'lsgan'\]; found 'wgan'"),
        ("decay_start", 1.5, r"UNITConfig.decay_start must be a fraction in \[0, 1\]; found 1.5"),
        ("channels", 2, r"UNITConfig.channels must be one of \[1, 3\]; found 2"),
        ("recon_loss", "l2", r"UNITConfig.recon_loss must be one of \['mae', 'charbonnier'\]"),
        ("precision", "bfloat16", r"UNITConfig.precision must be one of \['auto', 'float32', 'mixed_float16', 'mixed_bfloat16'\]"),
        ("spectral_norm", ("decoder",), r"spectral_norm must be a subset.*found \['decoder'\]"),
        ("image_shape", (254, 256), r"image_shape must be \(height, width\), positive multiples of 4 \(2 \*\* downsampling\); found \(254, 256\)"),
        ("image_shape", (32, 0), r"image_shape must be \(height, width\), positive integers; found \(32, 0\)"),
        ("downsampling", 0, "UNITConfig.downsampling must be None or an integer from 1 to 4; found 0"),
        ("base_width", 0, "base_width must be an integer >= 1; found 0"),
        ("shared_res_blocks", 0, "shared_res_blocks must be an integer >= 1; found 0"),
        ("attention_pool", 0, r"attention_pool must be None or an integer >= 1; found 0"),
        ("attention_pool", 1.5, r"attention_pool must be None or an integer >= 1; found 1.5"),
        ("dropout", 1.0, r"dropout must be in \[0, 1\); found 1.0"),
        ("g_learning_rate", 0.0, "g_learning_rate must be a number > 0; found 0.0"),
        ("charbonnier_epsilon", -1e-3, "charbonnier_epsilon must be a number > 0"),
    ],
)
def test_invalid_fields_name_field_allowed_and_found(field, value, message):
    with pytest.raises(ValueError, match=message):
        UNITConfig(**{field: value})


def test_json_round_trip_through_text_and_file(tmp_path):
    config = get_preset("sa-gen-cl-sn", image_shape=(64, 32), base_width=16, dropout=0.25)
    text = config.to_json()
    assert json.loads(text)["spectral_norm"] == ["encoder", "generator", "discriminator"]
    assert UNITConfig.from_json(text) == config
    path = tmp_path / "config.json"
    config.to_json(path)
    restored = UNITConfig.from_json(path)
    assert restored == config
    assert restored.image_shape == (64, 32) and isinstance(restored.spectral_norm, tuple)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        UNITConfig.from_json(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not valid JSON"):
        UNITConfig.from_json("{not json")


def test_config_from_dict_dispatches_on_model():
    data = get_preset("unit-cl", base_width=8).to_dict()
    assert config_from_dict(data) == get_preset("unit-cl", base_width=8)
    with pytest.raises(ValueError, match=r"Unknown config 'model' 'pix2pix'; known models are \['unit', 'cyclegan'\]"):
        config_from_dict({**data, "model": "pix2pix"})


def test_a_saved_config_without_a_newer_field_takes_its_old_value(tmp_path):
    from gan_mri.training import RunFolder, create_run

    data = get_preset("sa-enc-cl-sn", base_width=8).to_dict()
    del data["attention_pool"]  # as a version before the field wrote it
    assert config_from_dict(data).attention_pool is None  # a user's file: the present default
    assert config_from_dict(data, saved=True).attention_pool == 1  # a saved run or model: as built
    assert config_from_dict({**data, "attention_pool": 2}, saved=True).attention_pool == 2
    assert config_from_dict(get_preset("cyclegan").to_dict(), saved=True) == get_preset("cyclegan")
    # A run folder's config.json is read the saved way (`gan-mri train --resume` rebuilds from it).
    run = create_run(tmp_path / "run", get_preset("sa-enc-cl-sn", base_width=8, attention_pool=1), {"epochs": 1})
    recorded = json.loads(run.config_file.read_text())
    del recorded["attention_pool"]
    run.config_file.write_text(json.dumps(recorded))
    assert RunFolder.open(run.root).load_config().attention_pool == 1


def test_presets_are_plain_data():
    # Presets must be JSON-serializable data, not code.
    assert json.loads(json.dumps(PRESETS))["unit-sn"]["spectral_norm"] == [
        "encoder", "generator", "discriminator"]


# ------------------------------------------------------------ one validator set, one source per enumeration
from gan_mri import config as config_module  # noqa: E402
from gan_mri.config import CycleGANConfig  # noqa: E402


@pytest.mark.parametrize("cls", [UNITConfig, CycleGANConfig])
@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("channels", 2, r"one of \[1, 3\]; found 2"),
        ("channels", True, r"one of \[1, 3\]; found True"),  # a bool is not the integer 1
        ("channels", 1.0, r"one of \[1, 3\]; found 1.0"),
        ("base_width", 0, "an integer >= 1; found 0"),
        ("base_width", 8.0, "an integer >= 1; found 8.0"),
        ("norm", "group", r"one of \['instance', 'layer', 'batch'\]; found 'group'"),
        ("gan_weight", -1.0, "a number >= 0; found -1.0"),
        ("cycle_weight", "10", "a number >= 0; found '10'"),
        ("d_learning_rate", 0, "a number > 0; found 0"),
        ("beta_2", 1.0, r"in \[0, 1\); found 1.0"),
        ("decay_start", -0.1, r"a fraction in \[0, 1\]; found -0.1"),
        ("precision", "bfloat16", r"one of \['auto', 'float32', 'mixed_float16', 'mixed_bfloat16'\]; found 'bfloat16'"),
        ("name", "", "a non-empty string; found ''"),
        ("image_shape", (32, 0), r"\(height, width\), positive integers; found \(32, 0\)"),
        ("image_shape", (30, 33), r"\(height, width\), positive multiples of (2|4)\b.*; found \(30, 33\)"),
    ],
)
def test_both_families_share_one_validator_and_name_their_class(cls, field, value, expected):
    with pytest.raises(ValueError) as raised:
        cls(**{field: value})
    message = str(raised.value)
    assert message.startswith(f"{cls.__name__}.{field} must be "), message
    assert raised.match(expected)


@pytest.mark.parametrize("cls", [UNITConfig, CycleGANConfig])
def test_every_field_of_both_families_has_a_rule(cls):
    # Validation stops at the first failure; a valid config runs every rule.
    checked = [field for field, _ in cls()._rules()]
    assert set(checked) == {f.name for f in config_module.dataclasses.fields(cls)}
    assert cls().validate() is None


def test_family_field_must_name_its_family():
    with pytest.raises(ValueError, match="^UNITConfig.model must be 'unit'; found 'cyclegan'$"):
        UNITConfig(model="cyclegan")
    with pytest.raises(ValueError, match="^CycleGANConfig.model must be 'cyclegan'; found 'unit'$"):
        CycleGANConfig(model="unit")


def test_spectral_norm_scopes_are_a_subset_without_repeats():
    with pytest.raises(ValueError, match=r"must be a subset \(no repeats\) of \['encoder', 'generator', "
                                         r"'discriminator'\]; found \['encoder', 'encoder'\]"):
        UNITConfig(spectral_norm=["encoder", "encoder"])
    assert UNITConfig(spectral_norm="generator").spectral_norm == ("generator",)
    assert PRESETS["unit-sn"]["spectral_norm"] is config_module.SPECTRAL_NORM_SCOPES


def test_precisions_are_one_list_that_validating_a_config_reads_without_keras():
    from gan_mri import precision

    assert config_module.PRECISIONS is precision.PRECISIONS
    code = ("import sys; from gan_mri.config import get_preset; get_preset('unit', precision='mixed_bfloat16'); "
            "print(sorted(name for name in ('keras', 'tensorflow', 'jax') if name in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr[-2000:]
    with pytest.raises(ValueError) as raised:
        CycleGANConfig(precision="fp8")
    assert str(raised.value) == f"CycleGANConfig.precision must be one of {list(precision.PRECISIONS)}; found 'fp8'"


def _constant_tuples(path):
    """(line, values) of every tuple literal of constants in a Python file."""
    import ast

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Tuple) and node.elts and all(isinstance(e, ast.Constant) for e in node.elts):
            yield node.lineno, tuple(e.value for e in node.elts)


ENUMERATIONS = {
    "NORMS": "gan_mri/config.py", "CONV_NORMS": "gan_mri/config.py", "GAN_LOSSES": "gan_mri/config.py",
    "ATTENTION_PLACEMENTS": "gan_mri/config.py", "SPECTRAL_NORM_SCOPES": "gan_mri/config.py",
    "RECON_LOSSES": "gan_mri/config.py", "UPSAMPLING": "gan_mri/config.py", "UPDATE_ORDERS": "gan_mri/config.py",
    "DISTRIBUTIONS": "gan_mri/config.py", "PRECISIONS": "gan_mri/config.py",
}
"""Enumeration -> the one file that spells it out (CHANNELS, (1, 3), is left out: the same two
numbers are axis pairs elsewhere)."""


@pytest.mark.parametrize("name", ENUMERATIONS)
def test_each_enumeration_is_written_once_in_the_package(name):
    from pathlib import Path

    import gan_mri

    root = Path(gan_mri.__file__).parent
    values = getattr(config_module, name)
    places = [f"{path.relative_to(root.parent)}:{line}" for path in sorted(root.rglob("*.py"))
              for line, found in _constant_tuples(path) if found == values]
    assert len(places) == 1 and places[0].startswith(ENUMERATIONS[name] + ":"), places
