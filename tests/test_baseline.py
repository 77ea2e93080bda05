"""The no-learning intensity remap: monotone, learned from the training split only, identity outside the brain."""

import numpy as np
import pytest

from gan_mri.baseline import IntensityRemap
from gan_mri.evaluation import evaluate


def _slices(rng, n=12, size=16):
    """Brain disks with a T1w-like intensity pattern, background -1, and their masks."""
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    images = np.where(mask, rng.uniform(-0.6, 0.9, (n, size, size)), -1.0).astype(np.float32)
    return images, np.broadcast_to(mask, images.shape).copy()


class _TrainOnlyDataset:
    """A PreparedDataset stand-in that refuses to hand out test arrays."""

    def __init__(self, arrays):
        self.arrays = arrays

    def array(self, name):
        if name.startswith("test"):
            raise AssertionError(f"the baseline read {name}")
        return self.arrays[name]

    def images(self, name, standardization=None):
        assert standardization is None
        return self.array(name)


def test_remap_inverts_the_quantiles_and_recovers_an_inverted_contrast():
    rng = np.random.default_rng(0)
    t1w, mask = _slices(rng)
    t2w = np.where(mask, -t1w, -1.0)  # inverted contrast inside the brain
    remap = IntensityRemap.fit({"A": t1w, "B": t2w}, {"A": mask, "B": mask})
    unseen, unseen_mask = _slices(np.random.default_rng(1), n=3)
    translated = remap.translate(unseen, "A2B", unseen_mask)
    np.testing.assert_allclose(translated[unseen_mask], -unseen[unseen_mask], atol=0.01)
    back = remap.translate(translated, "B2A", unseen_mask)
    np.testing.assert_allclose(back[unseen_mask], unseen[unseen_mask], atol=0.01)


def test_remap_is_monotone_decreasing_inside_and_identity_outside_the_brain():
    rng = np.random.default_rng(2)
    t1w, mask = _slices(rng)
    t2w = np.where(mask, np.tanh(1.5 - 2.0 * (t1w + 0.3) ** 2) * 0.8, -1.0)  # any other contrast
    remap = IntensityRemap.fit({"A": t1w, "B": t2w}, {"A": mask, "B": mask})
    ramp = np.linspace(-0.6, 0.9, 64, dtype=np.float32).reshape(1, 8, 8)
    out = remap.translate(ramp, "A2B", np.ones_like(ramp, bool)).ravel()
    assert np.all(np.diff(out) <= 1e-6) and out[0] - out[-1] > 0.5
    image, image_mask = _slices(np.random.default_rng(3), n=2)
    image = (image[..., None] + np.where(image_mask, 0.0, 0.05)[..., None]).astype(np.float32)  # background noise
    translated = remap.translate(image, "A2B", image_mask)
    assert translated.shape == image.shape and translated.dtype == np.float32
    np.testing.assert_array_equal(translated[~image_mask], image[~image_mask])


def test_from_dataset_learns_from_the_training_split_only():
    rng = np.random.default_rng(4)
    t1w, mask = _slices(rng, n=80)
    t2w, mask_b = _slices(rng, n=80)
    dataset = _TrainOnlyDataset({"train_a": t1w, "train_b": t2w, "train_a_mask": mask, "train_b_mask": mask_b})
    remap = IntensityRemap.from_dataset(dataset)
    expected = np.quantile(t1w[mask], np.linspace(0, 1, 1001))
    np.testing.assert_allclose(remap.quantiles["A"], expected, atol=2e-3)  # histogram bins of ~5e-4
    assert IntensityRemap.from_dict(remap.to_dict()).to_dict() == remap.to_dict()


def test_bad_inputs_are_refused_with_the_field_named():
    rng = np.random.default_rng(5)
    t1w, mask = _slices(rng)
    remap = IntensityRemap.fit({"A": t1w, "B": t1w}, {"A": mask, "B": mask})
    with pytest.raises(ValueError, match=r"direction must be one of \['A2B', 'B2A'\]; found 'T1toT2'"):
        remap.translate(t1w, "T1toT2", mask)
    with pytest.raises(ValueError, match=r"brain_mask: expected shape \(12, 16, 16\) to match the images, found \(12, 8, 8\)"):
        remap.translate(t1w, "A2B", mask[:, :8, :8])
    with pytest.raises(ValueError, match="domain B: expected finite brain voxels in the masks, found none"):
        IntensityRemap.fit({"A": t1w, "B": t1w}, {"A": mask, "B": np.zeros_like(mask)})
    with pytest.raises(ValueError, match="quantiles of domain A must be a non-decreasing vector"):
        IntensityRemap({"A": [0.5, 0.1], "B": [0.0, 1.0]})


class _IdentityModel:
    def translate(self, x, direction):
        return x

    def reconstruct(self, x, domain):
        return x


def test_evaluate_scores_the_baseline_beside_the_model():
    rng = np.random.default_rng(6)
    t1w, mask = _slices(rng, size=24)
    t2w = np.where(mask, -t1w, -1.0)
    remap = IntensityRemap.fit({"A": t1w, "B": t2w}, {"A": mask, "B": mask})
    batch = {"a": t1w[..., None], "b": t2w[..., None], "brain_mask": mask}
    results = evaluate(_IdentityModel(), [batch], structure=False, baseline=remap)
    for direction in ("A2B", "B2A"):
        values = results[direction]
        # The remap recovers the inverted contrast; copying the input does not.
        assert values["baseline_ssim_brain"] > 0.99 > values["ssim_brain"]
        assert values["baseline_mae_brain"] < 0.01 < values["mae_brain"]
        assert {f"baseline_{m}" for m in ("ssim", "psnr", "psnr_brain", "mae")} <= set(values)
    assert "baseline_ssim" not in evaluate(_IdentityModel(), [batch], structure=False)["A2B"]
