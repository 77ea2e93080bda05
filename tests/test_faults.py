"""Fault injection: hostile files, corrupt datasets, OS errors and signals against the real `gan-mri`.

Each CLI case runs a real subprocess and asserts exit status 2 (or the signal's status), one line on
stderr naming the file and the problem, no traceback, and no output left behind.
"""

import errno
import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import nibabel as nib
import numpy as np
import pytest

from gan_mri.cli import describe_os_error
from gan_mri.data.manifest import READ_SCHEMA_VERSIONS, manifest_problems, sha256_file
from gan_mri.data.prepared import PreparedDataset
from gan_mri.data.volumes import load_volume

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_ENABLE_ONEDNN_OPTS="0")


def gan_mri(*args, timeout=300, **kwargs):
    """Runs `gan-mri ARGS` in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "gan_mri.cli", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "gan_mri.cli", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_one_line_error(result, *fragments, status=2):
    """Exit ``status``, no traceback, and one ``gan-mri ...: error:`` line holding every fragment."""
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def wait_for(predicate, process, timeout=120.0):
    """Polls ``predicate`` until true; fails if ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"process ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def partials(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if ".partial-" in p.name)


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    from gan_mri.data.phantom import simulate

    root = tmp_path_factory.mktemp("faults") / "bids"
    simulate(3, root, seed=3)
    return root


@pytest.fixture(scope="module")
def prepared(bids, tmp_path_factory):
    from gan_mri.data.dataset import prepare

    return prepare(bids, tmp_path_factory.mktemp("faults") / "data", image_shape=(32, 32), seed=0).path


@pytest.fixture
def dataset_copy(prepared, tmp_path):
    copy = tmp_path / "data"
    shutil.copytree(prepared, copy)
    return copy


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """An untrained tiny UNIT saved as .keras: enough to translate (the values do not matter)."""
    from gan_mri.config import get_preset
    from gan_mri.models import build_model

    keras.utils.set_random_seed(0)
    config = get_preset("unit", image_shape=(32, 32), base_width=4, encoder_res_blocks=1, generator_res_blocks=1)
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_model(config).save(path)
    return path


def _nifti(path: Path, shape=(16, 16, 16), dtype=np.float32, seed=0) -> Path:
    data = np.random.default_rng(seed).uniform(10, 100, shape).astype(dtype)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def _rewrite_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------------------- hostile volumes
def _header_claiming(path: Path, shape, body_bytes: int) -> Path:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape(shape)
    header.set_sform(np.eye(4), code=1)
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * body_bytes)
    return path


def _singular_affine(path: Path) -> Path:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((8, 8, 8))
    header.set_sform(np.diag([1.0, 1.0, 0.0, 1.0]), code=1)
    path.write_bytes(header.binaryblock + b"\0" * 4 + np.ones(512, np.float32).tobytes())
    return path


HOSTILE_VOLUMES = {
    # name: (builder, fragment of the message)
    "huge.nii": (lambda p: _header_claiming(p, (30000, 30000, 30000), 1000),
                 "header claims 27000000000000 voxels (shape (30000, 30000, 30000)), more than the limit"),
    "claims_more.nii": (lambda p: _header_claiming(p, (400, 400, 400), 1000),
                        "truncated or corrupt: the header claims 256000000 bytes of image (shape (400, 400, 400), float32), the file holds 1352"),
    "rgb.nii": (lambda p: nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")]),
                                                   np.eye(4)), p),
                "(RGB/color), expected one scalar intensity per voxel"),
    "complex.nii": (lambda p: nib.save(nib.Nifti1Image(np.ones((8, 8, 8), np.complex64), np.eye(4)), p),
                    "complex voxels (complex64), expected real intensities"),
    "singular.nii": (_singular_affine, "singular or non-finite affine"),
    "truncated.nii.gz": (lambda p: p.write_bytes(_nifti(p).read_bytes()[:200]), "truncated or corrupt gzip data"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_VOLUMES))
