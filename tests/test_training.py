"""Run folders and resumable training: a real subprocess is SIGKILLed and resumed."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_mri.baseline import IntensityRemap
from gan_mri.config import get_preset
from gan_mri.models import build_model
from gan_mri.training import RunFolder, train

EPOCHS = 2
BATCH = 36
SEED = 3


def tiny_config():
    return get_preset("sa-enc-cl-sn", image_shape=(32, 32), base_width=8)


def load_checkpoint(run_dir, dataset):
    """A compiled model holding the run's latest checkpoint (weights and optimizer state),
    compiled as `train` compiles it: the learning-rate schedule spans the run's planned steps."""
    run = RunFolder.open(run_dir)
    info = json.loads(run.run_file.read_text())
    model = build_model(run.load_config())
    model.compile(total_steps=info["epochs"] * dataset.steps_per_epoch(info["batch_size"]))
    model.load_weights(run.checkpoint_weights())
    return model


@pytest.fixture(scope="module")
def complete_run(tiny_dataset, tmp_path_factory):
    """An uninterrupted run of EPOCHS epochs, evaluated at epoch 1 and the last: the run folder's
    contents and the result a killed and resumed run must end at."""
    return train(tiny_config(), tiny_dataset, tmp_path_factory.mktemp("complete") / "run", epochs=EPOCHS,
                 batch_size=BATCH, eval_epochs=[1], seed=SEED, verbose=0)


def test_training_writes_a_complete_run_folder(complete_run, tiny_dataset):
    model, run = complete_run

    info = json.loads(run.run_file.read_text())
    assert info["epochs"] == EPOCHS and info["batch_size"] == BATCH and info["seed"] == SEED
    assert info["precision"] == model.precision_policy == "float32"  # "auto" resolved on this CPU
    # Trained on standardized volumes: the run and the model keep the dataset's reference.
    assert info["standardization"] == tiny_dataset.standardization.to_dict()
    assert model.standardization == tiny_dataset.standardization
    # ... and how its slices were made, which translate and evaluate use again.
    assert info["preprocessing"] == model.preprocessing == tiny_dataset.preprocessing
    assert model.preprocessing["spacing"] is None and model.preprocessing["percentiles"] == [1.0, 99.5]
    assert json.loads(run.config_file.read_text())["name"] == "sa-enc-cl-sn"
    assert run.epochs_done() == 2

    with open(run.history_file) as stream:
        rows = list(csv.DictReader(stream))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    for name in ("g_loss", "d_loss", "gan_loss", "recon_loss", "cycle_loss", "kl_loss", "val_ssim_a2b"):
        assert name in rows[0]
    assert np.isfinite(float(rows[1]["g_loss"]))
    # Evaluated at epoch 1 (asked) and epoch 2 (the last): the Table 7(b) rows, then the
    # no-learning remap baseline on the same test slices.
    table = (run.metrics_dir / "ssim_table.md").read_text().splitlines()
    assert table[0].startswith("| Epoch | SSIM T1 | SSIM T2")
    assert [line.split("|")[1].strip() for line in table[2:]] == ["1", "2", "remap baseline"]
    assert all(0.0 < float(value) <= 1.0 for value in table[-1].split("|")[2:4])
    for figure in ("loss_curves.png", "ssim_curves.png", "translation_epoch_001.png"):
        assert (run.figures_dir / figure).stat().st_size > 1000

    # TensorBoard event files hold the per-epoch losses.
    events = EventAccumulator(str(run.logs_dir / "train"))
    events.Reload()
    tags = set(events.Tags()["scalars"]) | set(events.Tags().get("tensors", []))
    assert "epoch_g_loss" in tags

    reloaded = keras.models.load_model(run.model_file)
    x = next(iter(tiny_dataset.test_dataset(batch_size=4)))["a"]
    np.testing.assert_array_equal(reloaded.translate(x, "A2B"), model.translate(x, "A2B"))
    assert reloaded.standardization == tiny_dataset.standardization
    assert reloaded.preprocessing == tiny_dataset.preprocessing
    # The remap of its training split (the fair reference of sim-to-real) travels with the model.
    expected = IntensityRemap.from_dataset(tiny_dataset, tiny_dataset.standardization)
    for saved in (model, reloaded):
        for domain in ("A", "B"):
            np.testing.assert_allclose(saved.training_remap.quantiles[domain], expected.quantiles[domain])


