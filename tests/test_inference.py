"""Whole-volume, folder and PNG translation; model loading; direction parsing."""

import json

import keras
import nibabel as nib
import numpy as np
import pytest
from nibabel import orientations
from PIL import Image

from gan_mri.config import get_preset
from gan_mri.inference import (
    load_model,
    parse_direction,
    translate_path,
    translate_slices,
    translate_volume,
)
from gan_mri.models import build_model

SHAPE = (20, 24, 12)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(7)
    config = get_preset(
        "sa-enc-cl-sn", image_shape=(32, 32), base_width=8, encoder_res_blocks=1, generator_res_blocks=1
    )
    return build_model(config)


def _phantom(shape=SHAPE, seed=0) -> np.ndarray:
    """A blob-shaped 'brain' with asymmetric structure, so flips and transposes are visible."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.8, 0.85, 0.9])[:, None, None, None]) ** 2).sum(0))
    data = np.where(radius < 1.0, 400.0 + 300.0 * (grid[0] > 0.2) + 150.0 * (grid[1] < -0.3), 5.0)
    data += 200.0 * (grid[2] > 0.5) * (radius < 1.0)
    return (data + rng.normal(0.0, 3.0, shape)).astype(np.float32)


def _ras_image(data=None) -> nib.Nifti1Image:
    data = _phantom() if data is None else data
    affine = np.diag([2.0, 2.0, 2.5, 1.0])
    affine[:3, 3] = [-20.0, -24.0, -15.0]
    image = nib.Nifti1Image(data, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    return image


def _reoriented(image: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The same physical image stored with another voxel order (``codes`` like "LPS")."""
    transform = orientations.ornt_transform(
        orientations.io_orientation(image.affine), orientations.axcodes2ornt(tuple(codes))
    )
    return image.as_reoriented(transform)


def _save(image, path):
    nib.save(image, path)
    return path


def _assert_same_geometry(output, reference):
    assert output.shape == reference.shape
    np.testing.assert_array_equal(output.affine, reference.affine)
    assert nib.aff2axcodes(output.affine) == nib.aff2axcodes(reference.affine)
    assert output.header.get_zooms() == reference.header.get_zooms()
    assert int(output.header["sform_code"]) == int(reference.header["sform_code"])
    assert int(output.header["qform_code"]) == int(reference.header["qform_code"])
    np.testing.assert_allclose(output.header.get_qform(), reference.header.get_qform(), atol=1e-6)


# ------------------------------------------------------------------------------- directions
@pytest.mark.parametrize(
    "spelling, expected",
    [
        ("A2B", "A2B"), ("b2a", "B2A"), ("T1->T2", "A2B"), ("T2->T1", "B2A"), ("T1w->T2w", "A2B"),
        ("t1w2t2w", "A2B"), ("t2w2t1w", "B2A"), ("T1 to T2", "A2B"), ("t2w_to_t1w", "B2A"),
        (" t1 -> t2 ", "A2B"), ("A->B", "A2B"), ("T2→T1", "B2A"),
    ],
)
def test_parse_direction_accepts_aliases(spelling, expected):
    assert parse_direction(spelling) == expected


def test_a_parsed_direction_names_its_domains_and_contrasts_and_is_still_the_string():
    import json

    from gan_mri import DIRECTIONS, Direction

    a2b, b2a = parse_direction("T1->T2"), parse_direction("t2w2t1w")
    assert (a2b, b2a) == (Direction.A2B, Direction.B2A) and isinstance(a2b, Direction)
    assert (a2b.source, a2b.target, a2b.source_contrast, a2b.target_contrast) == ("A", "B", "T1w", "T2w")
    assert (b2a.source, b2a.target, b2a.source_contrast, b2a.target_contrast) == ("B", "A", "T2w", "T1w")
    assert a2b.reverse is Direction.B2A and b2a.reverse is Direction.A2B
    # A str: equal, hashed, formatted and serialized as the name, so it goes wherever "A2B" went.
    assert a2b == "A2B" and {"A2B": 1}[a2b] == 1 and f"{a2b}/{b2a!s}" == "A2B/B2A"
    assert json.dumps({a2b: b2a}) == '{"A2B": "B2A"}' and tuple(Direction) == DIRECTIONS
    with pytest.raises(ValueError, match="'T1->T2' is not a valid Direction"):
        Direction("T1->T2")  # the constructor takes the canonical names; parse_direction any spelling


