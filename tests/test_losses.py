"""Loss functions against their formulas in numpy."""

import numpy as np
import pytest

from gan_mri import losses


def _np_bce(logits, target):
    p = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return np.mean(-target * np.log(p) - (1 - target) * np.log(1 - p))


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_bce_from_logits_matches_formula(rng):
    logits = rng.normal(0, 3, (2, 4, 4, 1)).astype(np.float32)
    for target in (0.0, 1.0):
        got = float(losses.bce_from_logits(logits, target))
        assert got == pytest.approx(_np_bce(logits, target), rel=1e-5)


def test_bce_from_logits_is_finite_for_extreme_logits():
    logits = np.array([-200.0, 200.0], np.float32)
    # -log(sigmoid(-200)) = 200 for the "real" target; the naive formula would give inf.
    assert float(losses.bce_from_logits(logits, 1.0)) == pytest.approx(100.0, rel=1e-5)


@pytest.mark.parametrize("criterion", ["bce", "lsgan"])
def test_adversarial_losses_sum_over_scales(rng, criterion):
    real = [rng.normal(size=(2, s, s, 1)).astype(np.float32) for s in (4, 2, 1)]
    fake = [rng.normal(size=(2, s, s, 1)).astype(np.float32) for s in (4, 2, 1)]
    term = _np_bce if criterion == "bce" else (lambda x, t: np.mean((x.astype(np.float64) - t) ** 2))
    expected_g = sum(term(f, 1.0) for f in fake)
    expected_d = sum(term(r, 1.0) + term(f, 0.0) for r, f in zip(real, fake))
    assert float(losses.adversarial_loss(fake, 1.0, criterion)) == pytest.approx(expected_g, rel=1e-5)
    assert float(losses.discriminator_loss(real, fake, criterion)) == pytest.approx(expected_d, rel=1e-5)
    # A single-scale discriminator's output is one tensor, not a list.
    assert float(losses.adversarial_loss(fake[0], 0.0, criterion)) == pytest.approx(term(fake[0], 0.0), rel=1e-5)
    with pytest.raises(ValueError, match="one entry per scale; found 3 and 2"):
        losses.discriminator_loss(real, fake[:2], criterion)
    with pytest.raises(ValueError, match=r"gan criterion must be one of \['bce', 'lsgan'\]; found 'wgan'"):
        losses.adversarial_loss(fake, 1.0, "wgan")


def test_discriminator_accuracy_per_scale_against_its_threshold():
    real = [np.array([2.0, 3.0, -1.0, 4.0], np.float32), np.array([0.6, 0.7], np.float32)]
    fake = [np.array([-2.0, -1.0, -3.0, 1.0], np.float32), np.array([0.2, 0.9], np.float32)]
    # BCE logits: threshold 0. Scale 0: real 3/4 right, fake 3/4 right; scale 1: 2/2 and 0/2.
    assert [float(a) for a in losses.discriminator_accuracy(real, fake, "bce")] == [0.75, 0.5]
    # Least squares: threshold 0.5. Scale 1: real 2/2 right, fake 1/2 right.
    assert [float(a) for a in losses.discriminator_accuracy(real, fake, "lsgan")][1] == 0.75
    chance = losses.discriminator_accuracy(np.zeros(8, np.float32), np.zeros(8, np.float32), "lsgan")
    assert [float(a) for a in chance] == [0.5]


def test_mae_charbonnier_kl_match_formulas(rng):
    a = rng.uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
    b = rng.uniform(-1, 1, (3, 8, 8, 1)).astype(np.float32)
    assert float(losses.mae(a, b)) == pytest.approx(np.mean(np.abs(a - b)), rel=1e-5)
    eps = 0.1
    assert float(losses.charbonnier(a, b, eps)) == pytest.approx(
        np.mean(np.sqrt((a - b) ** 2 + eps**2)), rel=1e-5)
    assert float(losses.kl_loss(a)) == pytest.approx(np.mean(a**2), rel=1e-5)


def test_charbonnier_approaches_mae_as_epsilon_shrinks(rng):
    a = rng.uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
    b = rng.uniform(-1, 1, (2, 8, 8, 1)).astype(np.float32)
    mae = float(losses.mae(a, b))
    gaps = [float(losses.charbonnier(a, b, eps)) - mae for eps in (1e-1, 1e-2, 1e-4)]
    assert gaps[0] > gaps[1] > gaps[2] >= 0
    assert gaps[2] < 1e-5


def test_losses_compute_in_float32_for_float16_inputs():
    a = np.full((1, 4, 4, 1), 300.0, np.float16)
    # 300^2 = 90000 overflows float16 (max 65504) unless the loss casts first.
    assert float(losses.kl_loss(a)) == pytest.approx(90000.0)
    assert losses.mae(a, a).dtype == "float32"


def test_reconstruction_loss_by_name():
    a = np.zeros((1, 2, 2, 1), np.float32)
    b = np.ones((1, 2, 2, 1), np.float32)
    assert float(losses.reconstruction_loss("mae")(a, b)) == pytest.approx(1.0)
    assert float(losses.reconstruction_loss("charbonnier", 1.0)(a, b)) == pytest.approx(np.sqrt(2.0))
    with pytest.raises(ValueError, match=r"recon_loss must be one of \['mae', 'charbonnier'\]; found 'l2'"):
        losses.reconstruction_loss("l2")


