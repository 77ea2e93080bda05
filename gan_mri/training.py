"""Training runs: the run folder and resumable training with Keras callbacks.

A run folder records everything one training run produced::

    run.json          what was trained on, how long, with which seed (marks the folder as a run); for a
                      model with a remap prior, what it was fitted on and its quantiles
    config.json       the model config (UNITConfig/CycleGANConfig as JSON)
    checkpoints/      epoch-NNNN.weights.h5 (weights + both optimizers) and state.json (epochs done,
                      which weights file, RNG state; renaming it into place commits a checkpoint)
    model.keras       the final model, loadable with keras.models.load_model
    history.csv       one row of losses per epoch (CSVLogger)
    logs/             TensorBoard event files
    metrics/          metrics.csv (per evaluated epoch and direction) and ssim_table.csv/.md (Table 7(b))
    figures/          translation grids, loss curves, SSIM per epoch
    export/           the SavedModel for TF Serving (after `gan-mri export`)

Resuming is exact: each epoch gets its own data order from (seed, epoch), and the checkpoint
holds the weights, both optimizers' state and the random-generator state of the noise and
dropout layers, so a run killed after epoch k and resumed reproduces an uninterrupted run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gan_mri import __version__, plots
from gan_mri.baseline import IntensityRemap
from gan_mri.data.dataset import PreparedDataset
from gan_mri.evaluation import EvaluationCallback
from gan_mri.fileutil import atomic_output, atomic_write_text, fresh_folder
from gan_mri.models import build_model
from gan_mri.precision import ModelShape, choose_precision
from gan_mri.run_files import RunFolder
from gan_mri.standardization import IntensityStandardization

logger = logging.getLogger(__name__)


def _write_json_atomic(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def random_states(model: keras.Model) -> list:
    """The state variables of every random-seed generator in the model (noise, dropout, pools).

    `model.variables` lists the weights and, after them, the seed generators' states;
    `model.weights` lists only the weights, so the difference is the random state."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _model_optimizers(model: keras.Model) -> list:
    """The optimizers a GAN model was compiled with (one per player: g_optimizer, d_optimizer)."""
    return [getattr(model, name) for name in ("g_optimizer", "d_optimizer") if getattr(model, name, None)]


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves weights, optimizer state and RNG state atomically at the end of every epoch.

    The weights go to a new file named after the epoch; the checkpoint is committed by renaming
    state.json (which names that file) into place, and only then is the previous weights file
    removed. A process killed at any moment leaves one complete, consistent checkpoint.

    Args:
        checkpoint_dir: folder for ``epoch-NNNN.weights.h5`` and ``state.json``.
    """

    def __init__(self, checkpoint_dir: str | os.PathLike):
        super().__init__()
        self.checkpoint_dir = Path(checkpoint_dir)

    def on_epoch_end(self, epoch, logs=None):
        save_checkpoint(self.model, self.checkpoint_dir, epoch + 1)


class NonFiniteLossError(ValueError):
    """Training produced a NaN or infinite loss (corrupt data, a diverging model)."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first batch whose logged losses or metrics are NaN or infinite.

    It raises instead of setting ``stop_training``, so no later callback runs on the broken
    weights: the epoch's checkpoint is not written and `train` never saves them as ``model.keras``.

    Raises:
        NonFiniteLossError: naming the first non-finite value, the epoch and the step.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            value = np.asarray(value, dtype=np.float64)
            if not np.all(np.isfinite(value)):
                raise NonFiniteLossError(
                    f"training stopped: {name} is {value[~np.isfinite(value)].ravel()[0]} at epoch {getattr(self, 'epoch', 0) + 1}, "
                    f"step {batch + 1} (NaN/Inf in the data, or a diverging model: lower the learning rate); "
                    f"no model.keras was written for this run")


def save_checkpoint(model: keras.Model, checkpoint_dir: Path, epochs_done: int) -> None:
    """Writes the training state after ``epochs_done`` epochs (see `EpochCheckpoint`)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    weights = f"epoch-{epochs_done:04d}.weights.h5"
    model.save_weights(checkpoint_dir / weights)
    rng = [keras.ops.convert_to_numpy(s).tolist() for s in random_states(model)]
    _write_json_atomic(checkpoint_dir / "state.json", {"epoch": epochs_done, "weights": weights, "rng": rng})
    for stale in checkpoint_dir.glob("epoch-*.weights.h5"):
        if stale.name != weights:
            stale.unlink()


def restore_checkpoint(model: keras.Model, run: RunFolder) -> int:
    """Restores a compiled model from a run's checkpoint; returns the epochs done (0 without one)."""
    state = run.checkpoint_state()
    if state is None:
        return 0
    # Weights and optimizer slots load into existing variables: both optimizers must be built
    # (compile builds them) or their state would be silently skipped.
    if not all(optimizer.built for optimizer in _model_optimizers(model)):
        raise RuntimeError("optimizers must be built before restoring a checkpoint")
    model.load_weights(run.checkpoint_weights())
    for variable, value in zip(random_states(model), state["rng"]):
        variable.assign(value)
    return int(state["epoch"])


