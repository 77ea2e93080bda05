"""One registry per extension point: a model family, a recipe, a GAN criterion and a data layout
registered inside a test reach every consumer (configs, get_preset, build_model, the CLI, prepare),
and are gone again when the test's `with` block ends."""

import dataclasses
import json
import re
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from gan_mri import cli
from gan_mri.config import (
    FAMILY_REGISTRY,
    RECIPE_REGISTRY,
    RECIPES,
    CycleGANConfig,
    Family,
    Recipe,
    UNITConfig,
    all_preset_names,
    config_from_dict,
    get_preset,
    register_family,
)
from gan_mri.data.layouts import LAYOUT_REGISTRY, LAYOUTS, Layout, VolumeSet, detect_layout, discover
from gan_mri.registry import Registry

BUILT_IN_PRESETS = ("unit-rgb", "unit", "unit-cl", "unit-sn", "sa-gen", "sa-gen-cl", "sa-gen-cl-sn",
                    "sa-enc-cl-sn", "cyclegan")


@dataclasses.dataclass
class TinyCycleGANConfig(CycleGANConfig):
    """The dummy family's config: CycleGAN at test size, under a name of its own."""

    model: str = "tiny-cyclegan"
    image_shape: tuple[int, int] = (32, 32)
    base_width: int = 4
    res_blocks: int = 1


def tiny_family(**changes) -> Family:
    fields = dict(name="tiny-cyclegan", config_class=TinyCycleGANConfig, model="gan_mri.models.cyclegan:CycleGAN",
                  presets={"tiny-cyclegan": {}, "tiny-cyclegan-id": {"identity_weight": 0.5}},
                  description="CycleGAN at test size")
    return Family(**{**fields, **changes})


def parse(*argv):
    return cli.build_parser().parse_args([str(arg) for arg in argv])


def help_of(command: str, capsys, monkeypatch) -> str:
    """What `gan-mri COMMAND --help` prints, from a parser built now, on one line per argument."""
    monkeypatch.setenv("COLUMNS", "1000")  # argparse would wrap hyphenated names such as tiny-cyclegan
    with pytest.raises(SystemExit):
        parse(command, "--help")
    return capsys.readouterr().out


def test_registry_keeps_order_refuses_duplicates_and_restores_what_a_with_block_replaced():
    registry = Registry("thing")
    first, second = SimpleNamespace(name="b"), SimpleNamespace(name="a")
    registry.register(first)
    registry.register(second)
    assert list(registry) == ["b", "a"] and registry["a"] is second
    with pytest.raises(ValueError, match=r"thing 'a' is already registered .*registered are \['b', 'a'\]"):
        registry.register(SimpleNamespace(name="a"))
    with pytest.raises(ValueError, match="thing name must be a non-empty string; found ''"):
        registry.register(SimpleNamespace(name=""))
    names, view = registry.names("auto"), registry.view(lambda entry: entry.name.upper())
    replacement = SimpleNamespace(name="a")
    with registry.registered(replacement, replace=True), registry.registered(SimpleNamespace(name="c")):
        assert registry["a"] is replacement and names == ("auto", "b", "a", "c") and dict(view)["c"] == "C"
    assert registry["a"] is second and names == ("auto", "b", "a") and repr(names) == "('auto', 'b', 'a')"
    assert registry.unregister("b") is first and list(view) == ["a"]
    with pytest.raises(ValueError, match=r"thing 'b' is not registered; registered are \['a'\]"):
        registry.unregister("b")


def test_a_family_registered_in_a_test_reaches_presets_configs_and_build_model():
    from gan_mri.models import MODELS, CycleGAN, build_model

    with FAMILY_REGISTRY.registered(tiny_family()):
        assert all_preset_names() == BUILT_IN_PRESETS + ("tiny-cyclegan", "tiny-cyclegan-id")
        # The family's config records no recipe: a recipe leaves it as the preset defines it.
        config = get_preset("tiny-cyclegan-id", recipe="lineage", pool_size=0)
        assert type(config) is TinyCycleGANConfig
        assert (config.model, config.name, config.identity_weight, config.pool_size) == (
            "tiny-cyclegan", "tiny-cyclegan-id", 0.5, 0)
        assert config_from_dict(config.to_dict()) == config == config_from_dict(config.to_dict(), saved=True)
        assert MODELS["tiny-cyclegan"] is CycleGAN and list(MODELS)[-1] == "tiny-cyclegan"
        model = build_model(config)
        assert isinstance(model, CycleGAN) and model.config is config and model.image_shape == (32, 32)
    assert all_preset_names() == BUILT_IN_PRESETS and "tiny-cyclegan" not in MODELS
    with pytest.raises(ValueError, match=r"Unknown preset 'tiny-cyclegan'; valid presets are \['unit-rgb'"):
        get_preset("tiny-cyclegan")
    with pytest.raises(ValueError, match=r"Unknown config 'model' 'tiny-cyclegan'; known models are "
                                         r"\['unit', 'cyclegan'\]"):
        config_from_dict(config.to_dict())
    with pytest.raises(ValueError, match=r"config.model must be one of \['unit', 'cyclegan'\]; found 'tiny-cyclegan'"):
        build_model(config)


