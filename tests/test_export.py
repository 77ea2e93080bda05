"""SavedModel export for TF Serving: signatures, fresh-process loading, saved_model_cli, errors."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from gan_mri.baseline import IntensityRemap
from gan_mri.config import get_preset
from gan_mri.confidence import uncertainty_map
from gan_mri.export import export_saved_model
from gan_mri.models import build_model

UNCERTAINTY_SIGNATURES = ("a2b_uncertainty", "b2a_uncertainty")
SIGNATURES = ("serving_default", "a2b", "b2a", *UNCERTAINTY_SIGNATURES)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(11)
    config = get_preset(
        "sa-enc-cl-sn", image_shape=(32, 32), base_width=8, encoder_res_blocks=1, generator_res_blocks=1
    )
    model = build_model(config)
    model.preprocessing = {"image_shape": [32, 32], "spacing": 6.0, "resize": "fit", "percentiles": [1.0, 99.5],
                           "min_brain_fraction": 0.25}
    model.training_remap = IntensityRemap({"A": np.linspace(-0.9, 0.9, 5), "B": np.linspace(-0.8, 0.7, 5)})
    return model


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return export_saved_model(model, tmp_path_factory.mktemp("export") / "gan_mri" / "1")


def _quiet_env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}


_FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    export_dir, inputs_file, outputs_file = sys.argv[1:4]
    loaded = tf.saved_model.load(export_dir)
    x = np.load(inputs_file)
    result = {"signatures": sorted(loaded.signatures), "errors": {}}
    outputs = {}
    for name in sorted(loaded.signatures):
        out = loaded.signatures[name](image=tf.constant(x))
        result[name] = {key: [str(v.dtype.name), v.shape.as_list()] for key, v in out.items()}
        outputs[name] = out["translated"].numpy()
        if "uncertainty" in out:
            outputs[name + "_map"] = out["uncertainty"].numpy()
    # One slice alone gets the map it gets in a batch (the latent draws are the same for every slice).
    outputs["a2b_uncertainty_map_first"] = loaded.signatures["a2b_uncertainty"](image=tf.constant(x[:1]))[
        "uncertainty"].numpy()
    bad_inputs = {
        "size": tf.zeros((1, 16, 16, 1), tf.float32),
        "channels": tf.zeros((1, 32, 32, 3), tf.float32),
        "rank": tf.zeros((32, 32, 1), tf.float32),
        "dtype": tf.zeros((1, 32, 32, 1), tf.float64),
        "empty": tf.zeros((0, 32, 32, 1), tf.float32),
        "nan": tf.fill((1, 32, 32, 1), float("nan")),
        "inf": tf.concat([tf.zeros((1, 32, 31, 1)), tf.fill((1, 32, 1, 1), float("inf"))], axis=2),
    }
    for what, bad in bad_inputs.items():
        for name in ("a2b", "a2b_uncertainty"):
            try:
                loaded.signatures[name](image=bad)
                result["errors"].setdefault(what, {})[name] = None
            except Exception as err:
                result["errors"].setdefault(what, {})[name] = type(err).__name__ + ": " + str(err)
    far = tf.constant(x * 5.0)
    outputs["far"] = loaded.signatures["a2b"](image=far)["translated"].numpy()
    outputs["far_clipped"] = loaded.signatures["a2b"](image=tf.clip_by_value(far, -1.0, 1.0))["translated"].numpy()
    np.savez(outputs_file, **outputs)
    result["gan_mri_imported"] = any(m == "gan_mri" or m.startswith("gan_mri.") for m in sys.modules)
    print("RESULT " + json.dumps(result))
    """
)


