"""prepare() and PreparedDataset: manifest, determinism, atomic writes, tf.data pipelines, PNG folders."""

import json

import numpy as np
import pytest

from gan_mri.data import PreparedDataset, prepare, read_png_folder, simulate, write_png_slices
from gan_mri.data import manifest as manifest_module
from gan_mri.data.manifest import sha256_file

SHAPE = (48, 40)


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort") / "bids"
    simulate(4, root, seed=3)
    return root


@pytest.fixture(scope="module")
def prepared(bids, tmp_path_factory):
    return prepare(bids, tmp_path_factory.mktemp("prepared") / "ds", image_shape=SHAPE, test_fraction=0.25, seed=5)


def folder_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_manifest_records_sources_split_normalization_and_files(prepared, bids):
    manifest = json.loads((prepared.path / "manifest.json").read_text())
    assert manifest == prepared.manifest
    assert manifest["schema_version"] == 2 and manifest["layout"] == "bids"
    assert manifest["image_shape"] == list(SHAPE) and manifest["channels"] == 1
    train, test = manifest["split"]["train"], manifest["split"]["test"]
    assert len(test) == 1 and len(train) == 3 and not set(train) & set(test)
    volumes = [v for v in manifest["volumes"] if v["contrast"] in ("A", "B")]
    assert len(volumes) == 8
    for volume in volumes:
        assert volume["sha256"] == sha256_file(bids / volume["source"])
        assert volume["split"] == ("test" if volume["subject"] in test else "train")
        assert volume["normalization"]["high"] > volume["normalization"]["low"]
        start, stop = volume["rows"]
        assert stop - start == len(volume["slice_indices"]) > 10
    labels = [v for v in manifest["volumes"] if v["contrast"] == "labels"]
    assert [v["source"] for v in labels] == [f"{test[0]}/anat/{test[0]}_dseg.nii.gz"]
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(prepared.path / name)
        assert list(np.load(prepared.path / name, mmap_mode="r").shape) == entry["shape"]
    assert manifest["counts"]["train_a"] == sum(len(v["slice_indices"]) for v in volumes
                                                if v["contrast"] == "A" and v["split"] == "train")
    assert len(manifest["test_index"]["subject"]) == manifest["counts"]["test_a"]
    for domain in ("a", "b"):  # every training slice has its brain mask, and the mask covers its brain
        images, masks = prepared.array(f"train_{domain}"), prepared.array(f"train_{domain}_mask")
        assert masks.dtype == np.bool_ and masks.shape == images.shape
        assert 0.2 < masks.mean() < 0.9 and np.asarray(images)[np.asarray(masks)].mean() > -0.5
        # Outside the brain: mostly background (-1), with the scalp and skull of the whole-head subjects.
        assert np.median(np.asarray(images)[~np.asarray(masks)]) < -0.95
    assert "time" not in json.dumps(manifest).lower()


def test_same_inputs_and_seed_give_byte_identical_folders(prepared, bids, tmp_path):
    again = prepare(bids, tmp_path / "again", image_shape=SHAPE, test_fraction=0.25, seed=5)
    assert folder_bytes(again.path) == folder_bytes(prepared.path)
    other_seed = prepare(bids, tmp_path / "other", image_shape=SHAPE, test_fraction=0.25, seed=6)
    assert other_seed.manifest["split"] != prepared.manifest["split"]


def test_train_dataset_shapes_dtypes_and_epoch_length(prepared):
    batches = list(prepared.train_dataset(8, seed=1))
    assert len(batches) == prepared.steps_per_epoch(8) > 5
    x_a, x_b = batches[0]
    assert x_a.shape == (8, *SHAPE, 1) and x_b.shape == (8, *SHAPE, 1)
    assert x_a.dtype.name == "float32" and x_b.dtype.name == "float32"
    assert float(np.min(x_a)) == -1.0 and float(np.max(x_a)) <= 1.0
    rgb_a, _ = next(iter(prepared.train_dataset(2, channels=3, shuffle=False)))
    assert rgb_a.shape == (2, *SHAPE, 3)
    np.testing.assert_array_equal(rgb_a[..., 0], rgb_a[..., 2])
    np.testing.assert_array_equal(rgb_a[..., 0], prepared.array("train_a")[:2])


def test_shuffle_and_flips_are_seeded(prepared):
    def first_batches(**kwargs):
        return [np.asarray(x_a) for x_a, _ in prepared.train_dataset(4, **kwargs).take(3)]

    same = first_batches(seed=2, flip=True)
    np.testing.assert_array_equal(np.stack(same), np.stack(first_batches(seed=2, flip=True)))
    assert not np.array_equal(np.stack(same), np.stack(first_batches(seed=3, flip=True)))
    # Flips are left-right mirrors of stored slices.
    train_a = np.asarray(prepared.array("train_a"))
    stored = {row.tobytes() for row in train_a}
    mirrored = {row[:, ::-1].tobytes() for row in train_a}
    images = [image[..., 0] for batch in same for image in batch]
    assert all(image.tobytes() in stored | mirrored for image in images)
    assert any(image.tobytes() in mirrored - stored for image in images)


