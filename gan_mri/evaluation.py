"""Evaluate a translation model on a paired test set, per direction and per epoch.

The pure metric math lives in :mod:`gan_mri.metrics` and the result files and tables in
:mod:`gan_mri.results`; this module runs a model over a test set (:func:`evaluate`), picks
examples for figures (:func:`translation_examples`) and evaluates during training at chosen
epochs (:class:`EvaluationCallback`), writing metrics.csv and the paper's Table 7(b).

A test set yields dicts with ``"a"`` (T1w) and ``"b"`` (T2w) batches in [-1, 1],
``"brain_mask"`` (bool), ``"subject"``, ``"slice"`` and, when tissue labels exist,
``"labels"`` (or ``"labels_a"`` / ``"labels_b"``; 0 background, 1 CSF, 2 GM, 3 WM). Batches may
also hold ``"a_input"`` / ``"b_input"``, the intensity-standardized slices the model translates
(`gan_mri.data.PreparedDataset.test_dataset` with a standardization); ``"a"`` and ``"b"`` are then
only the ground truth.
"""

import logging
from pathlib import Path

import keras
import numpy as np

from gan_mri import DIRECTIONS
from gan_mri import metrics
from gan_mri.results import (
    BASELINE_PREFIX,
    METRIC_NAMES,
    atomic_write_text,
    read_metrics_csv,
    results_rows,
    rows_to_csv_text,
    write_ssim_table,
)

logger = logging.getLogger(__name__)

# Per direction: (source key, target key, source domain, target domain).
DIRECTION_KEYS = {"A2B": ("a", "b", "A", "B"), "B2A": ("b", "a", "B", "A")}
REQUIRED_KEYS = ("a", "b", "brain_mask")


def _to_numpy(value):
    """Tensors, numpy arrays and lists -> numpy array."""
    if hasattr(value, "numpy"):
        return value.numpy()
    return np.asarray(value)


def _check_directions(directions):
    directions = tuple(directions)
    unknown = [d for d in directions if d not in DIRECTION_KEYS]
    if unknown or not directions:
        raise ValueError(f"directions: expected a non-empty subset of {DIRECTIONS}, found {directions}")
    return directions


def _iterate_batches(test_dataset, max_batches):
    """Yield numpy dicts from a tf.data.Dataset or any iterable of dict batches."""
    iterator = (
        test_dataset.as_numpy_iterator() if hasattr(test_dataset, "as_numpy_iterator") else test_dataset
    )
    for index, batch in enumerate(iterator):
        if max_batches is not None and index >= max_batches:
            return
        if not isinstance(batch, dict):
            raise ValueError(
                f"test_dataset: expected dict batches with keys {REQUIRED_KEYS}, found {type(batch).__name__}"
            )
        missing = [key for key in REQUIRED_KEYS if key not in batch]
        if missing:
            raise ValueError(
                f"test_dataset: expected keys {REQUIRED_KEYS} in each batch, missing {missing} "
                f"(found {sorted(batch)})"
            )
        yield {key: _to_numpy(value) for key, value in batch.items()}


def _labels_for(batch, domain):
    """Ground-truth tissue labels for images of ``domain``, or None."""
    for key in (f"labels_{domain.lower()}", "labels"):
        if key in batch:
            labels = np.asarray(batch[key]).astype(np.int32)
            return labels[..., 0] if labels.ndim == 4 else labels
    return None


class _DirectionAccumulator:
    """Collects per-slice metrics and pooled Dice counts for one direction."""

    def __init__(self):
        self.per_slice = {}
        self.overlap = None
        self.label_overlap = None

    def add_values(self, values):
        for name, array in values.items():
            self.per_slice.setdefault(name, []).append(np.asarray(array, dtype=np.float64))

    @staticmethod
    def _add_counts(total, counts):
        if total is None:
            return counts
        return {tissue: total[tissue] + counts[tissue] for tissue in counts}

    def add_overlap(self, counts, with_labels=False):
        if with_labels:
            self.label_overlap = self._add_counts(self.label_overlap, counts)
        else:
            self.overlap = self._add_counts(self.overlap, counts)

    def summary(self):
        result = {}
        for name, chunks in self.per_slice.items():
            values = np.concatenate(chunks)
            finite = values[np.isfinite(values)]
            result[name] = float(finite.mean()) if finite.size else float("nan")
        if self.overlap is not None:
            result.update(metrics.dice_from_overlap(self.overlap))
        if self.label_overlap is not None:
            dice = metrics.dice_from_overlap(self.label_overlap)
            result.update({f"label_{name}": value for name, value in dice.items()})
        result["n_slices"] = int(sum(len(chunk) for chunk in self.per_slice.get("ssim", [])))
        return result