def test_fresh_process_without_gan_mri_loads_and_matches_translate(model, exported, tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "serve_check.py"
    script.write_text(_FRESH_PROCESS)
    # Run from tmp_path so the repository (and gan_mri) is not on the child's import path.
    completed = subprocess.run(
        [sys.executable, str(script), str(exported), str(tmp_path / "x.npy"), str(tmp_path / "out.npz")],
        cwd=tmp_path, env=_quiet_env(), capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = [row for row in completed.stdout.splitlines() if row.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])

    assert result["gan_mri_imported"] is False
    assert result["signatures"] == sorted(SIGNATURES)
    for name in SIGNATURES:
        expected = {"translated": ["float32", [3, 32, 32, 1]]}
        if name in UNCERTAINTY_SIGNATURES:
            expected["uncertainty"] = ["float32", [3, 32, 32, 1]]
        assert result[name] == expected
    outputs = np.load(tmp_path / "out.npz")
    a2b = keras.ops.convert_to_numpy(model.translate(x, "A2B"))
    b2a = keras.ops.convert_to_numpy(model.translate(x, "B2A"))
    np.testing.assert_allclose(outputs["serving_default"], a2b, atol=1e-5)
    np.testing.assert_allclose(outputs["a2b"], a2b, atol=1e-5)
    np.testing.assert_allclose(outputs["b2a"], b2a, atol=1e-5)
    assert np.abs(a2b - b2a).max() > 1e-3
    assert np.abs(outputs["a2b"]).max() <= 1.0

    # The uncertainty signatures: the same translation, and the map uncertainty_map computes in Python
    # (UNIT: the spread of 8 latent samples, from the same stateless draws).
    for name, translated in (("a2b_uncertainty", a2b), ("b2a_uncertainty", b2a)):
        np.testing.assert_allclose(outputs[name], translated, atol=1e-5)
        served = outputs[name + "_map"]
        assert served.shape == x.shape and served.dtype == np.float32
        assert np.isfinite(served).all() and served.min() >= 0 and served.max() > 1e-4
        expected = uncertainty_map(model, x, name[:3], "latent")
        np.testing.assert_allclose(served, expected[..., None], rtol=1e-4, atol=1e-5)
    assert np.abs(outputs["a2b_uncertainty_map"] - outputs["b2a_uncertainty_map"]).max() > 1e-4
    np.testing.assert_allclose(outputs["a2b_uncertainty_map_first"], outputs["a2b_uncertainty_map"][:1], atol=1e-5)

    shape_message = r"image: expected a float32 tensor of shape \(batch, 32, 32, 1\) with values in \[-1, 1\]; found shape\] \[%s\]"
    for name in ("a2b", "a2b_uncertainty"):  # the uncertainty signatures check their input as a2b does
        errors = {what: by_name[name] for what, by_name in result["errors"].items()}
        assert re.search(shape_message % "1 16 16 1", errors["size"]), errors["size"]
        assert re.search(shape_message % "1 32 32 3", errors["channels"]), errors["channels"]
        assert re.search(shape_message % "32 32 1", errors["rank"]), errors["rank"]
        assert "expected to be a float tensor but is a double tensor" in errors["dtype"], errors["dtype"]
        assert re.search(r"image: expected at least one image in the batch; found shape\] \[0 32 32 1\]",
                         errors["empty"]), errors["empty"]
        for what in ("nan", "inf"):
            assert "image: expected finite values in [-1, 1]; found NaN or Inf" in errors[what], errors[what]
    # Out-of-range values are clipped to [-1, 1] (docs/serving.md), not passed on.
    np.testing.assert_array_equal(outputs["far"], outputs["far_clipped"])
    assert np.abs(outputs["far"] - outputs["a2b"][:3]).max() > 1e-3


def _saved_model_cli() -> list[str]:
    script = Path(sys.executable).with_name("saved_model_cli")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]