def test_a_registered_family_is_a_choice_of_train_family_and_its_help(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        parse("train", "--family", "tiny-cyclegan", "--data", "d", "--out", "r")
    with FAMILY_REGISTRY.registered(tiny_family()):
        # --model is the older spelling of train's --family (elsewhere --model is a trained run).
        assert parse("train", "--model", "tiny-cyclegan", "--data", "d", "--out", "r").family == "tiny-cyclegan"
        args = parse("train", "--family", "tiny-cyclegan", "--data", "d", "--out", "r", "--width", 8)
        config = cli._train_config(args, SimpleNamespace(image_shape=[64, 48]))
        assert (type(config), config.name, config.image_shape, config.base_width) == (
            TinyCycleGANConfig, "tiny-cyclegan", (64, 48), 8)
        train_help = help_of("train", capsys, monkeypatch)
        assert "--family {unit,cyclegan,tiny-cyclegan}, --model {unit,cyclegan,tiny-cyclegan}" in train_help
        assert "tiny-cyclegan (CycleGAN at test size)" in train_help
        assert "sa-enc-cl-sn, cyclegan, tiny-cyclegan, tiny-cyclegan-id (default" in train_help


@pytest.mark.parametrize("changes, message", [
    ({"config_class": CycleGANConfig},
     r"CycleGANConfig's model field must default to 'tiny-cyclegan'; found 'cyclegan'"),
    ({"config_class": dict}, "config_class must be a config dataclass"),
    ({"presets": {"tiny": {}}}, r"expected a preset named 'tiny-cyclegan' .*found presets \['tiny'\]"),
    ({"presets": {"tiny-cyclegan": {}, "unit-cl": {}}}, r"presets \['unit-cl'\] already belong to family 'unit'"),
    ({"model": "CycleGAN"}, "model must be a keras.Model subclass or a 'module:Class' path; found 'CycleGAN'"),
])
def test_registering_a_family_checks_it(changes, message):
    with pytest.raises(ValueError, match=message):
        register_family(tiny_family(**changes))
    assert "tiny-cyclegan" not in FAMILY_REGISTRY
    with pytest.raises(ValueError, match="model family 'unit' is already registered"):
        register_family(tiny_family(name="unit"))


def test_a_recipe_registered_in_a_test_reaches_get_preset_validation_and_the_cli():
    with RECIPE_REGISTRY.registered(Recipe("fast", {"g_learning_rate": 5e-3, "gan_weight": 20.0}, "a test's")):
        config = get_preset("sa-gen", recipe="fast")
        assert (config.recipe, config.g_learning_rate, config.gan_weight, config.attention) == (
            "fast", 5e-3, 20.0, "generator")
        assert RECIPES["fast"] == {"g_learning_rate": 5e-3, "gan_weight": 20.0}
        assert UNITConfig(recipe="fast").recipe == "fast"
        assert parse("train", "--recipe", "fast", "--data", "d", "--out", "r").recipe == "fast"
        assert parse("ablation", "--recipe", "fast", "--data", "d", "--out", "r", "--epochs", 1).recipe == "fast"
        assert get_preset("cyclegan", recipe="fast") == get_preset("cyclegan")  # CycleGAN takes no recipe
    assert list(RECIPES) == ["default", "lineage"]
    with pytest.raises(ValueError, match=r"UNITConfig.recipe must be one of \['default', 'lineage'\]; found 'fast'"):
        UNITConfig(recipe="fast")
    with pytest.raises(SystemExit):
        parse("train", "--recipe", "fast", "--data", "d", "--out", "r")


def test_a_gan_criterion_registered_in_a_test_gives_its_term_and_threshold_to_every_loss():
    from keras import ops

    from gan_mri import losses

    def hinge(scores, target):
        sign = 2.0 * target - 1.0  # +1 for "real", -1 for "fake"
        return ops.mean(ops.relu(1.0 - sign * ops.cast(scores, "float32")))

    real, fake = np.array([[0.5, 2.0]], np.float32), np.array([[-3.0, 0.25]], np.float32)
    with losses.CRITERION_REGISTRY.registered(losses.GANCriterion("hinge", hinge, 0.0, "hinge loss")):
        assert get_preset("unit", gan_loss="hinge").gan_loss == "hinge"
        assert losses.GAN_CRITERIA["hinge"] is hinge and losses.DECISION_THRESHOLDS["hinge"] == 0.0
        assert float(losses.adversarial_loss([real, fake], 1.0, "hinge")) == pytest.approx(
            np.mean([0.5, 0.0]) + np.mean([4.0, 0.75]))
        assert float(losses.discriminator_loss(real, fake, "hinge")) == pytest.approx(0.25 + np.mean([0.0, 1.25]))
        assert [float(a) for a in losses.discriminator_accuracy(real, fake, "hinge")] == [0.75]
    assert tuple(losses.GAN_CRITERIA) == ("bce", "lsgan")
    with pytest.raises(ValueError, match=r"UNITConfig.gan_loss must be one of \['bce', 'lsgan'\]; found 'hinge'"):
        get_preset("unit", gan_loss="hinge")
    with pytest.raises(ValueError, match=r"gan criterion must be one of \['bce', 'lsgan'\]; found 'hinge'"):
        losses.adversarial_loss(real, 1.0, "hinge")


# ------------------------------------------------------------------------------ a data layout
def write_head(path: Path, subject: int, contrast: str) -> None:
    """A small synthetic brain as a real NIfTI file: an ellipsoid of white matter in grey matter on a
    zero background, 2 mm voxels, bright white matter on T1w and dark on T2w."""
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in (28, 32, 24)), indexing="ij"))
    radius = np.sqrt(np.sum((grid / np.array([0.8, 0.85, 0.8])[:, None, None, None]) ** 2, axis=0))
    noise = np.random.default_rng([subject, int(contrast == "t2")]).normal(0, 3, radius.shape)
    white, grey = (110.0, 70.0) if contrast == "t1" else (50.0, 90.0)
    data = np.where(radius < 0.6, white, np.where(radius < 1.0, grey, 0.0)) + np.where(radius < 1.0, noise, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), path)