@pytest.mark.parametrize("spelling", ["A2A", "T1->T1", "sideways", "", "T1->T3", None, 3])
def test_parse_direction_rejects_typos_listing_valid_spellings(spelling):
    with pytest.raises(ValueError, match=r"direction: expected one of A2B, B2A, T1->T2, T2->T1.*found"):
        parse_direction(spelling)


# ---------------------------------------------------------------------------------- slices
def test_translate_slices_batches_give_the_model_output(model):
    slices = np.random.default_rng(1).uniform(-1, 1, (5, 32, 32, 1)).astype(np.float32)
    batched = translate_slices(model, slices, "T2->T1", batch_size=2)
    expected = keras.ops.convert_to_numpy(model.translate(slices, "B2A"))
    assert batched.shape == (5, 32, 32, 1) and batched.dtype == np.float32
    np.testing.assert_allclose(batched, expected, atol=1e-5)
    assert np.abs(batched).max() <= 1.0
    # B2A really is the other generator.
    assert np.abs(batched - translate_slices(model, slices, "A2B")).max() > 1e-3


def test_translate_slices_rejects_wrong_shapes_and_batch_sizes(model):
    with pytest.raises(ValueError, match=r"slices: expected shape \(N, 32, 32, 1\).*found \(4, 16, 16, 1\)"):
        translate_slices(model, np.zeros((4, 16, 16, 1), np.float32), "A2B")
    with pytest.raises(ValueError, match=r"found \(32, 32\)"):
        translate_slices(model, np.zeros((32, 32), np.float32), "A2B")
    with pytest.raises(ValueError, match="batch_size: expected a positive integer, found 0"):
        translate_slices(model, np.zeros((1, 32, 32, 1), np.float32), "A2B", batch_size=0)
    assert translate_slices(model, np.zeros((0, 32, 32, 1), np.float32), "A2B").shape == (0, 32, 32, 1)


# --------------------------------------------------------------------------------- volumes
@pytest.mark.parametrize("codes", ["RAS", "LPS", "LAS", "PIL"])
def test_translate_volume_keeps_geometry_and_orientation(model, tmp_path, codes):
    reference = _ras_image()
    stored = _reoriented(reference, codes)
    assert "".join(nib.aff2axcodes(stored.affine)) == codes
    path = _save(stored, tmp_path / f"in_{codes}.nii.gz")

    output = translate_volume(model, path, "A2B", batch_size=5)

    assert isinstance(output, nib.Nifti1Image)
    _assert_same_geometry(output, nib.load(path))
    data = np.asarray(output.dataobj)
    assert data.dtype == np.float32 and np.all(np.isfinite(data))
    # The same anatomy stored as RAS gives the same translation, voxel for voxel in world space:
    # a slice put back flipped or transposed would differ.
    from_ras = translate_volume(model, reference, "A2B", batch_size=5)
    back_to_ras = nib.as_closest_canonical(output)
    np.testing.assert_array_equal(back_to_ras.affine, from_ras.affine)
    np.testing.assert_allclose(np.asarray(back_to_ras.dataobj), np.asarray(from_ras.dataobj), rtol=0, atol=1e-3)
    assert np.ptp(np.asarray(from_ras.dataobj)) > 1.0  # the test would be vacuous on a constant volume


class _IdentityTranslator:
    """Oracle for the slicing/restacking path: 'translation' returns its input, so the written volume
    must equal the input voxel for voxel (up to the intensity clipping of the normalization)."""

    image_shape = (32, 32)
    channels = 1

    def translate(self, x, direction):
        return np.asarray(x)