def _model_input(batch, key):
    """What the model translates: the standardized slices when the batch has them, else the slices."""
    return batch.get(f"{key}_input", batch[key])


def _score_direction(model, batch, direction, accumulator, reconstruction, structure, baseline=None):
    """Translate one batch in one direction and add its metrics to ``accumulator``."""
    source_key, target_key, source_domain, target_domain = DIRECTION_KEYS[direction]
    source = _model_input(batch, source_key)
    translated = metrics.to_unit_range(_to_numpy(model.translate(source, direction)))
    truth = metrics.to_unit_range(batch[target_key])
    mask = np.asarray(batch["brain_mask"]).astype(bool)
    if translated.shape != truth.shape:
        raise ValueError(
            f"model.translate({direction}): expected output shape {truth.shape}, found {translated.shape}"
        )
    values = metrics.image_metrics(translated, truth, mask)
    if baseline is not None:
        remapped = metrics.to_unit_range(baseline.translate(source, direction, mask))
        values.update({f"{BASELINE_PREFIX}{name}": value
                       for name, value in metrics.image_metrics(remapped, truth, mask).items()})
    if reconstruction:
        recon = metrics.to_unit_range(_to_numpy(model.reconstruct(source, source_domain)))
        original = metrics.to_unit_range(source)
        values["recon_ssim"] = metrics.ssim(recon, original)
        values["recon_mae"] = metrics.mae(recon, original)
    accumulator.add_values(values)
    if not structure:
        return
    reference = metrics.segment_tissues(truth, mask, target_domain)
    predicted = metrics.segment_tissues(translated, mask, target_domain)
    # A slice whose ground truth cannot be segmented says nothing about the translation;
    # a translation that cannot be segmented (e.g. flat) keeps its zero labels and is penalised.
    usable = reference.any(axis=(1, 2))
    if usable.any():
        accumulator.add_overlap(metrics.tissue_overlap(predicted[usable], reference[usable]))
    labels = _labels_for(batch, target_domain)
    if labels is not None:
        accumulator.add_overlap(metrics.tissue_overlap(predicted, labels), with_labels=True)


def evaluate(
    model,
    test_dataset,
    directions=DIRECTIONS,
    max_batches=None,
    reconstruction=True,
    structure=True,
    baseline=None,
):
    """Average translation metrics over a paired test set, per direction.

    For each batch and direction, ``model.translate`` maps the source images, model
    outputs and ground truth are mapped from [-1, 1] to [0, 1], and per-slice metrics
    are computed (see :func:`gan_mri.metrics.image_metrics`) and averaged over all slices
    (NaN slices, e.g. empty masks, are skipped). Structure fidelity: GM/WM/CSF are
    segmented from the translation and from the ground truth with the same three-class
    Otsu method and compared by Dice pooled over the test set (``dice_*``); with tissue
    labels in the batches, the translation's segmentation is also compared with them
    (``label_dice_*``). ``recon_ssim`` / ``recon_mae`` score ``model.reconstruct``
    (the self-reconstruction through the shared latent space) against the input. With a
    ``baseline`` (:class:`gan_mri.baseline.IntensityRemap`, fitted on the training split), its
    translations of the same slices are scored too, as ``baseline_<metric>`` (``baseline_ssim``,
    ``baseline_ssim_brain``, ...), so every result says whether the model beats a lookup table.

    Args:
        model: an object with ``translate(x, direction)`` and ``reconstruct(x, domain)``
            (e.g. :class:`gan_mri.models.unit.UNIT`).
        test_dataset: tf.data.Dataset or iterable of dict batches (see module docstring).
        directions: subset of ``("A2B", "B2A")``.
        max_batches: evaluate at most this many batches (None: all).
        reconstruction: also score self-reconstructions.
        structure: also compute the tissue Dice scores.
        baseline: optional no-learning reference with ``translate(x, direction, brain_mask)``.

    Returns:
        dict direction -> dict metric name -> float, e.g.
        ``{"A2B": {"ssim": 0.81, "ssim_brain": 0.74, ..., "n_slices": 120}, "B2A": {...}}``.

    Raises:
        ValueError: unknown direction, batches missing keys, an empty test set, or model
            outputs whose shape differs from the ground truth.
    """
    directions = _check_directions(directions)
    accumulators = {direction: _DirectionAccumulator() for direction in directions}
    n_batches = 0
    for batch in _iterate_batches(test_dataset, max_batches):
        for direction in directions:
            _score_direction(model, batch, direction, accumulators[direction], reconstruction, structure, baseline)
        n_batches += 1
    if n_batches == 0:
        raise ValueError("test_dataset: expected at least one batch, found none")
    results = {direction: accumulators[direction].summary() for direction in directions}
    for direction, values in results.items():
        logger.info(
            "%s: SSIM %.4f (brain %.4f), PSNR %.2f dB, MAE %.4f over %d slices%s",
            direction,
            values["ssim"],
            values["ssim_brain"],
            values["psnr"],
            values["mae"],
            values["n_slices"],
            f"; remap baseline brain SSIM {values['baseline_ssim_brain']:.4f}" if baseline is not None else "",
        )
    return results