def test_saved_model_cli_lists_the_signatures_with_shapes(exported):
    completed = subprocess.run(
        [*_saved_model_cli(), "show", "--dir", str(exported), "--all"],
        env=_quiet_env(), capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    text = completed.stdout
    # "signature_def['a2b']:\n  ...inputs/outputs...\n  Method name is: ..." per signature.
    blocks = {part.split("'")[0]: part for part in text.split("signature_def['")[1:]}
    assert set(SIGNATURES) <= set(blocks), text[:2000]
    for name in SIGNATURES:
        block = blocks[name]
        tensor = r"\s+dtype: DT_FLOAT\n\s+shape: \(-1, 32, 32, 1\)"
        assert re.search(r"inputs\['image'\] tensor_info:" + tensor, block), block
        assert re.search(r"outputs\['translated'\] tensor_info:" + tensor, block), block
        assert bool(re.search(r"outputs\['uncertainty'\] tensor_info:" + tensor, block)) == (
            name in UNCERTAINTY_SIGNATURES), block
    assert text.count("Method name is: tensorflow/serving/predict") >= len(SIGNATURES)


def test_export_records_serving_info(model, exported):
    info = json.loads((exported / "serving_info.json").read_text())
    latent = {"method": "latent", "samples": 8, "seed": 0}
    assert info["signatures"] == {
        "serving_default": {"direction": "A2B"}, "a2b": {"direction": "A2B"}, "b2a": {"direction": "B2A"},
        "a2b_uncertainty": {"direction": "A2B", "outputs": ["translated", "uncertainty"], "uncertainty": latent},
        "b2a_uncertainty": {"direction": "B2A", "outputs": ["translated", "uncertainty"], "uncertainty": latent}}
    assert info["inputs"]["image"] == {"dtype": "float32", "shape": [None, 32, 32, 1], "range": [-1.0, 1.0]}
    assert info["outputs"]["translated"]["shape"] == [None, 32, 32, 1]
    uncertainty = info["outputs"]["uncertainty"]
    assert uncertainty["shape"] == [None, 32, 32, 1] and uncertainty["range"] == [0.0, 2.0]
    assert uncertainty["signatures"] == list(UNCERTAINTY_SIGNATURES)
    assert info["config"]["name"] == "sa-enc-cl-sn" and info["config"]["base_width"] == 8
    assert info["preprocessing"] == model.preprocessing  # how a client slices its volumes
    # What the model's training data teaches without a network, for whoever scores the served model.
    remap = info["training_remap"]
    assert remap["A"] == model.training_remap.to_dict()["A"] and remap["B"][-1] == pytest.approx(0.7)
    assert "training split" in remap["note"]
    assert (exported / "saved_model.pb").is_file() and (exported / "variables").is_dir()
    # Nothing but the export is left next to it (no temporary folders).
    assert [p.name for p in exported.parent.iterdir()] == ["1"]


def test_export_refuses_an_existing_path_unless_overwrite(model, tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"export path .*export already exists; pass overwrite=True"):
        export_saved_model(model, target)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]

    export_saved_model(model, target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == [
        "assets", "fingerprint.pb", "saved_model.pb", "serving_info.json", "variables"
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_failed_export_leaves_nothing_behind(model, tmp_path, monkeypatch):
    def broken_write_out(self, filepath, **kwargs):
        Path(filepath, "saved_model.pb").write_bytes(b"half")
        raise OSError("disk full")

    # ExportArchive() returns the backend's subclass, which defines write_out.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", broken_write_out)
    with pytest.raises(OSError, match="disk full"):
        export_saved_model(model, tmp_path / "export")
    assert list(tmp_path.iterdir()) == []


def test_export_rejects_what_is_not_a_gan_mri_model(tmp_path):
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="model: expected a gan-mri model with a translate"):
        export_saved_model(plain, tmp_path / "export")
    assert not (tmp_path / "export").exists()


def test_cyclegan_uncertainty_signatures_serve_the_cycle_residual(tmp_path):
    import tensorflow as tf

    cyclegan = build_model(get_preset("cyclegan", image_shape=(32, 32), base_width=4))
    path = export_saved_model(cyclegan, tmp_path / "export")
    info = json.loads((path / "serving_info.json").read_text())
    assert info["signatures"]["b2a_uncertainty"]["uncertainty"] == {"method": "cycle"}
    x = np.random.default_rng(1).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    out = tf.saved_model.load(str(path)).signatures["b2a_uncertainty"](image=tf.constant(x))
    np.testing.assert_allclose(out["translated"].numpy(), keras.ops.convert_to_numpy(cyclegan.translate(x, "B2A")),
                               atol=1e-5)
    expected = uncertainty_map(cyclegan, x, "B2A", "cycle")
    assert expected.max() > 1e-3
    np.testing.assert_allclose(out["uncertainty"].numpy(), expected[..., None], rtol=1e-4, atol=1e-5)


def test_a_latent_map_that_cannot_be_traced_falls_back_to_the_cycle_residual_and_says_so(model, tmp_path,
                                                                                         monkeypatch, caplog):
    import gan_mri.export

    real = gan_mri.export.translate_with_uncertainty

    def no_latent_in_graphs(model, images, direction, method, **options):
        if method == "latent":
            raise NotImplementedError("this encoder runs eagerly only")
        return real(model, images, direction, method, **options)

    monkeypatch.setattr(gan_mri.export, "translate_with_uncertainty", no_latent_in_graphs)
    path = export_saved_model(model, tmp_path / "export")
    entry = json.loads((path / "serving_info.json").read_text())["signatures"]["a2b_uncertainty"]
    assert entry["uncertainty"]["method"] == "cycle"
    assert "the latent method, this model's default, could not be traced into the graph (NotImplementedError: " \
           "this encoder runs eagerly only)" in entry["uncertainty"]["note"]
    assert "the latent uncertainty map could not be traced" in caplog.text
