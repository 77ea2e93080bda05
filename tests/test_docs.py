"""The defaults docs/architecture.md quotes are the configs' defaults (issue 22: they drifted once)."""

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from gan_mri.config import CycleGANConfig, UNITConfig

ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


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