def translation_examples(model, test_dataset, n_examples=4, directions=DIRECTIONS):
    """Collect images for a translation grid figure (see :func:`gan_mri.plots.translation_grid`).

    Args:
        model: an object with ``translate`` and ``reconstruct``.
        test_dataset: tf.data.Dataset or iterable of dict batches.
        n_examples: number of slices per direction, evenly spaced over the test set.
        directions: subset of ``("A2B", "B2A")``.

    Returns:
        dict direction -> dict with ``input``, ``translation``, ``reconstruction``,
        ``truth``: float arrays (n, H, W, C) in [0, 1].

    Raises:
        ValueError: unknown direction, n_examples < 1, or an empty test set.
    """
    directions = _check_directions(directions)
    if n_examples < 1:
        raise ValueError(f"n_examples: expected >= 1, found {n_examples}")
    # Evenly spaced over the test set (the first slices of a volume are all cerebellum), so
    # the figure shows the range of anatomy; two passes keep only the chosen slices in memory.
    total = sum(len(batch["a"]) for batch in _iterate_batches(test_dataset, None))
    if total == 0:
        raise ValueError("test_dataset: expected at least one batch, found none")
    wanted = np.unique(np.linspace(0, total - 1, n_examples + 2)[1:-1].round().astype(int))
    sources = {"a": [], "b": [], "a_input": [], "b_input": []}
    start = 0
    for batch in _iterate_batches(test_dataset, None):
        rows = wanted[(wanted >= start) & (wanted < start + len(batch["a"]))] - start
        for key in ("a", "b"):
            sources[key].append(np.asarray(batch[key])[rows])
            sources[f"{key}_input"].append(np.asarray(_model_input(batch, key))[rows])
        start += len(batch["a"])
    images = {key: np.concatenate(chunks) for key, chunks in sources.items()}
    examples = {}
    for direction in directions:
        source_key, target_key, source_domain, _ = DIRECTION_KEYS[direction]
        source = images[f"{source_key}_input"]
        examples[direction] = {
            "input": metrics.to_unit_range(source),
            "translation": metrics.to_unit_range(_to_numpy(model.translate(source, direction))),
            "reconstruction": metrics.to_unit_range(_to_numpy(model.reconstruct(source, source_domain))),
            "truth": metrics.to_unit_range(images[target_key]),
        }
    return examples


DEFAULT_LOG_METRICS = ("ssim", "ssim_brain", "psnr", "psnr_brain", "mae", "mae_brain", "baseline_ssim_brain")


