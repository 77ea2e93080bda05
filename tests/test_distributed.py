"""Data-parallel training: two mirrored CPU replicas, two local workers, and the refused settings.

Logical devices and multi-worker strategies must be set up before TensorFlow initialises, so the
distributed runs happen in fresh processes: this file, run as a script, trains one run with
`distribute="none"` and one with `distribute="mirrored"` over two logical CPU devices; the
multi-worker test starts two `gan-mri train --distribute multi-worker` processes (TF_CONFIG on
localhost ports), then resumes them.
"""

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
# The smallest UNIT; randomness off (noise and dropout draw per replica, see gan_mri.distribute).
TINY = dict(image_shape=(32, 32), base_width=4, encoder_res_blocks=0, generator_res_blocks=0,
            latent_noise_std=0.0, dropout=0.0)
GLOBAL_BATCH = 86  # the tiny dataset's 173 training slices: 2 steps per epoch, 43 per replica


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow",
            **extra}


def mirrored_against_one_device(dataset: str, out: Path) -> None:
    """Trains the same tiny run on one device and mirrored over two logical CPUs; saves both
    runs' final weights and history, and the message of a batch the two replicas cannot split."""
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from gan_mri.config import get_preset
    from gan_mri.training import train

    config = get_preset("unit", **TINY)
    arrays = {}
    for kind in ("none", "mirrored"):
        model, run = train(config, dataset, out / kind, epochs=1, batch_size=GLOBAL_BATCH, seed=5, verbose=0,
                           distribute=kind)
        for i, variable in enumerate(model.weights):
            arrays[f"{kind}/{i:03d}"] = np.asarray(variable)
        with open(run.history_file) as stream:
            row = next(csv.DictReader(stream))
        arrays.update({f"{kind}/loss/{name}": float(value) for name, value in row.items()
                       if name.endswith("loss") and not name.startswith("val_")})
        arrays[f"{kind}/iterations"] = int(np.asarray(model.g_optimizer.iterations))
        arrays[f"{kind}/replicas"] = int(model.distribute_strategy.num_replicas_in_sync)
    try:
        train(config, dataset, out / "odd", epochs=1, batch_size=3, verbose=0, distribute="mirrored")
    except ValueError as error:
        arrays["odd_batch_error"] = str(error)
    arrays["odd_batch_folder_exists"] = (out / "odd").exists()
    np.savez(out / "result.npz", **arrays)


def test_two_mirrored_replicas_train_as_one_device_with_the_same_global_batch(tiny_dataset, tmp_path):
    done = subprocess.run([sys.executable, __file__, "mirrored", str(tiny_dataset.path), str(tmp_path)],
                          env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    result = dict(np.load(tmp_path / "result.npz"))
    assert int(result["none/replicas"]) == 1 and int(result["mirrored/replicas"]) == 2
    # Both ran 2 steps of 86 images (43 per replica when mirrored).
    assert int(result["none/iterations"]) == int(result["mirrored/iterations"]) == 2
    losses = sorted(key.split("/", 1)[1] for key in result if key.startswith("none/loss/"))
    assert {"loss/g_loss", "loss/d_loss", "loss/recon_loss"} <= set(losses)
    worst_loss = max(abs(float(result[f"mirrored/{key}"]) - float(result[f"none/{key}"])) for key in losses)
    for key in losses:
        np.testing.assert_allclose(result[f"mirrored/{key}"], result[f"none/{key}"], rtol=1e-5, atol=1e-5,
                                   err_msg=key)
    weights = sorted(key.split("/", 1)[1] for key in result if key.startswith("none/") and key[5:].isdigit())
    assert len(weights) > 20
    worst_weight = 0.0
    for key in weights:
        ours, theirs = result[f"mirrored/{key}"], result[f"none/{key}"]
        # Adam moves each weight by ~lr (2e-3) per step whatever the gradient's size, so where a
        # gradient is near 0 the float32 summation order (replicas' sums against one device's) shows
        # in a few weights: up to 2.1e-5 seen, 1 % of one step. Gradients not summed over the
        # replicas would move most weights by a different ~lr.
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4, err_msg=key)
        worst_weight = max(worst_weight, float(np.abs(ours - theirs).max()))
    print(f"mirrored vs one device: max |loss diff| {worst_loss:.2e}, max |weight diff| {worst_weight:.2e}")
    # The two replicas cannot split a batch of 3: refused before the run folder is made.
    assert str(result["odd_batch_error"]) == (
        "batch_size: the global batch is split evenly over the 2 replicas of distribute='mirrored', "
        "so it must be a multiple of 2; found 3")
    assert not bool(result["odd_batch_folder_exists"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _run_workers(args: list[str], scratch: Path) -> list[subprocess.CompletedProcess]:
    """Runs `gan-mri train ... --distribute multi-worker` as worker 0 and worker 1 of one cluster."""
    workers = [f"localhost:{_free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "gan_mri.cli", "train", *args, "--distribute", "multi-worker"],
            env=_env(TF_CONFIG=tf_config, TMPDIR=str(scratch)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT))
    done = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr))
    return done