def epoch_datasets(dataset, *, first_epoch: int, epochs: int, batch_size: int, seed: int,
                   channels: int, flip: bool, standardization=None) -> tf.data.Dataset:
    """Training batches for epochs ``first_epoch .. epochs - 1``, one seeded order per epoch.

    Seeding by (seed, epoch) rather than reshuffling one dataset is what makes a resumed run
    see exactly the batches the uninterrupted run would have seen. Each epoch's dataset is made
    inside `flat_map`, so every iteration over the result starts from fresh shuffle state and
    yields the same batches: under a distribution strategy Keras iterates once to build the model
    before training, and a seeded shuffle's second iteration would otherwise be another order.
    """

    def one_epoch(epoch: int) -> tf.data.Dataset:
        def make(_):
            return dataset.train_dataset(batch_size, shuffle=True, flip=flip, seed=seed * 100_003 + epoch,
                                         channels=channels, standardization=standardization)

        return tf.data.Dataset.from_tensors(tf.constant(0, tf.int64)).flat_map(make)

    per_epoch = [one_epoch(epoch) for epoch in range(first_epoch, epochs)]
    return functools.reduce(lambda left, right: left.concatenate(right), per_epoch)


RECORDED_LEVELS = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0)
"""Levels of the remap prior's brain-intensity quantiles that run.json records (the model holds all)."""


def remap_prior_record(config, dataset, remap: IntensityRemap) -> dict:
    """run.json's record of a model's remap prior: its mode, what it was fitted on (the training
    split only) and its quantiles at `RECORDED_LEVELS` per contrast."""
    levels = np.asarray(RECORDED_LEVELS)
    return {"mode": config.remap_prior, "fitted_on": ["train_a", "train_b"],
            "slices": {name: int(dataset.counts[name]) for name in ("train_a", "train_b")},
            "levels": list(RECORDED_LEVELS),
            "quantiles": {domain: np.round(np.interp(levels, remap.levels[domain], values), 4).tolist()
                          for domain, values in remap.quantiles.items()}}


def create_run(run_dir: str | os.PathLike, config, run_info: dict, *, overwrite: bool = False) -> RunFolder:
    """Creates a run folder with run.json and config.json.

    Raises:
        ValueError: if ``run_dir`` exists and is not empty and ``overwrite`` is false.
    """
    root = fresh_folder(run_dir, "run folder", overwrite, alternative="--resume to continue it")
    run = RunFolder(root)
    config.to_json(run.config_file)
    _write_json_atomic(run.run_file, {"gan_mri_version": __version__, **run_info})
    return run


def check_dataset_trains(dataset) -> None:
    """Raises ValueError if a prepared dataset has no training slices of a contrast (a test-only dataset)."""
    empty = [name for name in ("train_a", "train_b") if dataset.counts[name] == 0]
    if empty:
        raise ValueError(f"dataset {dataset.path}: no training slices ({', '.join(empty)} empty; a test-only "
                         f"dataset, prepared with test_fraction=1, is for evaluation)")


def check_dataset_fits(config, dataset) -> None:
    """Raises ValueError if a prepared dataset's image shape differs from the model's."""
    found = tuple(dataset.image_shape)
    if found != tuple(config.image_shape):
        raise ValueError(
            f"dataset {dataset.path}: image shape {found} does not fit the model, which expects "
            f"image_shape {tuple(config.image_shape)}; prepare the data at that shape or set "
            f"image_shape={found} in the config"
        )