def test_test_dataset_is_paired_with_masks_labels_and_ids(prepared):
    batches = list(prepared.test_dataset(16))
    total = prepared.counts["test_a"]
    assert sum(int(b["a"].shape[0]) for b in batches) == total
    batch = batches[0]
    assert set(batch) == {"a", "b", "brain_mask", "subject", "slice", "labels"}
    assert batch["a"].shape == (16, *SHAPE, 1) and batch["b"].dtype.name == "float32"
    assert batch["brain_mask"].dtype.name == "bool" and batch["labels"].dtype.name == "int32"
    assert batch["labels"].shape == (16, *SHAPE) and batch["slice"].dtype.name == "int32"
    test_subject = prepared.manifest["split"]["test"][0]
    assert {s.decode() for b in batches for s in b["subject"].numpy()} == {test_subject}
    labels = np.concatenate([b["labels"] for b in batches])
    a = np.concatenate([b["a"] for b in batches])[..., 0]
    b = np.concatenate([b["b"] for b in batches])[..., 0]
    mask = np.concatenate([b["brain_mask"] for b in batches])
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    # Same anatomy in A, B and labels: CSF dark on T1w and bright on T2w, WM the reverse.
    assert a[labels == 1].mean() < a[labels == 2].mean() < a[labels == 3].mean()
    assert b[labels == 3].mean() < b[labels == 2].mean() < b[labels == 1].mean()
    assert (mask[labels > 0]).mean() > 0.97 and (labels[mask] > 0).mean() > 0.9
    rgb = next(iter(prepared.test_dataset(4, channels=3)))
    assert rgb["a"].shape == (4, *SHAPE, 3) and rgb["b"].shape == (4, *SHAPE, 3)


def test_disjoint_training_gives_each_subject_one_contrast(bids, tmp_path):
    dataset = prepare(bids, tmp_path / "disjoint", image_shape=(32, 32), seed=5, test_fraction=0.25,
                      train_pairing="disjoint", channels=3)
    train = [v for v in dataset.manifest["volumes"] if v["split"] == "train"]
    subjects_a = {v["subject"] for v in train if v["contrast"] == "A"}
    subjects_b = {v["subject"] for v in train if v["contrast"] == "B"}
    assert subjects_a and subjects_b and not subjects_a & subjects_b
    assert len(subjects_a | subjects_b) == 3
    assert next(iter(dataset.train_dataset(2)))[0].shape == (2, 32, 32, 3)


def test_error_or_interrupt_leaves_no_complete_looking_folder(bids, tmp_path, monkeypatch):
    def interrupted(self, tail_shape):
        raise KeyboardInterrupt

    monkeypatch.setattr(manifest_module.ArrayWriter, "finalize", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(bids, tmp_path / "ds", image_shape=(32, 32))
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(prepared, bids, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    with pytest.raises(ValueError, match=r"output folder .*ds already exists; pass overwrite=True \(--overwrite\)"):
        prepare(bids, out, image_shape=SHAPE)
    replaced = prepare(bids, out, image_shape=SHAPE, test_fraction=0.25, seed=5, overwrite=True)
    assert folder_bytes(replaced.path) == folder_bytes(prepared.path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_open_refuses_incomplete_or_altered_folders(prepared, tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        PreparedDataset.open(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name, data in folder_bytes(prepared.path).items():
        (copy / name).write_bytes(data)
    np.save(copy / "test_b.npy", np.zeros((2, *SHAPE), np.float32))
    with pytest.raises(ValueError, match=r"test_b.npy: expected shape \[\d+, 48, 40\]"):
        PreparedDataset.open(copy)
    (copy / "test_b.npy").unlink()
    with pytest.raises(FileNotFoundError, match="test_b.npy: array file not found"):
        PreparedDataset.open(copy)


def test_png_round_trip_8_and_16_bit(tmp_path):
    images = np.linspace(-1, 1, 2 * 12 * 10, dtype=np.float32).reshape(2, 12, 10)
    write_png_slices(images, tmp_path / "eight", names=["x", "y"])
    write_png_slices(images[..., None], tmp_path / "sixteen", bit_depth=16)
    eight, names = read_png_folder(tmp_path / "eight")
    sixteen, _ = read_png_folder(tmp_path / "sixteen")
    assert names == ["x", "y"] and eight.shape == (2, 12, 10, 1) and eight.dtype == np.float32
    assert np.abs(eight[..., 0] - images).max() <= 1 / 255 + 1e-6
    assert np.abs(sixteen[..., 0] - images).max() <= 1 / 65535 + 1e-6
    fitted, _ = read_png_folder(tmp_path / "eight", image_shape=(24, 24))
    assert fitted.shape == (2, 24, 24, 1) and fitted[0, 0, 0, 0] == -1.0  # padded border


def test_prepare_png_folders_pairs_test_images_by_name(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:20, :20]
    disk = ((yy - 10) ** 2 + (xx - 10) ** 2 < 64).astype(np.float32)
    for folder, count in (("trainA", 5), ("trainB", 4), ("testA", 3), ("testB", 3)):
        images = disk * rng.uniform(0.2, 1.0, size=(count, 20, 20)) * 2 - 1
        write_png_slices(images, tmp_path / "src" / folder, names=[f"img{i}" for i in range(count)][::-1])
    dataset = prepare(tmp_path / "src", tmp_path / "ds", image_shape=(32, 32))
    assert dataset.manifest["layout"] == "png"
    assert dataset.counts == {"train_a": 5, "train_b": 4, "train_a_mask": 5, "train_b_mask": 4, "test_a": 3,
                              "test_b": 3, "test_mask": 3}
    assert dataset.array("train_a_mask")[:, 16, 16].all() and not dataset.array("train_b_mask")[:, 0, 0].any()
    batch = next(iter(dataset.test_dataset(3)))
    assert [s.decode() for s in batch["subject"].numpy()] == ["img0", "img1", "img2"]
    expected_b, _ = read_png_folder(tmp_path / "src/testB", image_shape=(32, 32))
    np.testing.assert_array_equal(batch["b"].numpy(), expected_b)
    assert batch["brain_mask"].numpy()[:, 16, 16].all() and not batch["brain_mask"].numpy()[:, 0, 0].any()
    assert "labels" not in batch
    assert len([v for v in dataset.manifest["volumes"] if v["folder"] == "trainA"]) == 5