def test_existing_run_folder_is_refused_without_overwrite(tiny_dataset, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists; pass --resume .* or --overwrite"):
        train(tiny_config(), tiny_dataset, tmp_path / "run", epochs=1, batch_size=BATCH, verbose=0)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_dataset_that_does_not_fit_the_model_is_refused(tiny_dataset, tmp_path):
    config = get_preset("unit", image_shape=(48, 48), base_width=8)
    with pytest.raises(ValueError, match=r"image shape \(32, 32\) does not fit the model.*\(48, 48\)"):
        train(config, tiny_dataset, tmp_path / "run", epochs=1, verbose=0)
    assert not (tmp_path / "run").exists()


def test_resume_of_a_folder_that_is_not_a_run_is_refused(tiny_dataset, tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(ValueError, match="is not a gan-mri run folder"):
        train(None, tiny_dataset, tmp_path / "stuff", epochs=1, resume=True, verbose=0)


KILLED_TRAINING = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from gan_mri.config import get_preset
    from gan_mri.training import train

    class KillAtEpoch(keras.callbacks.Callback):
        # SIGKILL (no cleanup, like an OOM kill or a lost node) once epoch 1's checkpoint is on disk.
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    config = get_preset("sa-enc-cl-sn", image_shape=(32, 32), base_width=8)
    train(config, sys.argv[1], sys.argv[2], epochs=%d, batch_size=%d, eval_epochs=[1], seed=%d, verbose=0,
          callbacks=[KillAtEpoch()])
    """ % (EPOCHS, BATCH, SEED)
)


def test_sigkilled_training_resumes_to_the_uninterrupted_result(complete_run, tiny_dataset, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    killed = subprocess.run([sys.executable, "-c", KILLED_TRAINING, str(tiny_dataset.path), str(tmp_path / "killed")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run = RunFolder.open(tmp_path / "killed")
    assert run.epochs_done() == 1 and not run.model_file.exists()
    interrupted = load_checkpoint(run.root, tiny_dataset)
    for optimizer in ("g_optimizer", "d_optimizer"):
        assert int(getattr(interrupted, optimizer).iterations) == tiny_dataset.steps_per_epoch(BATCH)

    resumed = subprocess.run(
        [sys.executable, "-m", "gan_mri.cli", "train", "--data", str(tiny_dataset.path), "--out", str(run.root),
         "--epochs", str(EPOCHS), "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert run.epochs_done() == EPOCHS
    with open(run.history_file) as stream:
        assert [row["epoch"] for row in csv.DictReader(stream)] == ["0", "1"]

    _, full = complete_run
    # Weights, optimizer moments and the random state all came back from the checkpoint: resuming ends where
    # the uninterrupted run ends (a lost moment or a restarted schedule would show here).
    resumed_model, full_model = load_checkpoint(run.root, tiny_dataset), load_checkpoint(full.root, tiny_dataset)
    assert int(resumed_model.d_optimizer.iterations) == EPOCHS * tiny_dataset.steps_per_epoch(BATCH)
    for ours, theirs in zip(resumed_model.weights + resumed_model.g_optimizer.variables,
                            full_model.weights + full_model.g_optimizer.variables):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-4, atol=1e-5, err_msg=ours.path)


JAX_TRAINING = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from gan_mri.config import get_preset
    from gan_mri.training import train

    data, out = sys.argv[1], sys.argv[2]
    config = get_preset("unit", image_shape=(32, 32), base_width=4, encoder_res_blocks=0, generator_res_blocks=0)
    one, _ = train(config, data, out + "/run", epochs=1, batch_size=86, eval_epochs=[1], max_eval_batches=1,
                   seed=5, verbose=0)
    np.savez(out + "/one_device.npz", *[np.asarray(w) for w in one.weights])
    resumed, _ = train(None, data, out + "/run", epochs=2, resume=True, verbose=0)
    # keras.distribution.DataParallel over the two host devices XLA_FLAGS makes.
    parallel, _ = train(config, data, out + "/parallel", epochs=1, batch_size=86, seed=5, verbose=0,
                        distribute="mirrored")
    np.savez(out + "/parallel.npz", *[np.asarray(w) for w in parallel.weights])
    json.dump({"iterations": int(np.asarray(resumed.g_optimizer.iterations)),
               "devices": len(parallel.weights[0].value.sharding.device_set)}, open(out + "/result.json", "w"))
    """
)


def test_jax_backend_trains_evaluates_and_resumes_a_run_folder(tiny_dataset, tmp_path):
    """`train` under KERAS_BACKEND=jax: the same run folder, checkpoint, evaluation and resume as
    TensorFlow, and data-parallel over two host devices equal to one device."""
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2",
               XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2".strip())
    done = subprocess.run([sys.executable, "-c", JAX_TRAINING, str(tiny_dataset.path), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run = RunFolder.open(tmp_path / "run")
    assert run.epochs_done() == 2 and run.model_file.is_file()
    assert sorted(p.name for p in run.checkpoint_dir.iterdir()) == ["epoch-0002.weights.h5", "state.json"]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["iterations"] == 2 * tiny_dataset.steps_per_epoch(86) == 4
    with open(run.history_file) as stream:
        rows = list(csv.DictReader(stream))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert all(np.isfinite(float(row[name])) for row in rows for name in ("g_loss", "d_loss", "recon_loss"))
    # Evaluated at epoch 1 (asked) and after the resume's last epoch, both directions: finite
    # metrics (SSIM of a 2-step model can be below 0) beside the remap baseline's.
    with open(run.metrics_dir / "metrics.csv") as stream:
        metrics = list(csv.DictReader(stream))
    assert sorted((row["epoch"], row["direction"]) for row in metrics) == [
        ("1", "A2B"), ("1", "B2A"), ("2", "A2B"), ("2", "B2A")]
    for row in metrics:
        assert -1.0 <= float(row["ssim"]) <= 1.0 and np.isfinite(float(row["psnr"])), row
        assert 0.0 < float(row["baseline_ssim"]) <= 1.0
    assert (run.figures_dir / "translation_epoch_001.png").stat().st_size > 1000
    # One JAX program over the global batch, sharded over two devices: the same update as one device.
    assert result["devices"] == 2
    one, parallel = np.load(tmp_path / "one_device.npz"), np.load(tmp_path / "parallel.npz")
    assert len(one.files) == len(parallel.files) > 20
    for key in one.files:
        # Summation order only: a few weights differ by up to 4.8e-6 on an AVX2 CPU and 3.5e-5 on an
        # AVX-512 one (Adam's normalized step magnifies the noise of a near-zero gradient). The bound,
        # 1e-4, is 5 % of one Adam step (lr 2e-3); a wrong split of the batch moves weights by a whole step.
        np.testing.assert_allclose(parallel[key], one[key], rtol=1e-4, atol=1e-4, err_msg=key)
