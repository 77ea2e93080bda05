"""Evaluate a trained model on a prepared dataset into a folder: metrics and figures."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from gan_mri import plots
from gan_mri.baseline import IntensityRemap
from gan_mri.evaluation import evaluate, translation_examples
from gan_mri.results import save_results
from gan_mri.training import check_dataset_fits

logger = logging.getLogger(__name__)


def evaluate_to_folder(model, dataset, out_dir, *, max_batches: int | None = None,
                       overwrite: bool = False, batch_size: int = 16) -> dict:
    """Evaluates ``model`` on the test split of ``dataset`` and writes the results.

    Writes ``metrics.json`` and ``metrics.csv`` (per direction: SSIM, PSNR, MAE, whole image
    and brain; tissue Dice; the same image metrics of the no-learning intensity remap fitted on
    the dataset's training split, as ``baseline_*``) and ``translation_grid.png`` (input, translation,
    self-reconstruction, ground truth, error map) into ``out_dir``.

    Args:
        model: a trained gan-mri model.
        dataset: a `gan_mri.data.dataset.PreparedDataset`.
        out_dir: the folder to write (created).
        max_batches: limit on test batches.
        overwrite: replace an existing non-empty ``out_dir``.
        batch_size: test slices per batch.

    Returns:
        The `gan_mri.evaluation.evaluate` results.

    Raises:
        ValueError: the dataset's image shape does not fit the model, or ``out_dir`` exists.
    """
    out = Path(out_dir)
    check_dataset_fits(model.config, dataset)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"evaluation folder {out} already exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    # The model's own standardization (None for a model trained without), on this dataset's volumes.
    standardization = getattr(model, "standardization", None)
    test_set = dataset.test_dataset(batch_size=batch_size, channels=model.channels, standardization=standardization)
    results = evaluate(model, test_set, max_batches=max_batches,
                       baseline=IntensityRemap.from_dataset(dataset, standardization))
    save_results(results, out / "metrics.csv")
    save_results(results, out / "metrics.json")
    plots.translation_grid(translation_examples(model, test_set), out / "translation_grid.png")
    logger.info("evaluation written to %s", out)
    return results