def test_hostile_volume_is_refused_naming_the_file(name, tmp_path):
    build, fragment = HOSTILE_VOLUMES[name]
    path = tmp_path / name
    build(path)
    with pytest.raises(ValueError) as error:
        load_volume(path)
    assert str(error.value).startswith(f"{path}: ") and fragment in str(error.value), str(error.value)


def test_voxel_limit_can_be_raised(tmp_path):
    path = _nifti(tmp_path / "v.nii", shape=(16, 16, 16))
    with pytest.raises(ValueError, match=r"claims 4096 voxels .* limit of 1000 \(raise it with --max-voxels"):
        load_volume(path, max_voxels=1000)
    assert load_volume(path, max_voxels=4096).shape == (16, 16, 16)


def test_compressed_mgz_is_not_taken_for_truncated(tmp_path):
    # FreeSurfer's .mgz is gzip-compressed: the file holds fewer bytes than its voxels decode to.
    data = np.linspace(10, 100, 16**3, dtype=np.float32).reshape(16, 16, 16)
    path = tmp_path / "T1.mgz"
    nib.save(nib.MGHImage(data, np.diag([1.0, 1.0, 1.0, 1.0])), path)
    assert path.stat().st_size < data.nbytes
    np.testing.assert_array_equal(np.asarray(load_volume(path).dataobj), data)


# nibabel's own test files: a CIFTI-2 dense connectivity matrix and a GIFTI surface (vertices + triangles).
CIFTI = Path(nib.__file__).parent / "tests" / "data" / "row_major.dconn.nii"
GIFTI = Path(nib.__file__).parent / "gifti" / "tests" / "data" / "ascii.gii"
CIFTI_FOUND = ("expected a 3D volume, found a CIFTI-2 file (intent ConnDense): data on surface vertices and "
               "grayordinates, with no voxel grid or affine")
GIFTI_FOUND = ("expected a 3D volume, found a GIFTI surface file (2 data arrays: pointset, triangle): data on "
               "surface vertices, with no voxel grid or affine")


def _gzipped(source: Path, path: Path) -> Path:
    path.write_bytes(gzip.compress(source.read_bytes()))
    return path


SURFACE_FILES = {
    # name: (nibabel's file, how it is written, message)
    "row_major.dconn.nii": (CIFTI, shutil.copyfile, CIFTI_FOUND),
    "sub-01_T1w.nii": (CIFTI, shutil.copyfile, CIFTI_FOUND),
    "sub-01_T1w.nii.gz": (CIFTI, _gzipped, CIFTI_FOUND),  # read from the gzip bytes as NIfTI-2, not as a 6D volume
    "ascii.gii": (GIFTI, shutil.copyfile, GIFTI_FOUND),
    "sub-01_T2w.nii": (GIFTI, shutil.copyfile, GIFTI_FOUND),  # nibabel does not read GIFTI under a volume's name
    "sub-01_T2w.nii.gz": (GIFTI, _gzipped, GIFTI_FOUND),
}


@pytest.mark.parametrize("name", sorted(SURFACE_FILES))
def test_surface_file_is_refused_naming_what_it_is(name, tmp_path):
    source, write, message = SURFACE_FILES[name]
    path = tmp_path / name
    write(source, path)
    with pytest.raises(ValueError) as error:
        load_volume(path)
    assert str(error.value) == f"{path}: {message}"


def test_prepare_names_surface_files_in_a_bids_tree(bids, tmp_path):
    source = tmp_path / "bids"
    shutil.copytree(bids, source)
    t1w = source / "sub-01" / "anat" / "sub-01_T1w.nii"
    t2w = source / "sub-02" / "anat" / "sub-02_T2w.nii"
    for volume, surface in ((t1w, CIFTI), (t2w, GIFTI)):
        Path(f"{volume}.gz").unlink()
        shutil.copyfile(surface, volume)
    out = tmp_path / "data"
    result = gan_mri("prepare", source, "--out", out, "--size", 32)
    assert_one_line_error(result, f"gan-mri prepare: error: prepare: found 2 problem(s) in {source}:")
    assert f"\n  - {t1w}: {CIFTI_FOUND}\n" in result.stderr, result.stderr
    assert f"\n  - {t2w}: {GIFTI_FOUND}\n" in result.stderr, result.stderr
    assert not out.exists() and partials(tmp_path) == []


