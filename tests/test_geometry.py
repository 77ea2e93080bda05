"""Voxel geometry: slices in millimetres whatever the acquisition, and registration of scans taken apart.

Acquisitions are made from the real ICBM 2009c T1w (1 mm isotropic) and the phantom by resampling them
through a known affine, as a scanner would have sampled the same head on another grid.
"""

import nibabel as nib
import numpy as np
import pytest
from nibabel.processing import resample_from_to
from skimage.metrics import structural_similarity

from gan_mri.data.dataset import prepare
from gan_mri.data.icbm152 import load_icbm152
from gan_mri.data.phantom import simulate
from gan_mri.data.registration import register, transform_error
from gan_mri.data.volumes import SliceGrid, slice_grid, volume_to_slices

SIZE = (96, 96)


def rotation(degrees: float, axis) -> np.ndarray:
    """3x3 rotation about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    angle = np.radians(degrees)
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def acquire(image, voxel_sizes, axes="RAS", tilt_degrees=0.0, motion=np.eye(4)):
    """``image``'s head sampled on another grid: voxel axes along ``axes`` (e.g. "ASR", a sagittal scan),
    ``voxel_sizes`` mm, the grid tilted about the left-right axis, and the head moved by ``motion``."""
    low = nib.affines.apply_affine(image.affine, [0, 0, 0])
    high = nib.affines.apply_affine(image.affine, np.array(image.shape) - 1)
    centre, extent = (low + high) / 2, np.abs(high - low)
    world_axis = ["RAS".index(code) for code in axes]
    matrix = np.zeros((3, 3))
    for voxel_axis, (world, size) in enumerate(zip(world_axis, voxel_sizes)):
        matrix[world, voxel_axis] = size
    matrix = rotation(tilt_degrees, (1, 0, 0)) @ matrix
    shape = [int(np.ceil(extent[world] / size)) + 1 for world, size in zip(world_axis, voxel_sizes)]
    grid = nib.affines.from_matvec(matrix, centre - matrix @ ((np.array(shape) - 1) / 2))
    data = resample_from_to(image, (shape, np.linalg.inv(motion) @ grid), order=3).dataobj
    return nib.Nifti1Image(np.asarray(data, dtype=np.float32), grid)


def slices_by_height(stack):
    """``{world z (mm): slice}`` of a stack cut on a :class:`SliceGrid`."""
    grid = stack.grid
    heights = grid.affine[2, 3] + grid.spacing[2] * stack.slice_indices
    return {round(float(z), 3): (image[..., 0], mask) for z, image, mask in zip(heights, stack.slices, stack.brain_mask)}


@pytest.fixture(scope="module")
def isotropic():
    return load_icbm152().image("T1w", skull_stripped=True)


@pytest.mark.parametrize("acquisition", [
    dict(voxel_sizes=(1.2, 0.94, 0.94), axes="ASR"),  # IXI's T1w: sagittal, anisotropic
    dict(voxel_sizes=(1.0, 1.0, 1.0), tilt_degrees=12.0),  # oblique
])
def test_an_anisotropic_or_oblique_acquisition_gives_the_slices_of_the_isotropic_one(isotropic, acquisition):
    other = acquire(isotropic, **acquisition)
    ours, theirs = (slices_by_height(volume_to_slices(image, SIZE, keep_all=True, spacing=2.0))
                    for image in (isotropic, other))
    scores = []
    largest = max(mask.sum() for _, mask in ours.values())
    for height, (image, mask) in ours.items():
        if mask.sum() >= 0.25 * largest:  # the slices prepare keeps
            assert height in theirs, height
            scores.append(structural_similarity(image, theirs[height][0], data_range=2.0))
    assert len(scores) >= 40
    assert np.mean(scores) >= 0.95 and np.min(scores) >= 0.9, (np.mean(scores), np.min(scores))


def test_without_a_spacing_non_square_voxels_are_resampled_not_stretched(isotropic):
    sagittal = acquire(isotropic, (1.2, 0.94, 0.94), axes="ASR")
    grid = slice_grid(sagittal)
    assert grid.spacing == pytest.approx((0.94, 0.94, 0.94))
    assert slice_grid(isotropic) is None  # square axial voxels on the world's axes: sliced as they are

    def brain_aspect(image):  # height / width of the brain in the largest slice
        stack = volume_to_slices(image, SIZE)
        rows, cols = np.nonzero(stack.brain_mask[np.argmax(stack.brain_mask.sum(axis=(1, 2)))])
        return (np.ptp(rows) + 1) / (np.ptp(cols) + 1)

    assert brain_aspect(sagittal) == pytest.approx(brain_aspect(isotropic), rel=0.03)


def test_slices_on_a_grid_go_back_onto_the_input_grid(isotropic):
    sagittal = acquire(isotropic, (1.2, 0.94, 0.94), axes="ASR")
    stack = volume_to_slices(sagittal, SIZE, keep_all=True, spacing=2.0)  # 192 mm: the whole head
    assert isinstance(stack.grid, SliceGrid) and stack.slices.shape[1:3] == SIZE
    back = stack.to_volume(stack.slices)
    assert back.shape == sagittal.shape
    np.testing.assert_allclose(back.affine, sagittal.affine)
    source, restored = np.asarray(sagittal.dataobj), np.asarray(back.dataobj)
    brain = source > 0.2 * source.max()
    assert np.corrcoef(source[brain], restored[brain])[0, 1] > 0.95


def test_spacing_must_be_a_positive_number(isotropic):
    for bad in (0, -1.0, "two"):
        with pytest.raises(ValueError, match="spacing: expected a positive number of millimetres"):
            slice_grid(isotropic, SIZE, spacing=bad)


MOTION_CENTRE = np.array([0.0, -18.0, 18.0])  # about the phantom brain's centre of mass (mm)


def head_motion() -> np.ndarray:
    """6 degrees about an oblique axis through the brain's centre, and 5 mm: the head between two scans."""
    about_centre = nib.affines.from_matvec(np.eye(3), MOTION_CENTRE)
    return (about_centre @ nib.affines.from_matvec(rotation(6.0, (1, 1, 0)), (3.0, 0.0, -4.0))
            @ np.linalg.inv(about_centre))