@pytest.mark.parametrize("codes", ["LPS", "PIL"])
def test_translate_volume_restacks_slices_in_the_input_voxel_order(tmp_path, codes):
    # In-plane 32x32 matches the model shape, so no resampling: the round trip is exact.
    reference = _ras_image(_phantom((32, 32, 10), seed=3))
    stored = _reoriented(reference, codes)
    output = translate_volume(_IdentityTranslator(), _save(stored, tmp_path / "in.nii"), "A2B")
    original = np.asarray(stored.dataobj)
    result = np.asarray(output.dataobj)
    low, high = np.percentile(original, 1.0), result.max()
    assert high > 600.0  # the bright structures survived the normalization round trip
    np.testing.assert_allclose(result, np.clip(original, low, high), rtol=0, atol=1e-3 * (high - low))


def test_translate_volume_names_an_unreadable_file(model, tmp_path):
    broken = tmp_path / "broken_T1w.nii.gz"
    broken.write_bytes(b"this is not a NIfTI file")
    with pytest.raises(ValueError, match="broken_T1w.nii.gz"):
        translate_volume(model, broken, "A2B")
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        translate_volume(model, tmp_path / "missing.nii.gz", "A2B")
    with pytest.raises(ValueError, match="path_or_image: expected a volume path or a nibabel image, found ndarray"):
        translate_volume(model, np.zeros(SHAPE, np.float32), "A2B")


# ----------------------------------------------------------------------------------- paths
def test_translate_path_file_refuses_existing_output_unless_overwrite(model, tmp_path):
    source = _save(_reoriented(_ras_image(), "LPS"), tmp_path / "sub-01_T1w.nii.gz")
    target = tmp_path / "out" / "sub-01_T2w-synth.nii.gz"

    written = translate_path(model, source, target, "T1->T2")

    assert written == [target]
    _assert_same_geometry(nib.load(target), nib.load(source))
    before = target.read_bytes()
    with pytest.raises(ValueError, match=r"output .*sub-01_T2w-synth.nii.gz already exists.*overwrite"):
        translate_path(model, source, target, "A2B")
    assert target.read_bytes() == before
    translate_path(model, source, target, "B2A", overwrite=True)
    assert target.read_bytes() != before
    assert sorted(p.name for p in target.parent.iterdir()) == ["sub-01_T2w-synth.nii.gz"]


def test_translate_path_folder_of_volumes_names_outputs_by_direction(model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _save(_ras_image(), inputs / "sub-01_T1w.nii.gz")
    _save(_reoriented(_ras_image(_phantom(seed=5)), "LAS"), inputs / "sub-02_T1w.nii")
    (inputs / "notes.txt").write_text("not an image")

    written = translate_path(model, inputs, tmp_path / "out", "t1w2t2w")

    assert [p.name for p in written] == ["sub-01_T1w_A2B.nii.gz", "sub-02_T1w_A2B.nii"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in written]
    for name, out in zip(["sub-01_T1w.nii.gz", "sub-02_T1w.nii"], written):
        _assert_same_geometry(nib.load(out), nib.load(inputs / name))
    with pytest.raises(ValueError, match="sub-01_T1w_A2B.nii.gz already exists"):
        translate_path(model, inputs, tmp_path / "out", "A2B")


def test_translate_path_writes_nothing_when_one_volume_is_unreadable(model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _save(_ras_image(), inputs / "sub-01_T1w.nii.gz")
    (inputs / "sub-02_T1w.nii.gz").write_bytes(b"\x1f\x8b truncated")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="sub-02_T1w.nii.gz"):
        translate_path(model, inputs, out / "nested", "A2B")
    assert not out.exists()
    # An existing output folder keeps only what it had.
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="sub-02_T1w.nii.gz"):
        translate_path(model, inputs, out, "A2B")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_translate_path_png_slices_keep_names_and_size(model, tmp_path):
    rng = np.random.default_rng(2)
    inputs = tmp_path / "testB"
    inputs.mkdir()
    square = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(square).save(inputs / "slice_000.png")
    Image.fromarray(rng.integers(0, 256, (40, 28), dtype=np.uint8)).save(inputs / "slice_001.png")
    Image.fromarray(np.repeat(square[..., None], 3, axis=-1)).save(inputs / "slice_002.PNG")

    written = translate_path(model, inputs, tmp_path / "out", "T2->T1")

    assert [p.name for p in written] == ["slice_000_B2A.png", "slice_001_B2A.png", "slice_002_B2A.PNG"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written)
    pixels = [np.asarray(Image.open(p)) for p in written]
    assert [(a.shape, a.dtype) for a in pixels] == [((32, 32), np.uint8), ((40, 28), np.uint8), ((32, 32), np.uint8)]
    expected = keras.ops.convert_to_numpy(
        model.translate((square[None, :, :, None] / 127.5 - 1.0).astype(np.float32), "B2A")
    )
    expected = np.round((expected[0, :, :, 0] + 1.0) * 127.5)
    np.testing.assert_allclose(pixels[0], expected, atol=1)
    # A gray image stored as RGB (the GAN-MRI PNGs) translates like the gray one.
    np.testing.assert_allclose(pixels[2], pixels[0], atol=1)
    assert np.ptp(pixels[1]) > 0