class EvaluationCallback(keras.callbacks.Callback):
    """Evaluate on the paired test set at chosen epochs during ``fit``.

    At each chosen (1-based) epoch, and at the last epoch of ``fit`` when
    ``evaluate_last``, runs :func:`evaluate` on ``self.model`` and then:

    - merges one row per direction into ``out_dir/metrics.csv`` (columns ``epoch``,
      ``direction``, metrics; rows already there, e.g. from before a resume, are kept and
      an epoch evaluated again replaces its rows);
    - rewrites the Table 7(b) files ``out_dir/ssim_table.csv`` and ``ssim_table.md``;
    - with ``save_figures``, writes ``translation_epoch_XXX.png`` and ``ssim_curves.png``
      into ``figures_dir`` (default ``out_dir/figures``);
    - adds ``val_<metric>_<direction>`` (e.g. ``val_ssim_a2b``, ``val_ssim_brain_b2a``)
      for the metrics in ``log_metrics`` to the epoch ``logs``, so History, CSVLogger,
      TensorBoard and ModelCheckpoint see them. Place this callback before those in the
      callback list (Keras passes one logs dict through the list in order).

    CSVLogger fixes its columns at the first epoch, so with ``fill_missing=True`` (default)
    the keys are logged every epoch, as NaN where no evaluation ran. Use
    ``fill_missing=False`` to log them only at evaluated epochs (e.g. for EarlyStopping,
    which treats NaN as no improvement).

    Args:
        test_dataset: paired test set (tf.data.Dataset or iterable of dict batches).
        epochs: 1-based epoch numbers to evaluate at, e.g. ``(1, 25, 50, 75, 100)``.
        out_dir: folder for metrics.csv, the SSIM table and figures.
        evaluate_last: also evaluate after the last epoch of ``fit``.
        directions: subset of ``("A2B", "B2A")``.
        max_batches: limit on test batches per evaluation (None: all).
        log_metrics: metric names added to the logs.
        fill_missing: log NaN for the metrics at epochs without evaluation.
        save_figures: write the translation grid and SSIM curve figures.
        n_examples: slices per direction in the translation grid.
        figures_dir: folder for the figures (default ``out_dir/figures``).
        baseline: optional no-learning reference (:class:`gan_mri.baseline.IntensityRemap`) scored
            beside the model at every evaluation (``baseline_*`` columns and log entries).

    Raises:
        ValueError: ``epochs`` holds something other than positive integers, or an
            unknown direction / metric name.
    """

    def __init__(
        self,
        test_dataset,
        epochs,
        out_dir,
        evaluate_last=True,
        directions=DIRECTIONS,
        max_batches=None,
        log_metrics=DEFAULT_LOG_METRICS,
        fill_missing=True,
        save_figures=True,
        n_examples=4,
        figures_dir=None,
        baseline=None,
    ):
        super().__init__()
        epochs = list(epochs)
        if not all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) and e >= 1 for e in epochs):
            raise ValueError(f"epochs: expected positive 1-based integers, found {epochs}")
        unknown = [name for name in log_metrics if name not in METRIC_NAMES]
        if unknown:
            raise ValueError(f"log_metrics: expected names from {METRIC_NAMES}, found unknown {unknown}")
        self.test_dataset = test_dataset
        self.epochs = sorted({int(e) for e in epochs})
        self.out_dir = Path(out_dir)
        self.evaluate_last = evaluate_last
        self.directions = _check_directions(directions)
        self.max_batches = max_batches
        self.log_metrics = tuple(log_metrics)
        self.fill_missing = fill_missing
        self.save_figures = save_figures
        self.n_examples = n_examples
        self.figures_dir = Path(figures_dir) if figures_dir is not None else self.out_dir / "figures"
        self.metrics_path = self.out_dir / "metrics.csv"
        self.baseline = baseline
        self.history = {}

    def _should_evaluate(self, epoch_number):
        last = (self.params or {}).get("epochs")
        return epoch_number in self.epochs or (self.evaluate_last and epoch_number == last)

    def on_epoch_end(self, epoch, logs=None):
        """Evaluate if ``epoch + 1`` was chosen; write files and add metrics to ``logs``."""
        logs = logs if logs is not None else {}
        epoch_number = epoch + 1
        results = self.evaluate_now(epoch_number) if self._should_evaluate(epoch_number) else None
        if results is None and not self.fill_missing:
            return
        for direction in self.directions:
            for name in self.log_metrics:
                value = float("nan") if results is None else results[direction].get(name, float("nan"))
                logs[f"val_{name}_{direction.lower()}"] = value

    def evaluate_now(self, epoch_number):
        """Evaluate ``self.model`` now, record it as ``epoch_number`` and write the files.

        Args:
            epoch_number: 1-based epoch recorded with the results.

        Returns:
            the :func:`evaluate` results.
        """
        results = evaluate(self.model, self.test_dataset, self.directions, self.max_batches,
                           baseline=self.baseline)
        self.history[epoch_number] = results
        rows = read_metrics_csv(self.metrics_path) if self.metrics_path.is_file() else []
        rows = [row for row in rows if row["epoch"] != epoch_number]
        rows = sorted(rows + results_rows(results, epoch_number), key=lambda r: (r["epoch"], r["direction"]))
        atomic_write_text(self.metrics_path, rows_to_csv_text(rows))
        write_ssim_table(rows, self.out_dir)
        if self.save_figures:
            from gan_mri import plots  # plots pulls in matplotlib; only load it when drawing

            examples = translation_examples(self.model, self.test_dataset, self.n_examples, self.directions)
            plots.translation_grid(examples, self.figures_dir / f"translation_epoch_{epoch_number:03d}.png")
            plots.ssim_curves(self.metrics_path, self.figures_dir / "ssim_curves.png")
        logger.info("epoch %d: evaluation written to %s", epoch_number, self.out_dir)
        return results