@pytest.fixture(scope="module")
def ixi(tmp_path_factory):
    """Three brain-extracted phantom subjects in IXI's layout, each T2w acquired apart: the head moved by :func:`head_motion`,
    on a 1.5 x 2.5 x 2 mm grid. Also returns the scans as simulated (co-registered), in BIDS."""
    root = tmp_path_factory.mktemp("ixi")
    simulate(3, root / "bids", seed=4, head=False)  # brain-extracted: brain masks without template registration
    for folder in ("IXI-T1", "IXI-T2"):
        (root / "ixi" / folder).mkdir(parents=True)
    for index, subject in enumerate(("sub-01", "sub-02", "sub-03")):
        stem = f"IXI00{index + 1}-Guys-000{index + 1}"
        anat = root / "bids" / subject / "anat"
        nib.save(nib.load(anat / f"{subject}_T1w.nii.gz"), root / "ixi" / "IXI-T1" / f"{stem}-T1.nii.gz")
        moved = acquire(nib.load(anat / f"{subject}_T2w.nii.gz"), (1.5, 2.5, 2.0), motion=head_motion())
        nib.save(moved, root / "ixi" / "IXI-T2" / f"{stem}-T2.nii.gz")
    return root


def test_ixi_pairs_are_registered_within_1_mm_and_1_degree_and_match_the_co_registered_slices(ixi):
    dataset = prepare(ixi / "ixi", ixi / "from-ixi", image_shape=(48, 48), test_fraction=0.34, seed=0)
    manifest = dataset.manifest
    assert manifest["layout"] == "ixi" and manifest["settings"]["pair"] == "register"
    (record,) = [r for r in manifest["volumes"] if r["split"] == "test" and r["contrast"] == "B"]
    alignment, subject = record["alignment"], f"sub-{int(record['subject'][3:6]):02d}"
    truth = nib.load(ixi / "bids" / subject / "anat" / f"{subject}_T1w.nii.gz")
    data = np.asarray(truth.dataobj)
    brain = nib.affines.apply_affine(truth.affine, np.argwhere(data > 0.3 * data.max()))
    distance_mm, angle_degrees = transform_error(np.asarray(alignment["transform"]), head_motion(), brain)
    assert distance_mm < 1.0 and angle_degrees < 1.0, (distance_mm, angle_degrees)
    assert alignment["shift_probe"]["aligned"] and alignment["nmi_after"] > alignment["nmi_before"] + 0.03

    # The registered T2w slices are those of the T2w simulated on the T1w's grid.
    reference = prepare(ixi / "bids", ixi / "from-bids", image_shape=(48, 48), test_fraction=0.34, seed=0)
    assert reference.manifest["split"]["test"] == [subject]
    ours, theirs = (dict(zip(d.manifest["test_index"]["slice"], np.load(d.path / "test_b.npy")))
                    for d in (dataset, reference))
    common = sorted(set(ours) & set(theirs))
    assert len(common) >= 0.9 * len(theirs), (sorted(ours), sorted(theirs))  # the union of two brain masks
    scores = [structural_similarity(ours[i], theirs[i], data_range=2.0) for i in common]
    assert np.mean(scores) >= 0.9, np.mean(scores)