def test_translate_refuses_a_surface_file_in_one_line(model_file, tmp_path):
    source = tmp_path / "sub-01_T1w.dconn.nii"
    shutil.copyfile(CIFTI, source)
    out = tmp_path / "out"
    result = gan_mri("translate", source, "--direction", "T1toT2", "--out", out / "x.nii.gz", "--model", model_file)
    assert_one_line_error(result, f"gan-mri translate: error: {source}: {CIFTI_FOUND}")
    assert not out.exists() and partials(tmp_path) == []


def test_translate_refuses_a_hostile_header_in_one_line(model_file, tmp_path):
    source = _header_claiming(tmp_path / "huge.nii", (30000, 30000, 30000), 1000)
    out = tmp_path / "out"
    result = gan_mri("translate", source, "--direction", "T1toT2", "--out", out / "x.nii.gz", "--model", model_file)
    assert_one_line_error(result, str(source), "header claims 27000000000000 voxels")
    assert not out.exists() and partials(tmp_path) == []


@pytest.mark.parametrize("kind", ["empty", "random", "truncated", "bitflip", "foreign_zip"])
def test_broken_model_file_says_what_is_wrong(kind, model_file, tmp_path):
    import zipfile

    data = model_file.read_bytes()
    bad = tmp_path / "model.keras"
    if kind == "foreign_zip":
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("notes.txt", "hello")
    else:
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0xFF
        bad.write_bytes({"empty": b"", "random": np.random.default_rng(0).bytes(3000),
                         "truncated": data[: len(data) // 2], "bitflip": bytes(flipped)}[kind])
    expected = {"empty": "empty file", "random": "not a zip archive (3000 bytes",
                "truncated": "not a zip archive", "bitflip": "damaged archive: model.weights.h5 fails its CRC check",
                "foreign_zip": "zip archive without config.json, model.weights.h5"}[kind]
    from gan_mri.inference import load_model

    with pytest.raises(ValueError) as error:
        load_model(bad)
    assert f"{bad}: {expected}" in str(error.value) and "File not found" not in str(error.value)


# --------------------------------------------------------------------- prepared datasets
def test_manifest_problems_are_listed_at_once():
    manifest = {"schema_version": 2, "image_shape": [32, 32], "channels": 1, "has_labels": False,
                "files": []}
    problems = manifest_problems(manifest)
    assert problems == ["files: expected an object of array files, found []",
                        "counts: missing (expected an object of slice counts)",
                        'test_index: missing (expected an object with "subject" and "slice" lists)']


NEWER_SCHEMA = ("schema_version: found 3, newer than this gan-mri reads (schema version 2): upgrade gan-mri, or "
                "prepare the dataset again with this one")


@pytest.mark.parametrize("version, message", [
    (3, NEWER_SCHEMA),
    (1, "schema_version: found 1, a retired schema this gan-mri no longer reads (it reads schema version 2; "
        "version 1 has no train_a_mask/train_b_mask, which training's remap baseline needs): prepare the "
        "dataset again"),
    ("2", "schema_version: expected a version this gan-mri reads (schema version 2), found '2'"),
    (2.0, "schema_version: expected a version this gan-mri reads (schema version 2), found 2.0"),
], ids=["newer", "retired", "string", "float"])
def test_unreadable_schema_version_is_the_only_problem_named(version, message):
    # The other fields belong to a schema this code does not know: listing them would only mislead.
    manifest = {"schema_version": version, "image_shape": [32, 32], "channels": 1, "has_labels": False, "files": []}
    assert manifest_problems(manifest) == [message]


def test_every_schema_version_read_opens(prepared):
    manifest = json.loads((prepared / "manifest.json").read_text())
    for version in READ_SCHEMA_VERSIONS:
        assert manifest_problems(dict(manifest, schema_version=version)) == [], version


def test_newer_schema_is_refused_before_the_run_folder_exists(dataset_copy, tmp_path):
    _rewrite_manifest(dataset_copy, lambda m: m.update(schema_version=3))
    run = tmp_path / "run"
    result = gan_mri("train", "--preset", "unit", "--data", dataset_copy, "--out", run, "--epochs", 1, "--width", 4)
    assert_one_line_error(result, f"gan-mri train: error: {dataset_copy / 'manifest.json'}: {NEWER_SCHEMA}")
    assert not run.exists()


def test_corrupt_manifest_is_refused_before_the_run_folder_exists(dataset_copy, tmp_path):
    def damage(manifest):
        for key in ("counts", "test_index"):
            del manifest[key]
        manifest["files"] = list(manifest["files"])

    _rewrite_manifest(dataset_copy, damage)
    run = tmp_path / "run"
    result = gan_mri("train", "--preset", "unit", "--data", dataset_copy, "--out", run, "--epochs", 1, "--width", 4)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert f"{dataset_copy / 'manifest.json'}: found 3 problems in the manifest:" in result.stderr
    for line in ("  - files: expected an object of array files, found [", "  - counts: missing",
                 "  - test_index: missing"):
        assert line in result.stderr, result.stderr
    assert not run.exists()


def test_image_shape_that_disagrees_with_the_arrays(dataset_copy):
    _rewrite_manifest(dataset_copy, lambda m: m.update(image_shape=[64, 64]))
    result = gan_mri("verify", dataset_copy)
    assert_one_line_error(result, f"{dataset_copy / 'manifest.json'}: image_shape: expected [32, 32], the slice "
                                  "shape of ", "test_a.npy", "train_b_mask.npy", "found [64, 64]")


def _flip_first_float(file: Path, value=np.nan) -> None:
    array = np.load(file, mmap_mode="r+")
    array[0, 0, 0] = value
    array.flush()


def test_nan_data_with_matching_checksum_is_refused(dataset_copy):
    file = dataset_copy / "train_a.npy"
    _flip_first_float(file)
    _rewrite_manifest(dataset_copy, lambda m: m["files"]["train_a.npy"].update(sha256=sha256_file(file)))
    result = gan_mri("verify", dataset_copy)
    assert_one_line_error(result, f"{file}: expected finite values, found 1 NaN/Inf")


def test_altered_bytes_fail_the_checksum(dataset_copy):
    file = dataset_copy / "test_b.npy"
    _flip_first_float(file, 0.123)
    result = gan_mri("verify", dataset_copy)
    assert_one_line_error(result, f"{file}: sha256 ", "differs from the manifest's", "(file altered or corrupt)")
    # Opting out skips the checksum but never the header and size check.
    assert PreparedDataset.open(dataset_copy, verify_checksums=False).path == dataset_copy


def test_truncated_array_is_refused_even_without_checksums(dataset_copy):
    file = dataset_copy / "train_b.npy"
    size = file.stat().st_size
    with open(file, "r+b") as handle:
        handle.truncate(size - 100)
    shape = json.loads((dataset_copy / "manifest.json").read_text())["files"]["train_b.npy"]["shape"]
    with pytest.raises(ValueError) as error:
        PreparedDataset.open(dataset_copy, verify_checksums=False)
    assert str(error.value) == f"{file}: expected {size} bytes for shape {shape} <f4, found {size - 100} " \
                               f"(truncated or padded)"


def test_verify_reports_a_sound_dataset(prepared):
    result = gan_mri("verify", prepared)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{prepared}: ok (manifest schema, 8 array files of ")


def test_non_finite_loss_stops_training_without_a_model(dataset_copy, tmp_path):
    from gan_mri.config import get_preset
    from gan_mri.training import NonFiniteLossError, train

    array = np.load(dataset_copy / "train_a.npy", mmap_mode="r+")
    array[1:] = np.nan  # every batch of 8 holds NaN; the first slice leaves the remap something to fit
    array.flush()
    dataset = PreparedDataset.open(dataset_copy, verify_checksums=False)  # the opt-out lets NaN through
    config = get_preset("unit", image_shape=(32, 32), base_width=4, encoder_res_blocks=1, generator_res_blocks=1)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"training stopped: \w+ is nan at epoch 1, step 1 .*"
                                                 r"no model.keras was written for this run"):
        train(config, dataset, run, epochs=1, batch_size=8, eval_epochs=(), verbose=0)
    assert not (run / "model.keras").exists() and not list(run.rglob("*.weights.h5"))



def test_training_data_without_a_finite_brain_voxel_is_refused_before_training(dataset_copy, tmp_path):
    from gan_mri.config import get_preset
    from gan_mri.training import train

    array = np.load(dataset_copy / "train_a.npy", mmap_mode="r+")
    array[:] = np.nan
    array.flush()
    dataset = PreparedDataset.open(dataset_copy, verify_checksums=False)
    config = get_preset("unit", image_shape=(32, 32), base_width=4, encoder_res_blocks=1, generator_res_blocks=1)
    with pytest.raises(ValueError, match=r"^IntensityRemap.fit: domain A: expected finite brain voxels in the masks, "
                                         r"found only \d+ non-finite \(NaN\) values$"):
        train(config, dataset, tmp_path / "run", epochs=1, batch_size=8, eval_epochs=(), verbose=0)
    assert not (tmp_path / "run" / "model.keras").exists()

# ------------------------------------------------------------------------------ OS errors
def test_missing_inputs_and_outputs_under_a_file(prepared, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    result = gan_mri("prepare", prepared.parent / "none", "--out", blocker / "data")
    assert_one_line_error(result, f"{prepared.parent / 'none'}: source folder not found")
    result = gan_mri("verify", blocker / "data")
    assert_one_line_error(result, f"{blocker / 'data'}: prepared dataset folder not found")
    result = gan_mri("simulate", "--subjects", 1, "--out", blocker / "sub" / "bids")
    assert_one_line_error(result, f"{blocker / 'sub' / 'bids'}: cannot be created or read because {blocker} is a file, "
                                  f"not a folder")
    result = gan_mri("simulate", "--subjects", 1, "--out", blocker)
    assert_one_line_error(result, f"{blocker}: is a file, expected a folder")


def test_file_size_limit_during_prepare(bids, tmp_path):
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    out = tmp_path / "data"
    result = gan_mri("prepare", bids, "--out", out, "--size", 32, preexec_fn=limit_file_size)
    line = assert_one_line_error(result, f"gan-mri prepare: error: {tmp_path}/.data.partial-")
    assert line.endswith(("file too large (the file-size limit was reached)",
                          "disk full or file-size limit reached")), line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("code, reason", [
    (errno.EACCES, "permission denied"), (errno.ENOSPC, "no space left on the device"),
    (errno.EFBIG, "file too large (the file-size limit was reached)"), (errno.EROFS, "read-only file system")])
def test_os_errors_are_described(code, reason):
    assert describe_os_error(OSError(code, os.strerror(code), "/data/out.npy")) == f"/data/out.npy: {reason}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder(bids, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    result = gan_mri("prepare", bids, "--out", locked / "data", "--size", 32)
    assert_one_line_error(result, str(locked), "permission denied")


def test_debug_shows_the_traceback(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    result = gan_mri("--debug", "simulate", "--subjects", 1, "--out", blocker)
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert f"gan-mri simulate: error: {blocker}: is a file, expected a folder" in result.stderr


# -------------------------------------------------------------------------------- signals
def test_sigterm_during_prepare_removes_the_partial_output(bids, tmp_path):
    out = tmp_path / "data"
    process = start("prepare", bids, "--out", out, "--size", 32)
    wait_for(lambda: partials(tmp_path), process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "gan-mri prepare: stopped by SIGTERM; incomplete outputs were removed" in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


def test_a_signal_whose_exception_native_code_replaced_is_still_reported_as_the_signal(monkeypatch, capsys,
                                                                                      tmp_path):
    """A signal can land in Python code that TensorFlow's C++ calls back into; the C++ layer then
    raised its own error instead (CI once got `AttributeError: 'list' object has no attribute
    '_type_spec'` from nest.flatten, exit 1 with a traceback, for a SIGTERM during translate)."""
    from gan_mri import cli

    def replaced(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # main's handler raises Terminated here
            time.sleep(5)
        except cli.Terminated:
            raise AttributeError("'list' object has no attribute '_type_spec'") from None
        pytest.fail("SIGTERM was not delivered")

    monkeypatch.setattr(cli, "cmd_simulate", replaced)
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert cli.main(["simulate", "--out", str(tmp_path / "bids")]) == 143
    stderr = capsys.readouterr().err
    assert stderr.strip().splitlines() == [
        "gan-mri simulate: stopped by SIGTERM; incomplete outputs were removed"]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == handlers  # restored


def test_sigkill_during_prepare_leaves_nothing_visible_and_the_next_run_cleans_up(bids, tmp_path):
    out = tmp_path / "data"
    process = start("prepare", bids, "--out", out, "--size", 32)
    wait_for(lambda: partials(tmp_path), process)
    process.kill()
    process.communicate(timeout=60)
    stale = partials(tmp_path)
    assert [p.name.startswith(".data.partial-") for p in stale] == [True] and not out.exists()
    result = gan_mri("prepare", bids, "--out", out, "--size", 32)
    assert result.returncode == 0, result.stderr
    assert f"removed {stale[0]}, the partial output of an interrupted run" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.fixture(scope="module")
def volume_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("volumes")
    for index in range(12):
        _nifti(folder / f"sub-{index:02d}_T1w.nii.gz", shape=(32, 32, 48), seed=index)
    return folder


def test_sigterm_during_translate_removes_the_partial_output(model_file, volume_folder, tmp_path):
    out = tmp_path / "synth"
    process = start("translate", volume_folder, "--direction", "T1toT2", "--out", out, "--model", model_file,
                    "--batch-size", 4)
    wait_for(lambda: partials(tmp_path), process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    assert "gan-mri translate: stopped by SIGTERM; incomplete outputs were removed" in stderr
    assert list(tmp_path.iterdir()) == []


def test_sigkill_during_translate_leaves_no_complete_looking_output(model_file, volume_folder, tmp_path):
    out = tmp_path / "synth"
    process = start("translate", volume_folder, "--direction", "T1toT2", "--out", out, "--model", model_file,
                    "--batch-size", 4)
    wait_for(lambda: any(True for p in partials(tmp_path) for _ in p.rglob("*.nii.gz")), process)
    process.kill()
    process.communicate(timeout=60)
    assert not out.exists()
    stale = partials(tmp_path)
    assert len(stale) == 1 and stale[0].name.startswith(".synth.partial-")
    result = gan_mri("translate", volume_folder, "--direction", "T1toT2", "--out", out, "--model", model_file)
    assert result.returncode == 0, result.stderr
    assert f"removed {stale[0]}, the partial output of an interrupted run" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]
    assert len(list(out.glob("*.nii.gz"))) == 12


def test_default_output_holds_only_gan_mri_lines(model_file, volume_folder, tmp_path):
    source = volume_folder / "sub-00_T1w.nii.gz"
    result = gan_mri("translate", source, "--direction", "T1toT2", "--out", tmp_path / "x.nii.gz",
                     "--model", model_file)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout.strip() == str(tmp_path / "x.nii.gz")
