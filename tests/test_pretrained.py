"""The small pretrained model that ships with the package."""

import json
import re

import numpy as np

from gan_mri.inference import load_model
from gan_mri.pretrained import PRETRAINED_NAME, pretrained_model_path


def test_shipped_model_loads_and_translates_deterministically():
    path = pretrained_model_path()
    assert path.name == PRETRAINED_NAME
    assert (path / "model.keras").stat().st_size < 20 * 2**20
    model = load_model(path)
    assert model.config.name == "sa-enc-cl-sn" and model.image_shape == (128, 128) and model.channels == 1
    x = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 1)).astype(np.float32)
    first, second = model.translate(x, "A2B"), model.translate(x, "A2B")
    np.testing.assert_array_equal(first, second)
    assert first.shape == (2, 128, 128, 1) and float(np.max(np.abs(first))) <= 1.0


def test_readme_reports_the_measured_ssim():
    path = pretrained_model_path()
    measured = json.loads((path / "evaluation" / "metrics.json").read_text())
    readme = (path / "README.md").read_text()
    for direction, label in (("A2B", "T1w -> T2w"), ("B2A", "T2w -> T1w")):
        row = re.search(rf"\| {re.escape(label)} \({direction}\) \| ([0-9.]+) \| ([0-9.]+) \|", readme)
        assert row, label
        assert float(row.group(1)) == round(measured[direction]["ssim"], 4)
        assert float(row.group(2)) == round(measured[direction]["ssim_brain"], 4)


def test_shipped_model_keeps_the_real_ventricles_contrast():
    """Real anatomy, not the phantom: the real ICBM 2009c pair translated both ways, the lateral
    ventricles taken from its CerebrA labels (not the brain's rim), against white matter on the brain's
    [0, 1] scale. Issue 18 asks for the truth's ratio within 25 %: the truth is 6.90 (T2w) and 0.120
    (T1w); the shipped model measured 6.62 and 0.13 (the earlier 64-px spin-echo model: 3.24 and 0.44)."""
    from gan_mri.data.icbm152 import load_icbm152
    from gan_mri.inference import translate_volume
    from gan_mri.sim_to_real import ventricle_ratio

    model = load_model(pretrained_model_path())
    pair = load_icbm152()
    white_matter = pair.dseg == 3
    for direction, source, target in (("A2B", "T1w", "T2w"), ("B2A", "T2w", "T1w")):
        translated = np.asarray(translate_volume(model, pair.image(source), direction).dataobj, dtype=np.float32)
        truth = np.asarray(pair.image(target).dataobj, dtype=np.float32)
        ratio = ventricle_ratio(translated, pair.brain_mask, pair.ventricles, white_matter)
        expected = ventricle_ratio(truth, pair.brain_mask, pair.ventricles, white_matter)
        assert abs(ratio / expected - 1) <= 0.25, (direction, ratio, expected)