def _truncate_history(history_file: Path, epochs_done: int) -> None:
    """Drops history rows of epochs past the checkpoint (CSVLogger's epoch column is 0-based)."""
    if not history_file.is_file():
        return
    lines = history_file.read_text(encoding="utf-8").splitlines(keepends=True)
    if not lines:
        return
    kept = [lines[0]] + [line for line in lines[1:] if int(line.split(",", 1)[0]) < epochs_done]
    atomic_write_text(history_file, "".join(kept))


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Saves a `.keras` file through a temporary name, so a crash leaves no torn file."""
    with atomic_output(path) as temporary:
        model.save(temporary)


def _fit_verbosity(verbose):
    """`verbose="auto"` as a terminal user and a batch log each want it (Keras's "auto" draws the
    progress bar into pipes too)."""
    if verbose != "auto":
        return verbose
    return 1 if sys.stdout.isatty() else 2


def train(config, dataset, run_dir, *, epochs: int, batch_size: int = 1, resume: bool = False,
          overwrite: bool = False, eval_epochs=(), max_eval_batches: int | None = None,
          seed: int = 0, flip: bool = False, standardize: bool = True, verbose="auto", callbacks=(),
          distribute: str = "none"):
    """Trains a model on a prepared dataset into a run folder.

    Args:
        config: the model config (`UNITConfig`, ...). Ignored with ``resume``: the run's
            config.json is used.
        dataset: a `PreparedDataset` or the path of one.
        run_dir: the run folder to create (or to continue with ``resume``).
        epochs: total number of epochs (with ``resume``, including those already done).
        batch_size: images per domain per step (the global batch: split over the replicas).
        resume: continue the run in ``run_dir`` from its last checkpoint.
        overwrite: replace an existing ``run_dir`` (without ``resume``).
        eval_epochs: 1-based epochs at which to evaluate on the test split (the last
            epoch is always evaluated when this is non-empty).
        max_eval_batches: limit on test batches per evaluation.
        seed: seed of weights, data order and noise.
        flip: random left-right flips of training images.
        standardize: train on intensity-standardized volumes (`gan_mri.standardization`: each
            volume's brain-intensity landmarks mapped onto the training volumes' mean), with the
            dataset's reference; the model keeps it (``model.standardization``) for evaluation and
            translation. A dataset without landmarks (PNG folders) trains without. Ignored with
            ``resume``: the run's own setting is used.
        verbose: `fit`'s verbosity; "auto" is the progress bar (1) on a terminal and one line per
            epoch (2) otherwise, so that Slurm logs and pipes get no carriage-return redraws.
        callbacks: extra Keras callbacks.
        distribute: "none", "mirrored" (every device of this machine) or "multi-worker"
            (TF_CONFIG on TensorFlow, KERAS_DISTRIBUTION_* on JAX); see `gan_mri.distribute`.
            Only the chief writes ``run_dir``; other workers write to a temporary folder that is
            deleted at the end, and with ``resume`` read the chief's checkpoint from ``run_dir``.

    Returns:
        (model, run): the trained model and its `RunFolder`.

    Raises:
        ValueError: the dataset does not fit the model, the run folder exists (without
            ``resume``/``overwrite``) or is not a run (with ``resume``), bad epochs/batch size,
            or a `distribute` setting this process cannot run (see `resolve_distribution`).
    """
    from gan_mri.distribute import resolve_distribution

    if int(epochs) < 1:
        raise ValueError(f"epochs: expected a positive integer, found {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected a positive integer, found {batch_size}")
    if not isinstance(dataset, PreparedDataset):
        dataset = PreparedDataset.open(dataset)
    if resume:
        source = RunFolder.open(run_dir)
        config = source.load_config()
        info = source.read_run_info()
        seed, flip = info["seed"], info["flip"]
        batch_size, eval_epochs = info["batch_size"], info["eval_epochs"]
        standardization = info.get("standardization")
        preprocessing = info.get("preprocessing")
    else:
        preprocessing = dataset.preprocessing
        standardization = dataset.standardization if standardize else None
        if standardize and standardization is None:
            logger.info("%s has no intensity landmarks (PNG folders, or prepared by an older gan-mri): "
                        "training without standardization", dataset.path)
        standardization = standardization.to_dict() if standardization is not None else None
    check_dataset_fits(config, dataset)
    check_dataset_trains(dataset)
    # Before any other TensorFlow op: a multi-worker strategy configures collectives at start-up.
    distribution = resolve_distribution(distribute, batch_size)
    if not distribution.is_chief:
        # The usual Keras multi-worker pattern: every worker runs the same callbacks (so the same
        # ops), the others into a folder of their own that is deleted afterwards.
        scratch = Path(tempfile.mkdtemp(prefix="gan-mri-worker-"))
        try:
            with distribution.scope():
                model = _fit(config, dataset, RunFolder(scratch), source=RunFolder(Path(run_dir)) if resume else None,
                             epochs=epochs, batch_size=batch_size, eval_epochs=(), max_eval_batches=None,
                             seed=seed, flip=flip, standardization=standardization,
                             preprocessing=preprocessing, verbose=0,
                             callbacks=callbacks, distribution=distribution)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return model, RunFolder(Path(run_dir))
    remap = None
    if resume:
        run = source
    else:
        extra = {}
        if getattr(config, "remap_prior", "none") != "none":
            # Fitted here, on the training split only, so that run.json records it; _fit loads it.
            remap = IntensityRemap.from_dataset(
                dataset, IntensityStandardization.from_dict(standardization) if standardization else None)
            extra["remap_prior"] = remap_prior_record(config, dataset, remap)
        # What "auto" became on this machine and why (gan_mri.precision: cached per machine, software and
        # model shape); _fit builds the model for the same shape, so it reads the same decision.
        precision = choose_precision(config.precision, ModelShape.of(config, batch_size))
        run = create_run(run_dir, config, {
            "dataset": str(Path(dataset.path).resolve()), "epochs": int(epochs),
            "batch_size": int(batch_size), "seed": int(seed), "flip": bool(flip),
            "eval_epochs": sorted(int(e) for e in eval_epochs), "standardization": standardization,
            "preprocessing": preprocessing,
            "precision": precision.precision, "precision_choice": precision.to_dict(), **extra,
        }, overwrite=overwrite)
    with distribution.scope():
        model = _fit(config, dataset, run, source=run if resume else None, epochs=epochs, batch_size=batch_size,
                     eval_epochs=eval_epochs, max_eval_batches=max_eval_batches, seed=seed, flip=flip,
                     standardization=standardization, preprocessing=preprocessing, verbose=verbose,
                     callbacks=callbacks, distribution=distribution, remap=remap)
    if run.history_file.is_file():
        plots.loss_curves(run.history_file, run.figures_dir / "loss_curves.png")
    logger.info("run written to %s", run.root)
    return model, run


def _fit(config, dataset, run: RunFolder, *, source: RunFolder | None, epochs, batch_size, eval_epochs,
         max_eval_batches, seed, flip, standardization, preprocessing, verbose, callbacks,
         distribution, remap: IntensityRemap | None = None) -> keras.Model:
    """Builds, compiles, restores (from ``source``'s checkpoint) and fits the model, writing into
    ``run``; runs under ``distribution``'s scope. Returns the model, saved as ``run``'s model.keras.

    ``remap``: the `IntensityRemap` of the training split under the model's standardization (the
    evaluation's baseline, a remap prior's quantiles and the model's ``training_remap``); None fits it here."""
    keras.utils.set_random_seed(seed)
    model = build_model(config, batch_size=batch_size)
    model.standardization = IntensityStandardization.from_dict(standardization) if standardization else None
    model.preprocessing = preprocessing
    has_prior = getattr(model, "intensity_remap", None) is not None
    if remap is None:
        remap = IntensityRemap.from_dataset(dataset, model.standardization)  # the training split only
    # Kept with the model (model.keras, SavedModel metadata): what the training data teaches without a network,
    # the fair reference of every later evaluation (gan_mri.sim_to_real).
    model.training_remap = remap
    if has_prior:
        # Before the checkpoint is restored (which holds the same quantiles) and before fit checks it.
        model.set_intensity_remap(remap)
    steps = dataset.steps_per_epoch(batch_size)
    # Every family's compile takes total_steps: both decay their learning rates over the planned run.
    model.compile(total_steps=int(epochs) * steps if steps > 0 else None)
    initial_epoch = restore_checkpoint(model, source) if source is not None else 0
    if source is not None:
        logger.info("resuming %s after epoch %d of %d", source.root, initial_epoch, epochs)
        _truncate_history(run.history_file, initial_epoch)

    if initial_epoch < epochs:
        if steps == 0:
            raise ValueError(f"batch_size: {batch_size} is larger than the training set of {dataset.path} "
                             f"({dataset.counts})")
        batches = epoch_datasets(dataset, first_epoch=initial_epoch, epochs=epochs, batch_size=batch_size,
                                 seed=seed, channels=config.channels, flip=flip,
                                 standardization=model.standardization)
        run_callbacks = [StopOnNonFiniteLoss(), *callbacks]
        if eval_epochs:
            test_set = dataset.test_dataset(batch_size=16, channels=config.channels,
                                            standardization=model.standardization)
            # Before the loggers: it adds val_ssim_* to the logs they write.
            run_callbacks.insert(0, EvaluationCallback(test_set, eval_epochs, run.metrics_dir,
                                                       figures_dir=run.figures_dir,
                                                       max_batches=max_eval_batches, baseline=remap))
        run_callbacks += [
            keras.callbacks.CSVLogger(str(run.history_file), append=source is not None),
            keras.callbacks.TensorBoard(log_dir=str(run.logs_dir), write_graph=False),
            # Last: a checkpoint only claims an epoch once every log of it is written.
            EpochCheckpoint(run.checkpoint_dir),
        ]
        # shuffle=False: the batches are already shuffled, by (seed, epoch), in epoch_datasets.
        model.fit(distribution.prepare_dataset(batches), epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, shuffle=False, callbacks=run_callbacks, verbose=_fit_verbosity(verbose))
    save_model_atomic(model, run.model_file)
    return model
