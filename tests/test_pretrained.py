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
    assert model.config.name == "sa-enc-cl-sn" and model.image_shape == (64, 64) and model.channels == 1
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 1)).astype(np.float32)
    first, second = model.translate(x, "A2B"), model.translate(x, "A2B")
    np.testing.assert_array_equal(first, second)
    assert first.shape == (2, 64, 64, 1) and float(np.max(np.abs(first))) <= 1.0


def test_readme_reports_the_measured_ssim():
    path = pretrained_model_path()
    measured = json.loads((path / "evaluation" / "metrics.json").read_text())
    readme = (path / "README.md").read_text()
    for direction, label in (("A2B", "T1w -> T2w"), ("B2A", "T2w -> T1w")):
        row = re.search(rf"\| {re.escape(label)} \({direction}\) \| ([0-9.]+) \| ([0-9.]+) \|", readme)
        assert row, label
        assert float(row.group(1)) == round(measured[direction]["ssim"], 4)
        assert float(row.group(2)) == round(measured[direction]["ssim_brain"], 4)


def test_shipped_model_gives_the_real_mni152_t1_template_t2_contrast():
    """Real anatomy, not the phantom: nilearn's 1 mm MNI152 T1 template translated T1w -> T2w
    (standardized with the model's reference) must come out with CSF > grey > white matter."""
    from nilearn import datasets

    from gan_mri.inference import translate_volume

    model = load_model(pretrained_model_path())
    assert model.standardization is not None
    t2w = np.asarray(translate_volume(model, datasets.load_mni152_template(resolution=1), "A2B").dataobj)
    grey, white, brain = (np.asarray(image.dataobj) for image in (
        datasets.load_mni152_gm_template(resolution=1), datasets.load_mni152_wm_template(resolution=1),
        datasets.load_mni152_brain_mask(resolution=1)))
    low, high = np.percentile(t2w[brain > 0], [1, 99])
    scaled = (t2w - low) / (high - low)
    csf = (brain > 0) & (grey < 0.1) & (white < 0.1)
    means = [float(scaled[region].mean()) for region in (csf, grey > 0.6, white > 0.6)]
    assert means[0] > means[1] + 0.15 and means[1] > means[2] + 0.15, means