def test_two_local_workers_train_one_run_folder_and_resume(tiny_dataset, tmp_path):
    from gan_mri.config import get_preset
    from gan_mri.training import RunFolder

    config = tmp_path / "unit-tiny.json"
    get_preset("unit", **TINY).to_json(config)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run_dir = tmp_path / "run"
    common = ["--config", str(config), "--data", str(tiny_dataset.path), "--out", str(run_dir),
              "--batch-size", "64", "--eval-epochs", "none"]

    first = _run_workers([*common, "--epochs", "1"], scratch)
    for index, done in enumerate(first):
        assert done.returncode == 0, f"worker {index}:\n{done.stderr[-3000:]}"
        assert done.stdout.strip().endswith(f"run written to {run_dir}")
    run = RunFolder.open(run_dir)
    assert run.epochs_done() == 1 and run.model_file.is_file()
    assert sorted(p.name for p in run.checkpoint_dir.iterdir()) == ["epoch-0001.weights.h5", "state.json"]
    with open(run.history_file) as stream:
        rows = list(csv.DictReader(stream))
    assert [row["epoch"] for row in rows] == ["0"] and np.isfinite(float(rows[0]["g_loss"]))
    assert json.loads(run.run_file.read_text())["batch_size"] == 64
    # Worker 1 wrote into a temporary folder of its own, deleted at the end; only one run folder exists.
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("gan-mri-worker-")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tmp", "unit-tiny.json"]

    second = _run_workers([*common, "--epochs", "2", "--resume"], scratch)
    for index, done in enumerate(second):
        assert done.returncode == 0, f"worker {index} (resume):\n{done.stderr[-3000:]}"
    assert run.epochs_done() == 2
    assert sorted(p.name for p in run.checkpoint_dir.iterdir()) == ["epoch-0002.weights.h5", "state.json"]
    with open(run.history_file) as stream:
        rows = list(csv.DictReader(stream))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert not [p.name for p in scratch.iterdir() if p.name.startswith("gan-mri-worker-")]


def test_unknown_distribute_value_is_refused_before_the_run_folder_is_made(tiny_dataset, tmp_path):
    from gan_mri.config import get_preset
    from gan_mri.training import train

    with pytest.raises(ValueError) as error:
        train(get_preset("unit", **TINY), tiny_dataset, tmp_path / "run", epochs=1, distribute="horovod")
    assert str(error.value) == "distribute must be one of ['none', 'mirrored', 'multi-worker']; found 'horovod'"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("tf_config, message", [
    (None, "distribute='multi-worker' needs the TF_CONFIG environment variable"),
    ("{cluster", "TF_CONFIG: expected JSON, found '{cluster'"),
    ('{"cluster": {"worker": ["localhost:1"]}}', "TF_CONFIG: expected keys 'cluster' and 'task'"),
    ('{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "ps", "index": 0}}',
     "TF_CONFIG: task type must be 'chief' or 'worker' and listed in the cluster ['worker']; found 'ps'"),
])
def test_multi_worker_without_a_usable_tf_config_is_refused(tf_config, message, monkeypatch):
    from gan_mri.distribute import resolve_distribution

    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError) as error:
        resolve_distribution("multi-worker", 4)
    assert str(error.value).startswith(message)


def test_cli_refuses_an_unknown_distribute_value(tiny_dataset, tmp_path):
    done = subprocess.run([sys.executable, "-m", "gan_mri.cli", "train", "--data", str(tiny_dataset.path), "--out",
                           str(tmp_path / "run"), "--distribute", "ring"], env=_env(), capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2
    assert "argument --distribute: invalid choice: 'ring'" in done.stderr
    assert "mirrored" in done.stderr and "multi-worker" in done.stderr
    assert not (tmp_path / "run").exists()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Distributed runs of the tests, in a fresh process.")
    parser.add_argument("mode", choices=("mirrored",))
    parser.add_argument("dataset")
    parser.add_argument("out", type=Path)
    options = parser.parse_args()
    mirrored_against_one_device(options.dataset, options.out)
