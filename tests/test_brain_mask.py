"""Brain masks (gan_mri.data.brain_mask): given, from intensities, or a registered template for a whole head;
on synthetic volumes and on the real ICBM 2009c pair."""

import nibabel as nib
import numpy as np
import pytest

from gan_mri.data.brain_mask import WHOLE_HEAD_ML, brain_mask, intensity_mask, volume_ml
from gan_mri.data.icbm152 import load_icbm152

SHAPE = (48, 52, 44)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2.0 * np.sum(a & b) / (np.sum(a) + np.sum(b)))


def _sphere(shape=SHAPE, radius=16.0, seed=0, dark_core=False):
    """A bright sphere (tissue 100, an optional dark 'ventricle' core at 30) on Rician background noise;
    returns ``(volume, true sphere mask)``."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float64)
    centre = (np.array(shape, dtype=np.float64) - 1) / 2
    distance = np.sqrt(((grid - centre[:, None, None, None]) ** 2).sum(0))
    truth = distance < radius
    clean = np.where(truth, 100.0, 0.0)
    if dark_core:
        clean[distance < radius / 3] = 30.0
    noisy = np.hypot(clean + rng.normal(0.0, 4.0, shape), rng.normal(0.0, 4.0, shape))
    return noisy.astype(np.float32), truth


def _image(data, voxel_mm=2.0):
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    return nib.Nifti1Image(data, affine)


# ------------------------------------------------------------------------------- intensity_mask
def test_intensity_mask_finds_a_sphere_on_noise():
    data, truth = _sphere()
    mask = intensity_mask(data)
    assert mask.dtype == np.bool_ and mask.shape == SHAPE
    # Measured Dice 1.000 (tissue 100 on noise of sigma 4); a voxel of edge either way would still pass.
    assert _dice(mask, truth) > 0.98
    assert abs(int(mask.sum()) - int(truth.sum())) < 0.05 * truth.sum()


def test_intensity_mask_keeps_dark_tissue_inside_and_drops_stray_objects():
    data, truth = _sphere(dark_core=True, seed=1)
    data[2:5, 2:5, 2:5] = 100.0  # a separate bright speck in a corner (a marker, an artefact)
    mask = intensity_mask(data)
    assert mask[tuple(np.array(SHAPE) // 2)]  # the dark core (30 against 100) stays in the brain
    assert not mask[2:5, 2:5, 2:5].any()  # only the largest connected object is kept
    assert _dice(mask, truth) > 0.98  # measured 1.000


def test_intensity_mask_of_a_constant_volume_is_everything():
    assert intensity_mask(np.full((8, 9, 10), 3.0, np.float32)).all()


# ------------------------------------------------------------------------------- volume_ml
def test_volume_ml_from_the_voxel_size():
    mask = np.zeros((20, 20, 20), bool)
    mask[:10, :10, :10] = True  # 1000 voxels of 2 x 2 x 2 mm = 8000 mm^3 = 8 ml
    assert volume_ml(mask, np.diag([2.0, 2.0, 2.0, 1.0])) == pytest.approx(8.0, rel=1e-12)
    # Orientation (a flipped axis, a rotation) and translation do not change a volume.
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-2.0, 2.0, 2.0])
    affine[:3, 3] = [90.0, -126.0, -72.0]
    assert volume_ml(mask, affine) == pytest.approx(8.0, rel=1e-12)
    # Anisotropic voxels: 1 x 1 x 3 mm -> 3 ml.
    assert volume_ml(mask, np.diag([1.0, 1.0, 3.0, 1.0])) == pytest.approx(3.0, rel=1e-12)


def test_volume_ml_of_a_sphere_is_four_thirds_pi_r_cubed():
    _, truth = _sphere(shape=(40, 40, 40), radius=15.0)  # radius 15 voxels = 30 mm at 2 mm
    expected = 4.0 / 3.0 * np.pi * 30.0**3 / 1000.0  # 113.1 ml
    # Voxelization error of a 15-voxel sphere: measured +1.35 % (centre between voxels) and -0.99 % (on one).
    assert volume_ml(truth, np.diag([2.0, 2.0, 2.0, 1.0])) == pytest.approx(expected, rel=0.02)


# ------------------------------------------------------------------------------- brain_mask: given
def test_given_mask_is_used_as_it_is():
    data, truth = _sphere()
    given = np.zeros(SHAPE, np.uint8)
    given[10:30, 12:40, 5:20] = 1  # deliberately not the sphere: the given mask wins
    mask, source = brain_mask(_image(data), "T1w", given=given)
    assert source == "given"
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, given > 0)
    # A nibabel image, and a 4D image with one volume, are accepted too.
    for wrapped in (_image(given), _image(given[..., None])):
        mask, source = brain_mask(_image(data), "T2w", given=wrapped)
        assert source == "given"
        np.testing.assert_array_equal(mask, given > 0)


def test_given_mask_of_another_shape_is_refused():
    data, _ = _sphere()
    with pytest.raises(ValueError) as info:
        brain_mask(_image(data), "T1w", given=np.ones((48, 52, 43), bool))
    assert str(info.value) == "brain_mask: expected shape (48, 52, 44) (the image's), found (48, 52, 43)"


def test_empty_given_mask_is_refused():
    data, _ = _sphere()
    with pytest.raises(ValueError) as info:
        brain_mask(_image(data), "T1w", given=np.zeros(SHAPE, np.uint8))
    assert str(info.value) == "brain_mask: expected at least one brain voxel, found none"


def test_small_object_mask_comes_from_intensities():
    data, truth = _sphere()
    mask, source = brain_mask(_image(data), "T1w")
    assert source == "intensity"
    assert volume_ml(mask, np.diag([2.0, 2.0, 2.0, 1.0])) < WHOLE_HEAD_ML  # 138 ml: a brain, not a head
    assert _dice(mask, truth) > 0.98


def test_unknown_contrast_is_refused_at_the_boundary():
    data, _ = _sphere()
    with pytest.raises(ValueError, match=r"^brain_mask: contrast: expected 'T1w' or 'T2w', found 'PD'$"):
        brain_mask(_image(data), "PD")


# ------------------------------------------------------------------------------- the real ICBM 2009c pair
@pytest.fixture(scope="module")
def pair():
    return load_icbm152()


@pytest.mark.parametrize("contrast", ["T1w", "T2w"])
def test_brain_extracted_real_scan_is_masked_by_intensity(pair, contrast):
    mask, source = brain_mask(pair.image(contrast, skull_stripped=True), contrast)
    assert source == "intensity"
    # Measured Dice 0.9989 (T1w) and 0.9995 (T2w); 1885 / 1887 ml.
    assert _dice(mask, pair.brain_mask) > 0.995
    assert 1700.0 < volume_ml(mask, pair.affine) < 2100.0


@pytest.mark.parametrize("contrast", ["T1w", "T2w"])
def test_whole_real_head_is_larger_than_a_brain(pair, contrast):
    # What sends a whole head to the template: measured 4040 ml (T1w) and 3814 ml (T2w) against 2600.
    assert volume_ml(intensity_mask(pair.array(contrast, skull_stripped=False)), pair.affine) > 1.2 * WHOLE_HEAD_ML


@pytest.fixture(scope="module", params=["T1w", "T2w"])
def whole_head_mask(request, pair):
    """``(contrast, mask, source)`` of the whole-head scan: one template registration (~20 s) per contrast."""
    mask, source = brain_mask(pair.image(request.param, skull_stripped=False), request.param)
    return request.param, mask, source


# Measured Dice with the template's brain mask: 0.990 (T1w), 0.977 (T2w).
WHOLE_HEAD_DICE = {"T1w": 0.975, "T2w": 0.96}


def test_whole_real_head_is_masked_by_the_registered_template(pair, whole_head_mask):
    contrast, mask, source = whole_head_mask
    assert source == "template"
    assert mask.shape == pair.brain_mask.shape and mask.dtype == np.bool_
    assert _dice(mask, pair.brain_mask) >= WHOLE_HEAD_DICE[contrast]
    assert 1500.0 < volume_ml(mask, pair.affine) < 2300.0
    # The registered brain is cut to the imaged head: no mask voxel on the background.
    head = intensity_mask(pair.array(contrast, skull_stripped=False))
    assert not np.any(mask & ~head)
    if contrast == "T1w":
        # The sim-to-real score uses this registration's result, shipped beside the pair (so that each
        # evaluation need not register): it must still be what the registration gives. Regenerate with
        # write_icbm152_mask(WHOLE_HEAD_MASK, registered_whole_head_mask(), "gan_mri/data/icbm152").
        from gan_mri.sim_to_real import WHOLE_HEAD_MASK, whole_head_brain_mask

        shipped = whole_head_brain_mask()
        assert shipped.shape == mask.shape and _dice(shipped, mask) >= 0.999, WHOLE_HEAD_MASK