def test_translate_path_names_an_unreadable_png(model, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "slice_007.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="slice_007.png: not a readable PNG"):
        translate_path(model, tmp_path / "in", tmp_path / "out", "A2B")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "make_input, error, message",
    [
        (lambda d: d / "missing.nii.gz", FileNotFoundError, "missing.nii.gz does not exist"),
        (lambda d: (d / "empty").mkdir() or d / "empty", ValueError, r"folder .*empty with none of them"),
        (lambda d: (d / "a.txt").write_text("x") and d / "a.txt", ValueError, r"input: expected a NIfTI.*a.txt"),
    ],
)
def test_translate_path_rejects_bad_inputs(model, tmp_path, make_input, error, message):
    with pytest.raises(error, match=message):
        translate_path(model, make_input(tmp_path), tmp_path / "out", "A2B")
    assert not (tmp_path / "out").exists()


def test_translate_path_rejects_direction_typo_and_mismatched_output(model, tmp_path):
    source = _save(_ras_image(), tmp_path / "t1.nii.gz")
    with pytest.raises(ValueError, match="direction: expected one of"):
        translate_path(model, source, tmp_path / "t2.nii.gz", "T1->T1")
    with pytest.raises(ValueError, match=r"output .*t2.png: expected a .nii.gz file path"):
        translate_path(model, source, tmp_path / "t2.png", "A2B")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t1.nii.gz"]


# ----------------------------------------------------------------------------------- loading
def test_load_model_from_run_folder_and_keras_file(model, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(model.config.to_dict()))
    model.save(run / "model.keras")
    x = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model.translate(x, "A2B"))
    for path in (run, run / "model.keras"):
        loaded = load_model(path)
        assert type(loaded).__name__ == "UNIT" and loaded.image_shape == (32, 32)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded.translate(x, "A2B")), expected, atol=1e-6)


def test_load_model_rejects_what_is_not_a_run_or_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"not a gan-mri run or model: .*empty .*found no config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"unfinished .*found config.json but no model.keras"):
        load_model(tmp_path / "unfinished")
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"not a gan-mri run or model: .*weights.h5"):
        load_model(tmp_path / "weights.h5")
    (tmp_path / "corrupt.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"not a gan-mri run or model: .*corrupt.keras: not a zip archive \(9 bytes"):
        load_model(tmp_path / "corrupt.keras")
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(ValueError, match=r"plain.keras holds a Sequential, expected a gan-mri model"):
        load_model(tmp_path / "plain.keras")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model(tmp_path / "nowhere")