def test_register_refuses_an_unknown_stage():
    image = nib.Nifti1Image(np.ones((4, 4, 4), dtype=np.float32), np.eye(4))
    with pytest.raises(ValueError, match=r"register: stages: expected names from .*found \['similarity'\]"):
        register(image, image, stages=("similarity",))


def test_scans_acquired_apart_are_refused_on_one_grid_and_warned_about_through_the_affines(ixi, tmp_path, caplog):
    with pytest.raises(ValueError, match=r"IXI00\d-Guys-000\d: T1w .* (have different affines|has shape).*--pair world.*"
                                         r"--pair register"):
        prepare(ixi / "ixi", tmp_path / "grid", image_shape=(48, 48), test_fraction=0.34, seed=0, pair="grid")
    assert not (tmp_path / "grid").exists()

    with caplog.at_level("WARNING", logger="gan_mri.data.dataset"):
        dataset = prepare(ixi / "ixi", tmp_path / "world", image_shape=(48, 48), test_fraction=0.34, seed=0,
                          pair="world")
    (record,) = [r for r in dataset.manifest["volumes"] if r["split"] == "test" and r["contrast"] == "B"]
    assert record["alignment"]["pair"] == "world" and not record["alignment"]["shift_probe"]["aligned"]
    assert f"{record['subject']}: T2w" in caplog.text and "are misaligned" in caplog.text
    assert "prepare with --pair register" in caplog.text


def test_a_pair_still_misaligned_after_registration_is_refused(ixi, tmp_path, monkeypatch):
    import gan_mri.data.dataset as dataset_module

    monkeypatch.setattr(dataset_module, "register", lambda static, moving: np.eye(4))  # a registration that failed
    with pytest.raises(ValueError, match=r"IXI00\d-Guys-000\d: T2w .* are misaligned: moving the T2w by .* mm raises "
                                         r"their normalized mutual information by .* even after registration"):
        prepare(ixi / "ixi", tmp_path / "out", image_shape=(48, 48), test_fraction=0.34, seed=0)
    assert not (tmp_path / "out").exists()


def test_bad_pair_and_spacing_are_named(ixi, tmp_path):
    with pytest.raises(ValueError, match=r"pair: expected one of \('auto', 'grid', 'world', 'register'\), found 'rigid'"):
        prepare(ixi / "ixi", tmp_path / "out", pair="rigid")
    with pytest.raises(ValueError, match="spacing: expected a positive number of millimetres, found -2"):
        prepare(ixi / "ixi", tmp_path / "out", spacing=-2)


@pytest.fixture(scope="module")
def tiny_model():
    from gan_mri.config import get_preset
    from gan_mri.models import build_model

    return build_model(get_preset("unit", image_shape=(48, 48), base_width=4, encoder_res_blocks=0,
                                  generator_res_blocks=0))


def test_translate_slices_a_volume_as_the_model_was_trained_and_evaluate_refuses_other_data(tiny_model, ixi,
                                                                                              tmp_path, monkeypatch):
    from gan_mri.data import volumes
    from gan_mri.inference import translate_volume
    from gan_mri.report import evaluate_to_folder

    dataset = prepare(ixi / "bids", tmp_path / "mm", image_shape=(48, 48), test_fraction=0.34, seed=0, spacing=4.0)
    assert dataset.preprocessing["spacing"] == 4.0
    tiny_model.preprocessing = dataset.preprocessing
    seen = []
    slicer = volumes.volume_to_slices
    monkeypatch.setattr(volumes, "volume_to_slices", lambda *args, **kwargs: seen.append(kwargs) or slicer(*args, **kwargs))
    t1w = ixi / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    translated = translate_volume(tiny_model, t1w, "A2B")
    assert seen[0]["spacing"] == 4.0 and seen[0]["percentiles"] == [1.0, 99.5]
    assert translated.shape == nib.load(t1w).shape

    tiny_model.preprocessing = None  # a model of the library's defaults: its own voxels, fitted in
    with pytest.raises(ValueError, match=r"dataset .*mm: prepared otherwise than the model's training data: "
                                         r"spacing 4\.0 where the model was trained with None"):
        evaluate_to_folder(tiny_model, dataset, tmp_path / "evaluation", real=False)
    assert not (tmp_path / "evaluation").exists()
