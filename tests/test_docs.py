"""What README.md and the docs quote is what the code does: the configs' defaults in
docs/architecture.md (issue 22: they drifted once), README's two commands and .ci/run, the demo's
settings, the presets, the shipped model's numbers, and every link between the documents."""

import ast
import dataclasses
import json
import re
from pathlib import Path

import pytest

from gan_mri.config import CycleGANConfig, UNITConfig

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
README = ROOT / "README.md"


def quoted_defaults(class_name: str) -> dict:
    """``field -> value`` of every `` `field=value` `` in the bullet of docs/architecture.md that
    starts with `` `class_name` ``."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    match = re.search(rf"^- `{class_name}`(.*?)(?=^- |\Z)", text, flags=re.S | re.M)
    assert match, f"docs/architecture.md has no bullet for {class_name}"
    return {name: ast.literal_eval(value)
            for name, value in re.findall(r"`(\w+)=([^`]+)`", match.group(1))}


@pytest.mark.parametrize("config_class", [UNITConfig, CycleGANConfig])
def test_architecture_md_quotes_the_configs_defaults(config_class):
    quoted = quoted_defaults(config_class.__name__)
    defaults = {field.name: field.default for field in dataclasses.fields(config_class)}
    assert len(quoted) >= 12, quoted  # the bullet quotes most fields, not a few
    unknown = sorted(set(quoted) - set(defaults))
    assert not unknown, f"docs/architecture.md quotes {unknown}, which {config_class.__name__} does not have"
    wrong = {name: (value, defaults[name]) for name, value in quoted.items() if value != defaults[name]}
    assert not wrong, f"docs/architecture.md quotes (doc, config): {wrong}"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_test_command_is_what_ci_runs():
    """README's second command is .ci/run's install and test line, word for word."""
    commands = re.findall(r"^    (python3 -m venv \.venv && .*)$", _readme(), flags=re.M)
    assert len(commands) == 2, commands
    demo, tests = commands
    assert demo.endswith('pip install . && gan-mri demo')
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert tests.endswith(ci), (tests, ci)


def test_readme_describes_the_demo_it_runs():
    from gan_mri.demo import DemoSettings

    defaults = DemoSettings()
    text = _readme()
    assert f"simulates {defaults.subjects} phantom subjects" in text
    assert f"prepares {defaults.image_size}×{defaults.image_size} axial slices" in text
    assert f"trains `{defaults.preset}` at base width {defaults.base_width} for {defaults.epochs} epochs" in text


def test_readme_names_every_preset():
    from gan_mri.config import get_preset, preset_family

    unit = list(preset_family("unit").presets)
    text = _readme()
    named = re.findall(r"`([a-z][a-z0-9-]*)`", text.split("train by name (`--preset`):")[1].split("`--family")[0])
    assert named == unit, named
    assert all(get_preset(name).model == "unit" for name in named)


def test_readme_quotes_the_shipped_models_measurements():
    """The shipped model's rows of README's table are its evaluation/ files, rounded to 3 places."""
    from gan_mri.pretrained import pretrained_model_path

    evaluation = pretrained_model_path() / "evaluation"
    phantom = json.loads((evaluation / "metrics.json").read_text())
    real = json.loads((evaluation / "sim_to_real.json").read_text())

    def pair(a2b, b2a):
        return f"{a2b:.3f} / {b2a:.3f}"

    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in _readme().splitlines()
             if line.startswith("| shipped model")]
    rows = {row[1]: row[2:] for row in cells}
    epochs = len((pretrained_model_path() / "history.csv").read_text().strip().splitlines()) - 1
    assert cells[0][0] == f"shipped model (128 px, {epochs} epochs)"
    phantom_row = rows["phantom test subjects"]
    assert phantom_row[:2] == [pair(phantom["A2B"]["ssim_brain"], phantom["B2A"]["ssim_brain"]),
                               pair(phantom["A2B"]["baseline_ssim_brain"], phantom["B2A"]["baseline_ssim_brain"])]
    real_row = rows["real ICBM 2009c pair"]
    names = ("model", "remap_training", "oracle_remap", "oracle_lookup_table", "ceiling")
    assert real_row == [pair(real["A2B"][name]["ssim_brain"], real["B2A"][name]["ssim_brain"]) for name in names]
    head_row = rows["real pair, whole-head input"]
    assert head_row[0] == pair(real["A2B"]["model_whole_head"]["ssim_brain"], real["B2A"]["model_whole_head"]["ssim_brain"])


@pytest.mark.parametrize("document", ["README.md", *sorted(p.relative_to(ROOT).as_posix()
                                                            for p in (ROOT / "docs").glob("*.md"))])
def test_every_relative_link_points_at_a_file(document):
    path = ROOT / document
    prose = re.sub(r"```.*?```|`[^`\n]*`", "", path.read_text(encoding="utf-8"), flags=re.S)  # code is not links
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose)
    missing = [link for link in links if "://" not in link and not (path.parent / link).exists()]
    assert not missing, f"{document} links to missing files: {missing}"


def test_every_doc_opens_with_what_it_is_for():
    """Each doc under docs/ starts with a title and a paragraph before its first section."""
    for path in sorted((ROOT / "docs").glob("*.md")):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("# "), path.name
        body = "\n".join(lines[1:]).split("\n## ")[0].strip()
        assert len(body) > 100, f"docs/{path.name} has no opening paragraph"
