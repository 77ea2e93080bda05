"""Volumes in and out: loading, reorientation, masks, normalization, slicing and the way back."""

import nibabel as nib
import numpy as np
import pytest

from gan_mri.data import SliceStack, intensity_mask, load_volume, volume_to_slices
from gan_mri.data.resize import fit_plane, plan_plane_fit, unfit_plane
from gan_mri.data.volumes import apply_normalization, invert_normalization, normalize_intensities

SHAPE = (30, 36, 24)


def blob_volume(seed=0, shape=SHAPE):
    """An ellipsoidal 'brain' with a dark core and bright rim in a noisy background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.8, 0.85, 0.75])[:, None, None, None]) ** 2).sum(0))
    data = np.where(radius < 1.0, 600.0 + 300.0 * radius, 0.0)
    data[radius < 0.3] = 200.0
    data += np.abs(rng.normal(0, 10.0, shape))
    return data.astype(np.float32), radius < 1.0


def ras_image(data, voxel=2.0):
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = -voxel * (np.array(data.shape) - 1) / 2
    return nib.Nifti1Image(data, affine)


def lps_twin(image):
    """The same voxels in LPS order: first two axes reversed, affine adjusted."""
    data = np.asarray(image.dataobj)[::-1, ::-1, :]
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = np.array(image.shape[:2]) - 1
    return nib.Nifti1Image(np.ascontiguousarray(data), image.affine @ flip)


def test_load_volume_returns_float32_3d_and_drops_singleton_axis(tmp_path):
    data, _ = blob_volume()
    path = tmp_path / "t1.nii.gz"
    nib.save(nib.Nifti1Image(data[..., None].astype(np.int16), np.eye(4)), path)
    image = load_volume(path)
    assert image.shape == SHAPE
    assert image.get_fdata(dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(np.asarray(image.dataobj), data.astype(np.int16))


def test_nifti2_is_read(tmp_path):
    data, _ = blob_volume()
    path = tmp_path / "t2.nii"
    nib.save(nib.Nifti2Image(data, np.eye(4)), path)
    assert load_volume(path).shape == SHAPE


def test_lps_volume_and_its_ras_twin_give_the_same_slices():
    data, _ = blob_volume()
    ras = ras_image(data)
    lps = lps_twin(ras)
    assert nib.aff2axcodes(lps.affine) == ("L", "P", "S")
    np.testing.assert_allclose(lps.affine @ [0, 0, 0, 1], ras.affine @ [SHAPE[0] - 1, SHAPE[1] - 1, 0, 1])
    stack_ras = volume_to_slices(ras, (40, 40))
    stack_lps = volume_to_slices(lps, (40, 40))
    np.testing.assert_array_equal(stack_ras.slice_indices, stack_lps.slice_indices)
    np.testing.assert_array_equal(stack_ras.slices, stack_lps.slices)
    np.testing.assert_array_equal(stack_ras.brain_mask, stack_lps.brain_mask)


def test_axial_slices_put_anterior_at_the_top_and_left_on_the_left():
    data = np.zeros(SHAPE, np.float32)
    data[:, -4:, :] = 500.0  # anterior band (high RAS y)
    data[:3, :, :] += 100.0  # low RAS x is the subject's left
    stack = volume_to_slices(ras_image(data), (36, 30), resize="pad", keep_all=True,
                             brain_mask=np.ones(SHAPE, bool))
    image = stack.slices[0, ..., 0]
    assert image.shape == (36, 30)
    assert image[:4].mean() > image[4:].mean()  # anterior rows on top
    assert image[10:30, :3].mean() > image[10:30, 3:].mean()  # low x (left) in the left columns


def test_to_volume_restores_geometry_and_intensities_for_non_ras_input():
    data, _ = blob_volume(seed=1)
    lps = lps_twin(ras_image(data))
    # The in-plane grid is (36, 30) rows x columns, so "pad" at that shape needs no interpolation.
    stack = volume_to_slices(lps, (36, 30), keep_all=True, resize="pad")
    assert len(stack.slice_indices) == SHAPE[2]
    assert stack.orientation == ("L", "P", "S")
    restored = stack.to_volume(stack.slices)
    assert isinstance(restored, nib.Nifti1Image)
    assert restored.shape == lps.shape
    np.testing.assert_array_equal(restored.affine, lps.affine)
    original = np.asarray(lps.dataobj)
    low, high = stack.normalization["low"], stack.normalization["high"]
    inside = (original >= low) & (original <= high)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(restored.get_fdata()[inside], original[inside], rtol=1e-4, atol=1e-3 * high)
    np.testing.assert_allclose(restored.get_fdata()[original > high], high, rtol=1e-5)


def test_to_volume_with_resampling_stays_close_and_fills_missing_slices():
    data, _ = blob_volume(seed=2)
    image = ras_image(data)
    stack = volume_to_slices(image, (64, 64), channels=3)
    assert stack.slices.shape[1:] == (64, 64, 3)
    restored = stack.to_volume(stack.slices).get_fdata()
    kept = stack.slice_indices
    assert len(kept) < SHAPE[2]
    error = np.abs(restored[:, :, kept] - data[:, :, kept])
    assert np.median(error) < 0.05 * stack.normalization["high"]
    missing = np.setdiff1d(np.arange(SHAPE[2]), kept)
    np.testing.assert_allclose(restored[:, :, missing], stack.normalization["low"], rtol=1e-6)


def test_to_volume_rejects_a_wrong_number_of_slices():
    stack = volume_to_slices(ras_image(blob_volume()[0]), (40, 40))
    with pytest.raises(ValueError, match=r"translated_slices: expected shape \(\d+, 40, 40\)"):
        stack.to_volume(stack.slices[:-1])


def test_slices_are_float32_in_range_with_replicated_channels_and_bool_masks():
    stack = volume_to_slices(ras_image(blob_volume()[0]), (32, 48), channels=3)
    assert isinstance(stack, SliceStack)
    assert stack.slices.dtype == np.float32 and stack.slices.shape[1:] == (32, 48, 3)
    assert stack.slices.min() == -1.0 and stack.slices.max() <= 1.0
    np.testing.assert_array_equal(stack.slices[..., 0], stack.slices[..., 2])
    assert stack.brain_mask.dtype == bool and stack.brain_mask.shape == stack.slices.shape[:3]
    assert stack.slice_indices.dtype == np.int64


def test_min_brain_fraction_and_keep_all_select_slices():
    image = ras_image(blob_volume()[0])
    few = volume_to_slices(image, (40, 40), min_brain_fraction=0.8).slice_indices
    many = volume_to_slices(image, (40, 40), min_brain_fraction=0.1).slice_indices
    everything = volume_to_slices(image, (40, 40), keep_all=True).slice_indices
    assert 0 < len(few) < len(many) < len(everything) == SHAPE[2]
    assert set(few) <= set(many)
    # The ellipsoid is centred: the kept slices are contiguous around the middle.
    assert few.min() <= SHAPE[2] // 2 <= few.max() and np.all(np.diff(few) == 1)


def test_given_brain_mask_is_used_and_checked():
    data, truth = blob_volume()
    image = ras_image(data)
    stack = volume_to_slices(image, (40, 40), brain_mask=truth)
    assert stack.normalization["high"] == pytest.approx(np.percentile(data[truth], 99.5), rel=1e-5)
    with pytest.raises(ValueError, match=r"brain_mask: expected shape \(30, 36, 24\).*found \(30, 36, 23\)"):
        volume_to_slices(image, (40, 40), brain_mask=truth[..., :-1])


def test_estimated_mask_matches_the_true_brain():
    data, truth = blob_volume(seed=3)
    mask = intensity_mask(data)
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.95


def test_normalization_round_trip_and_formula():
    rng = np.random.default_rng(0)
    data = rng.gamma(4.0, 100.0, size=(20, 20, 20)).astype(np.float32)
    mask = np.zeros(data.shape, bool)
    mask[5:15, 5:15, 5:15] = True
    normalized, params = normalize_intensities(data, mask, (1.0, 99.0))
    assert params["low"] == pytest.approx(np.percentile(data, 1.0))
    assert params["high"] == pytest.approx(np.percentile(data[mask], 99.0))
    expected = np.clip(2 * (data - params["low"]) / (params["high"] - params["low"]) - 1, -1, 1)
    np.testing.assert_allclose(normalized, expected, atol=1e-6)
    inside = (data >= params["low"]) & (data <= params["high"])
    np.testing.assert_allclose(invert_normalization(normalized, params)[inside], data[inside], rtol=1e-5)
    np.testing.assert_allclose(apply_normalization(invert_normalization(normalized, params), params),
                               normalized, atol=1e-6)


def test_normalization_rejects_an_empty_mask_and_a_flat_volume():
    data = np.ones((8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="brain_mask: expected at least one brain voxel"):
        normalize_intensities(data, np.zeros(data.shape, bool))
    with pytest.raises(ValueError, match="no contrast"):
        normalize_intensities(data, np.ones(data.shape, bool))


@pytest.mark.parametrize("method", ["fit", "pad"])
def test_plane_fit_round_trip(method):
    plane = np.arange(30 * 20, dtype=np.float32).reshape(30, 20)
    plan = plan_plane_fit(plane.shape, (32, 32), method)
    fitted = fit_plane(plane, plan, fill=-5.0)
    assert fitted.shape == (32, 32)
    back = unfit_plane(fitted, plan)
    if method == "pad":
        np.testing.assert_array_equal(back, plane)
        assert fitted[0, 0] == -5.0
    else:
        assert plan.scaled_shape == (32, 21)
        assert np.abs(back - plane).max() < 25.0  # one voxel step is 20 in x and 1 in y


def test_bad_arguments_name_the_field():
    image = ras_image(blob_volume()[0])
    with pytest.raises(ValueError, match="channels: expected 1 or 3, found 2"):
        volume_to_slices(image, (32, 32), channels=2)
    with pytest.raises(ValueError, match=r"image_shape: expected \(height, width\)"):
        volume_to_slices(image, (32,))
    with pytest.raises(ValueError, match="resize: expected one of"):
        volume_to_slices(image, (32, 32), resize="stretch")


def test_permuted_axes_volume_round_trips_and_matches_its_ras_twin():
    data, _ = blob_volume(seed=4)
    ras = ras_image(data)
    # Voxel axes stored as (S, R, A) with S reversed: an "ILP"-like ordering a sagittal/coronal export might have.
    permuted = np.ascontiguousarray(np.transpose(data, (2, 0, 1))[::-1])
    swap = np.zeros((4, 4))
    swap[2, 0], swap[0, 1], swap[1, 2], swap[3, 3] = -1.0, 1.0, 1.0, 1.0
    swap[2, 3] = SHAPE[2] - 1
    image = nib.Nifti1Image(permuted, ras.affine @ swap)
    assert nib.aff2axcodes(image.affine) == ("I", "R", "A")
    stack = volume_to_slices(image, (36, 30), keep_all=True, resize="pad")
    twin = volume_to_slices(ras, (36, 30), keep_all=True, resize="pad")
    np.testing.assert_array_equal(stack.slices, twin.slices)
    restored = stack.to_volume(stack.slices)
    assert restored.shape == permuted.shape
    np.testing.assert_array_equal(restored.affine, image.affine)
    high = stack.normalization["high"]
    np.testing.assert_allclose(restored.get_fdata(), np.minimum(permuted, high), atol=1e-3 * high)
