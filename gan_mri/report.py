"""Evaluate a trained model on a prepared dataset into a folder: metrics and figures."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gan_mri import plots
from gan_mri.baseline import IntensityRemap
from gan_mri.data.preprocessing import check_preprocessing
from gan_mri.evaluation import evaluate, translation_examples
from gan_mri.results import atomic_write_text, save_results
from gan_mri.sim_to_real import scores_only, sim_to_real
from gan_mri.training import check_dataset_fits
from gan_mri.volume_metrics import SLICE_PROTOCOL, evaluate_volumes, without_volumes
from gan_mri.fileutil import fresh_folder

logger = logging.getLogger(__name__)


def save_sim_to_real(results: dict, out_dir) -> dict:
    """Writes ``sim_to_real.json`` (the scores) and ``sim_to_real.png`` (:func:`gan_mri.plots.sim_to_real_grid`)
    of `gan_mri.sim_to_real.sim_to_real`'s ``results`` into ``out_dir``; returns name -> path.

    Here, not in `gan_mri.sim_to_real`, so that the scores do not call the figures (plots reads
    `gan_mri.sim_to_real.scale_to_unit`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = scores_only(results)
    atomic_write_text(out / "sim_to_real.json", json.dumps(scores, indent=2, sort_keys=True) + "\n")
    figure = plots.sim_to_real_grid(results["volumes"], out / "sim_to_real.png")
    return {"sim-to-real scores": out / "sim_to_real.json", "sim-to-real figure": figure}


def evaluate_to_folder(model, dataset, out_dir, *, max_batches: int | None = None,
                       overwrite: bool = False, batch_size: int = 16, real: bool = True) -> tuple[dict, dict | None]:
    """Evaluates ``model`` on the test split of ``dataset`` and writes the results.

    Writes ``metrics.json`` and ``metrics.csv`` (per direction: SSIM, PSNR, MAE, whole image
    and brain; tissue Dice; the same image metrics of the no-learning intensity remap fitted on
    the dataset's training split, as ``baseline_*``, unless the dataset is test-only) and
    ``translation_grid.png`` (input, translation, self-reconstruction, ground truth, error map) into
    ``out_dir``, ``metrics.json`` with its protocol; ``volumes.json`` (each test subject translated as a
    volume: 3D brain SSIM, PSNR, MAE, SSIM of axial, coronal and sagittal planes, neighbouring-slice
    ratio; lesion fidelity where the test subjects have lesion labels; :mod:`gan_mri.volume_metrics`),
    ``volume_views.png`` and, with lesions, ``lesion_closeups.png``; with ``real``, also the model's scores on the real ICBM 2009c pair beside its
    references, ``sim_to_real.json`` and ``sim_to_real.png`` (:mod:`gan_mri.sim_to_real`).

    Args:
        model: a trained gan-mri model.
        dataset: a `gan_mri.data.dataset.PreparedDataset`.
        out_dir: the folder to write (created).
        max_batches: limit on test batches.
        overwrite: replace an existing non-empty ``out_dir``.
        batch_size: test slices per batch.
        real: also score the model on the real pair (about half a minute at 64 px on 2 CPU cores, plus
            the registration that finds the whole-head scan's brain, once per process).

    Returns:
        ``(results, real_scores)``: the `gan_mri.evaluation.evaluate` results, and the
        `gan_mri.sim_to_real.sim_to_real` scores without their volumes (``None`` without ``real``).

    Raises:
        ValueError: the dataset's image shape does not fit the model, its slices were made otherwise
            than the model's training slices (`gan_mri.data.preprocessing`), or ``out_dir`` exists.
    """
    out = Path(out_dir)
    check_dataset_fits(model.config, dataset)
    check_preprocessing(model, dataset)
    fresh_folder(out, "evaluation folder", overwrite)
    # The model's own standardization (None for a model trained without), on this dataset's volumes.
    standardization = getattr(model, "standardization", None)
    test_set = dataset.test_dataset(batch_size=batch_size, channels=model.channels, standardization=standardization)
    # The remap baseline learns from the training slices; a test-only dataset has none.
    trainable = dataset.counts["train_a"] > 0 and dataset.counts["train_b"] > 0
    baseline = IntensityRemap.from_dataset(dataset, standardization) if trainable else None
    results = evaluate(model, test_set, max_batches=max_batches, baseline=baseline)
    save_results(results, out / "metrics.csv")
    save_results({direction: {**values, "protocol": SLICE_PROTOCOL} for direction, values in results.items()},
                 out / "metrics.json")
    plots.translation_grid(translation_examples(model, test_set), out / "translation_grid.png")
    volumes = evaluate_volumes(model, dataset, standardization, batch_size=batch_size, keep_volumes=True)
    atomic_write_text(out / "volumes.json", json.dumps(without_volumes(volumes), indent=2, sort_keys=True) + "\n")
    plots.volume_views(volumes, out / "volume_views.png")
    if dataset.lesion_subjects:
        plots.lesion_closeups(volumes, out / "lesion_closeups.png")
    real_scores = None
    if real:
        training_remap = getattr(model, "training_remap", None)
        if training_remap is None and baseline is not None:
            # A model trained before it kept its own: the remap of this dataset's training split stands in.
            logger.info("sim-to-real: the fair reference is the remap of %s's training split (the model keeps none)",
                        dataset.path)
            training_remap = baseline
        scores = sim_to_real(model, batch_size=batch_size, training_remap=training_remap)
        save_sim_to_real(scores, out)
        real_scores = scores_only(scores)
    logger.info("evaluation written to %s", out)
    return results, real_scores