def discover_study(source: Path) -> list:
    """The dummy layout: study/<case>/t1.nii.gz and t2.nii.gz."""
    return [VolumeSet(case.name, None, case / "t1.nii.gz", case / "t2.nii.gz")
            for case in sorted(source.glob("case*")) if (case / "t1.nii.gz").is_file()]


STUDY = Layout("study", "case*/t1.nii.gz and t2.nii.gz", discover_study)


@pytest.fixture
def study(tmp_path):
    source = tmp_path / "study"
    for subject in range(4):
        for contrast in ("t1", "t2"):
            write_head(source / f"case{subject}" / f"{contrast}.nii.gz", subject, contrast)
    return source


def test_a_layout_registered_in_a_test_is_detected_discovered_and_prepared(study, tmp_path):
    from gan_mri.data import prepare

    with LAYOUT_REGISTRY.registered(STUDY):
        assert LAYOUTS[-1] == "study" and detect_layout(study) == "study"
        layout, sets = discover(study)
        assert layout == "study" and [(s.name, s.a.name, s.b.name) for s in sets] == [
            (f"case{i}", "t1.nii.gz", "t2.nii.gz") for i in range(4)]
        # --layout study through the CLI, then the same folder detected by prepare itself.
        assert cli.main(["prepare", str(study), "--out", str(tmp_path / "named"), "--size", "32", "--layout",
                         "study", "--test-fraction", "0.25"]) == 0
        detected = prepare(study, tmp_path / "detected", image_shape=(32, 32), test_fraction=0.25)
        for dataset in (json.loads((tmp_path / "named" / "manifest.json").read_text()), detected.manifest):
            assert dataset["layout"] == "study"
            assert dataset["split"] == {"train": ["case0", "case1", "case3"], "test": ["case2"]}
    assert "study" not in LAYOUTS
    with pytest.raises(ValueError, match="found no known layout"):
        detect_layout(study)
    with pytest.raises(SystemExit):
        parse("prepare", study, "--out", tmp_path / "again", "--layout", "study")


def test_prepare_help_lists_the_registered_layouts(capsys, monkeypatch):
    listed = "layout of SOURCE: auto, bids, hcp, ixi, brats, glob, png"
    assert f"{listed} (default" in help_of("prepare", capsys, monkeypatch)
    with LAYOUT_REGISTRY.registered(STUDY):
        assert f"{listed}, study (default" in help_of("prepare", capsys, monkeypatch)
    with pytest.raises(ValueError, match="layout name 'auto' is taken"):
        LAYOUT_REGISTRY.register(Layout("auto", "anything", discover_study))


def test_the_docs_list_every_registered_extension():
    """docs/architecture.md's registry section names every built-in family, recipe, criterion and layout."""
    from gan_mri import losses

    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    bullets = text.split("## Registries", 1)[1].split("\n## ", 1)[0].split("\n- ")
    for registry in (FAMILY_REGISTRY, RECIPE_REGISTRY, losses.CRITERION_REGISTRY, LAYOUT_REGISTRY):
        bullet = next((b for b in bullets if f"`{registry.kind}`" in b), "")
        assert "Built in:" in bullet, f"docs/architecture.md's Registries section has no bullet for `{registry.kind}`"
        listed = bullet.split("Built in:", 1)[1]
        assert re.findall(r'"([^"]+)"', listed) == list(registry), (registry.kind, listed)
