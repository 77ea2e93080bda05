"""The demo: the whole job on the embedded phantom, with no download.

simulate phantom subjects -> prepare a dataset -> train the paper's best preset (narrowed for a
CPU) -> evaluate per epoch -> figures -> export a SavedModel. Every step runs the same library
code a user runs on real data.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Callable

from gan_mri.fileutil import fresh_folder

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DemoSettings:
    """What the demo runs; the defaults took 552 s on 2 idle CPU cores (2026-12-07, docs/results.md).

    Attributes:
        out_dir: folder for everything the demo writes.
        subjects: simulated phantom subjects (a fifth go to the test split).
        image_size: square image size of the prepared slices.
        epochs: training epochs.
        base_width: base width of the networks (64 in the paper; narrow for a CPU).
        batch_size: images per domain per step.
        seed: seed of the phantom, the split, the weights and the data order.
        preset: the model preset to train.
        structure_weight: `UNITConfig.structure_weight` (UNIT presets); 0, no structure term, where
            the library's default is 30: half the demo's subjects are whole-head scans, on which the
            term costs 0.01-0.03 brain SSIM at this budget (seeds 0, 1, 2; docs/training_recipe.md,
            seventh round).
        overwrite: replace an existing ``out_dir``.
    """

    out_dir: Path = Path("gan-mri-demo")
    subjects: int = 20
    image_size: int = 64
    epochs: int = 5
    base_width: int = 16
    batch_size: int = 4
    seed: int = 0
    preset: str = "sa-enc-cl-sn"
    structure_weight: float = 0.0
    overwrite: bool = False


def _noop(message: str) -> None:
    logger.info(message)


def _epoch_line(epoch: int, epochs: int, seconds: float, logs: dict) -> str:
    """One progress line per epoch: the losses, the discriminators' mean accuracy per domain, and
    the brain SSIM of both directions beside the remap baseline's."""
    def mean_accuracy(domain):
        values = [float(v) for k, v in logs.items() if k.startswith(f"d_acc_{domain}_")]
        return sum(values) / len(values) if values else float("nan")

    line = (f"      epoch {epoch}/{epochs} ({seconds:.0f} s): g_loss {float(logs['g_loss']):.2f}, "
            f"d_loss {float(logs['d_loss']):.2f}, D accuracy {mean_accuracy('a'):.2f} / {mean_accuracy('b'):.2f}")
    for direction, name in (("a2b", "T1w->T2w"), ("b2a", "T2w->T1w")):
        if f"val_ssim_brain_{direction}" in logs:
            line += (f"; brain SSIM {name} {float(logs[f'val_ssim_brain_{direction}']):.4f}"
                     f" (baseline {float(logs[f'val_baseline_ssim_brain_{direction}']):.4f})")
    return line


def _progress_callback(epochs: int, progress: Callable[[str], None]):
    """A Keras callback that reports each finished epoch through ``progress``."""
    import keras

    class EpochProgress(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            progress(_epoch_line(epoch + 1, epochs, time.perf_counter() - self._start, logs or {}))

    return EpochProgress()


def run_demo(settings: DemoSettings, progress: Callable[[str], None] = _noop) -> dict:
    """Runs the demo.

    Args:
        settings: the `DemoSettings`.
        progress: called with one line per step (the CLI prints them).

    Returns:
        dict with ``paths`` (name -> path of each output), ``sim_to_real`` (the scores on the real pair,
        :func:`gan_mri.sim_to_real.sim_to_real` without volumes), ``results`` (the final
        `gan_mri.evaluation.evaluate` results), ``seconds`` (step -> wall time).

    Raises:
        ValueError: if ``out_dir`` exists and is not empty and ``overwrite`` is false, or a setting
            is invalid for the model config (``UNITConfig.structure_weight must be >= 0 ...``);
            both before anything is written.
    """
    from gan_mri.config import get_preset
    from gan_mri.data.dataset import prepare
    from gan_mri.data.phantom import simulate

    size = (settings.image_size, settings.image_size)
    config = get_preset(settings.preset, image_shape=size, base_width=settings.base_width)
    if hasattr(config, "structure_weight"):  # UNIT's term; CycleGAN has none. Validated here, before any write.
        config = config.replace(structure_weight=settings.structure_weight)
    out = Path(settings.out_dir)
    fresh_folder(out, "demo folder", settings.overwrite)
    # TensorFlow's import (seconds) after the checks above, so that a bad setting is reported at once.
    from gan_mri.export import export_saved_model
    from gan_mri.training import train

    seconds = {}
    clock = time.perf_counter()

    def step_done(name: str) -> None:
        nonlocal clock
        seconds[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    progress(f"[1/5] simulating {settings.subjects} phantom subjects (T1w, T2w, tissue labels)")
    phantom_dir = out / "phantom"
    simulate(settings.subjects, phantom_dir, seed=settings.seed)
    step_done("simulate")

    progress(f"[2/5] preparing axial slices at {size[0]}x{size[1]}")
    dataset = prepare(phantom_dir, out / "dataset", image_shape=size, seed=settings.seed)
    progress(f"      {dataset.describe()}")
    step_done("prepare")

    run_dir = out / "run"
    progress(f"[3/5] training {settings.preset} (base width {settings.base_width}) for "
             f"{settings.epochs} epochs, evaluating every epoch")
    # One line per epoch instead of Keras's progress bar (its 30-metric lines wrap on any terminal).
    model, run = train(config, dataset, run_dir, epochs=settings.epochs, batch_size=settings.batch_size,
                       eval_epochs=range(1, settings.epochs + 1), seed=settings.seed, verbose=0,
                       callbacks=[_progress_callback(settings.epochs, progress)])
    step_done("train")

    progress("[4/5] evaluating on the test subjects")
    from gan_mri.report import evaluate_to_folder
    from gan_mri.sim_to_real import sim_to_real_line

    results, real = evaluate_to_folder(model, dataset, run.root / "evaluation")
    progress("      " + sim_to_real_line(real))
    step_done("evaluate")

    progress("[5/5] exporting a SavedModel for TF Serving")
    export_dir = export_saved_model(model, run.export_dir / "1")  # TF Serving's <base>/<version>
    step_done("export")

    paths = {
        "phantom": phantom_dir,
        "dataset": dataset.path,
        "run": run.root,
        "history": run.history_file,
        "tensorboard": run.logs_dir,
        "metrics per epoch": run.metrics_dir / "metrics.csv",
        "ssim table": run.metrics_dir / "ssim_table.md",
        "translation grid": run.root / "evaluation" / "translation_grid.png",
        "sim-to-real": run.root / "evaluation" / "sim_to_real.png",
        "loss curves": run.figures_dir / "loss_curves.png",
        "ssim curves": run.figures_dir / "ssim_curves.png",
        "savedmodel": export_dir,
    }
    return {"paths": paths, "results": results, "sim_to_real": real, "seconds": seconds}