def _np_local_correlation_loss(x, y, window, epsilon):
    from scipy import ndimage

    def mean(v):  # "same" box mean that averages only the pixels inside the image, as average_pool
        ones = np.ones_like(v)
        size = (1, window, window, 1)
        return ndimage.uniform_filter(v, size, mode="constant") / ndimage.uniform_filter(ones, size, mode="constant")

    x, y = x.astype(np.float64), y.astype(np.float64)
    mx, my = mean(x), mean(y)
    vx, vy, cov = mean(x * x) - mx**2, mean(y * y) - my**2, mean(x * y) - mx * my
    return 1.0 - np.mean(cov**2 / (np.maximum(vx, 0) * np.maximum(vy, 0) + epsilon))


@pytest.mark.parametrize("channels", [1, 3])
def test_local_correlation_loss_matches_numpy_and_ignores_contrast_inversion(rng, channels):
    x = rng.uniform(-1, 1, (2, 12, 12, channels)).astype(np.float32)
    y = rng.uniform(-1, 1, (2, 12, 12, channels)).astype(np.float32)
    got = float(losses.local_correlation_loss(x, y, window=5, epsilon=1e-3))
    assert got == pytest.approx(_np_local_correlation_loss(x, y, 5, 1e-3), rel=1e-4)
    assert got > 0.5  # unrelated images: little local correlation
    # An inverted, rescaled and shifted copy keeps every edge: (almost) no loss.
    assert float(losses.local_correlation_loss(x, -0.5 * x + 0.2, window=5, epsilon=1e-6)) < 1e-3
    # A blurred copy loses edges and costs more than the inverted one.
    blurred = (x + np.roll(x, 1, axis=1) + np.roll(x, 1, axis=2)) / 3
    assert float(losses.local_correlation_loss(x, blurred, window=5, epsilon=1e-6)) > 0.05


def test_local_contrast_loss_counts_lost_contrast_only_whatever_the_sign():
    background = np.zeros((1, 40, 40, 1), np.float32)
    background[:, 4:36, 4:36] = 0.5  # white matter
    lesion = background.copy()
    lesion[:, 10:14, 10:14] = 0.1  # dark on the input (T1w-like)
    # Kept: the same image inverted (T1w -> T2w: the lesion bright), shifted, or with more contrast.
    for kept in (lesion, -lesion, -lesion - 0.2, 1.5 * lesion):
        assert float(losses.local_contrast_loss(lesion, kept)) < 1e-6
    # Lost: the lesion painted as white matter; halved: a part of it lost.
    lost = float(losses.local_contrast_loss(lesion, background))
    halved = background.copy()
    halved[:, 10:14, 10:14] = 0.3
    partly = float(losses.local_contrast_loss(lesion, halved))
    assert lost > 1.5 * partly > 1e-3
    # One-sided: contrast the translation adds (a bright spot the input lacks, more than a box away
    # from the lesion and the edge) costs nothing.
    added = lesion.copy()
    added[:, 25:28, 25:28] = 1.0
    assert float(losses.local_contrast_loss(lesion, added)) < 1e-6 < float(losses.local_contrast_loss(added, lesion))
    # Per pixel: the mean of relu(c(x) - c(y)), c = |v - box mean|, the box written out.
    from scipy import ndimage

    def contrast(v):
        ones = np.ones_like(v)
        mean = ndimage.uniform_filter(v, (1, 7, 7, 1), mode="constant") / ndimage.uniform_filter(
            ones, (1, 7, 7, 1), mode="constant")
        return np.abs(v.astype(np.float64) - mean)

    assert lost == pytest.approx(np.mean(np.maximum(contrast(lesion) - contrast(background), 0)), rel=1e-4)


def test_criteria_and_penalties_are_the_configs_names():
    from gan_mri.config import GAN_LOSSES, RECON_LOSSES

    assert tuple(losses.GAN_CRITERIA) == GAN_LOSSES and tuple(losses.DECISION_THRESHOLDS) == GAN_LOSSES
    for kind in RECON_LOSSES:
        assert callable(losses.reconstruction_loss(kind))
    with pytest.raises(ValueError, match=rf"recon_loss must be one of {list(RECON_LOSSES)!r}".replace("[", r"\[")
                       .replace("]", r"\]")):
        losses.reconstruction_loss("huber")


@pytest.mark.parametrize("criterion, term", [
    ("bce", lambda x, t: _np_bce(x, t)),
    ("lsgan", lambda x, t: np.mean((x.astype(np.float64) - t) ** 2)),
])
def test_one_adversarial_loss_for_a_tensor_a_list_and_a_tuple(rng, criterion, term):
    maps = [rng.normal(size=(2, s, s, 1)).astype(np.float32) for s in (8, 4)]
    single = float(losses.adversarial_loss(maps[0], 1.0, criterion))
    assert single == pytest.approx(term(maps[0], 1.0), rel=1e-5)
    # A list and a tuple of per-scale maps give the same sum; one map in a list equals the bare map.
    as_list = float(losses.adversarial_loss(maps, 0.0, criterion))
    assert as_list == pytest.approx(term(maps[0], 0.0) + term(maps[1], 0.0), rel=1e-5)
    assert float(losses.adversarial_loss(tuple(maps), 0.0, criterion)) == pytest.approx(as_list, rel=1e-6)
    assert float(losses.adversarial_loss([maps[0]], 1.0, criterion)) == pytest.approx(single, rel=1e-6)
    # The old per-criterion names are the same terms.
    old = losses.bce_from_logits if criterion == "bce" else losses.least_squares
    assert float(old(maps[0], 1.0)) == pytest.approx(single, rel=1e-6)
