"""Figures: translation grids (the paper's Figs. 5 and 8), loss curves (Fig. 6), SSIM per epoch.

Everything draws with matplotlib's non-interactive Agg backend into PNG files and
returns the path written; nothing is shown on screen. Figure sizes are fixed by the
layout (see each function), so the PNG's pixel size is ``figsize * dpi``.
"""

import csv
import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and in tests; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gan_mri.results import BASELINE_PREFIX  # noqa: E402

logger = logging.getLogger(__name__)

GRID_COLUMNS = ("input", "translation", "reconstruction", "truth")
GRID_TITLES = {"input": "input", "translation": "translation", "reconstruction": "self-reconstruction", "truth": "ground truth"}
DIRECTION_TITLES = {"A2B": "T1w -> T2w", "B2A": "T2w -> T1w"}
# The paper's Table 7 names SSIM by the output contrast: "T2" scores A2B, "T1" scores B2A.
SSIM_LABELS = {"A2B": "T2 output (A2B)", "B2A": "T1 output (B2A)"}
CELL_INCHES = 2.0
PANEL_INCHES = (4.0, 3.0)
PANELS_PER_ROW = 3


def _save(figure, path, dpi):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    logger.info("wrote figure %s", path)
    return path


def _display(image):
    """(H, W, C) in [0, 1] -> what imshow expects: 2-D for gray, RGB for 3 channels."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        return image[..., 0]
    return image


def translation_grid(examples, path, dpi=100):
    """Grid of translations: per direction and slice, one row of five images.

    Columns: input, translation, self-reconstruction, ground truth, and the error map
    ``|translation - ground truth|`` (channel mean; one colour scale for the whole figure)
    with a colorbar. Rows: the slices of
    the first direction, then those of the second. Size: ``5 * 2`` by ``rows * 2`` inches.

    Args:
        examples: dict direction ("A2B"/"B2A") -> dict with ``input``, ``translation``,
            ``reconstruction``, ``truth``: arrays (n, H, W, C) or (n, H, W) in [0, 1]
            (as returned by :func:`gan_mri.evaluation.translation_examples`).
        path: PNG file to write (parents are created).
        dpi: dots per inch.

    Returns:
        pathlib.Path of the PNG.

    Raises:
        ValueError: no directions, a missing image key, or images of different shapes.
    """
    if not examples:
        raise ValueError("examples: expected at least one direction, found none")
    rows = []
    for direction, images in examples.items():
        missing = [key for key in GRID_COLUMNS if key not in images]
        if missing:
            raise ValueError(f"examples[{direction!r}]: expected keys {GRID_COLUMNS}, missing {missing}")
        arrays = {key: np.asarray(images[key], dtype=np.float32) for key in GRID_COLUMNS}
        arrays = {key: a[..., None] if a.ndim == 3 else a for key, a in arrays.items()}
        shapes = {key: a.shape for key, a in arrays.items()}
        if len(set(shapes.values())) != 1 or arrays["input"].ndim != 4:
            raise ValueError(f"examples[{direction!r}]: expected equal (n, H, W, C) shapes, found {shapes}")
        rows.extend((direction, index, arrays) for index in range(arrays["input"].shape[0]))
    if not rows:
        raise ValueError("examples: expected at least one slice, found none")
    errors = [np.abs(a["translation"][i] - a["truth"][i]).mean(axis=-1) for _, i, a in rows]
    # One error scale for the whole figure, so rows can be compared by colour.
    error_max = max(max(float(error.max()) for error in errors), 1e-6)
    n_columns = len(GRID_COLUMNS) + 1
    figure, axes = plt.subplots(
        len(rows),
        n_columns,
        figsize=(n_columns * CELL_INCHES, len(rows) * CELL_INCHES),
        squeeze=False,
        layout="constrained",
    )
    for row_axes, (direction, index, arrays), error in zip(axes, rows, errors):
        for axis, key in zip(row_axes, GRID_COLUMNS):
            axis.imshow(_display(arrays[key][index]), cmap="gray", vmin=0.0, vmax=1.0)
            axis.set_title(GRID_TITLES[key], fontsize=8)
        image = row_axes[-1].imshow(error, cmap="magma", vmin=0.0, vmax=error_max)
        row_axes[-1].set_title("|error|", fontsize=8)
        figure.colorbar(image, ax=row_axes[-1], shrink=0.8)
        row_axes[0].set_ylabel(f"{DIRECTION_TITLES.get(direction, direction)} #{index}", fontsize=8)
        for axis in row_axes:
            axis.set_xticks([])
            axis.set_yticks([])
    return _save(figure, path, dpi)


def _read_csv_columns(path):
    """CSV file -> dict column -> list of cell strings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        columns = {name: [] for name in reader.fieldnames or []}
        for row in reader:
            for name in columns:
                columns[name].append(row[name])
    return columns


def _to_float(values, column):
    """Cells -> float array; empty or "NA" cells (Keras CSVLogger) become NaN."""
    result = []
    for value in values:
        if value is None or value == "" or value == "NA":
            result.append(math.nan)
            continue
        try:
            result.append(float(value))
        except (TypeError, ValueError):
            raise ValueError(f"column {column!r}: expected numbers, found {value!r}") from None
    return np.asarray(result, dtype=np.float64)


ACCURACY_PREFIX = "d_acc_"
"""History columns of the discriminators' accuracy per domain and scale (``d_acc_a_s0``, ...)."""


def loss_curves(history, path, keys=None, dpi=100):
    """Loss per epoch, one panel per loss (train solid, ``val_`` counterpart dashed), and the
    discriminators' accuracy.

    When the history has ``d_acc_<domain>_s<scale>`` columns, a last panel draws them all with
    the chance level 0.5: a discriminator whose lines stay on it is not playing the game.
    Panels are laid out three per row, each 4 x 3 inches, so the PNG is
    ``min(n, 3) * 4 * dpi`` by ``ceil(n / 3) * 3 * dpi`` pixels for n panels.

    Args:
        history: a history CSV (Keras CSVLogger: an ``epoch`` column, 0-based, and one column
            per metric) or a dict metric -> list of per-epoch values (``History.history``).
        path: PNG file to write.
        keys: losses to draw; default: every column whose name ends in ``loss`` and does not
            start with ``val_``.
        dpi: dots per inch.

    Returns:
        pathlib.Path of the PNG.

    Raises:
        FileNotFoundError: the CSV does not exist.
        ValueError: the history is empty, has no loss column, or lacks a requested key
            (the message names the column).
    """
    if isinstance(history, (str, Path)):
        columns = _read_csv_columns(history)
        source = str(history)
    elif isinstance(history, dict):
        columns = {name: list(values) for name, values in history.items()}
        source = "history"
    else:
        raise ValueError(f"history: expected a CSV path or a dict, found {type(history).__name__}")
    lengths = {len(values) for values in columns.values()}
    if not columns or lengths == {0}:
        raise ValueError(f"{source}: expected at least one epoch of history, found none")
    if keys is None:
        keys = [name for name in columns if name.endswith("loss") and not name.startswith("val_")]
        if not keys:
            raise ValueError(f"{source}: expected a column ending in 'loss', found columns {sorted(columns)}")
    for key in keys:
        if key not in columns:
            raise ValueError(f"{source}: expected a column {key!r}, found columns {sorted(columns)}")
    accuracy = sorted(name for name in columns if name.startswith(ACCURACY_PREFIX))
    n_epochs = max(lengths)
    # CSVLogger stores 0-based epochs; figures count from 1 as the paper does.
    epochs = _to_float(columns["epoch"], "epoch") + 1 if "epoch" in columns else np.arange(1, n_epochs + 1)
    n_panels = len(keys) + bool(accuracy)
    n_columns = min(n_panels, PANELS_PER_ROW)
    n_rows = math.ceil(n_panels / PANELS_PER_ROW)
    figure, axes = plt.subplots(
        n_rows,
        n_columns,
        figsize=(n_columns * PANEL_INCHES[0], n_rows * PANEL_INCHES[1]),
        squeeze=False,
        layout="constrained",
    )
    for axis in axes.flat[n_panels:]:
        axis.set_visible(False)
    for axis, key in zip(axes.flat, keys):
        axis.plot(epochs, _to_float(columns[key], key), marker=".", label="train")
        if f"val_{key}" in columns:
            axis.plot(epochs, _to_float(columns[f"val_{key}"], f"val_{key}"), "--", marker=".", label="test")
            axis.legend(fontsize=7)
        axis.set_title(key, fontsize=9)
        axis.set_xlabel("epoch")
    if accuracy:
        axis = axes.flat[len(keys)]
        for name in accuracy:
            # Domain A solid, B dashed; one colour per scale.
            style = "-" if name.startswith(f"{ACCURACY_PREFIX}a") else "--"
            axis.plot(epochs, _to_float(columns[name], name), style, marker=".",
                      label=name.removeprefix(ACCURACY_PREFIX))
        axis.axhline(0.5, color="grey", linewidth=1, linestyle=":", label="chance")
        axis.set_ylim(0.4, 1.02)
        axis.set_title("discriminator accuracy (domain_scale)", fontsize=9)
        axis.set_xlabel("epoch")
        axis.legend(fontsize=6, ncol=2)
    return _save(figure, path, dpi)


def ssim_curves(metrics_csv, path, metrics=("ssim", "ssim_brain"), dpi=100):
    """SSIM per epoch for each direction, one panel per metric (4 x 3 inches each).

    Lines are labelled by the output contrast as in the paper's Table 7:
    "T2 output (A2B)" and "T1 output (B2A)". When the CSV has ``baseline_<metric>`` columns, the
    no-learning intensity remap is drawn as a dotted level per direction.

    Args:
        metrics_csv: CSV with ``epoch``, ``direction`` and metric columns (as written by
            :class:`gan_mri.evaluation.EvaluationCallback`).
        path: PNG file to write.
        metrics: metric columns to draw, one panel each.
        dpi: dots per inch.

    Returns:
        pathlib.Path of the PNG.

    Raises:
        FileNotFoundError: the CSV does not exist.
        ValueError: no rows, or a missing ``epoch``, ``direction`` or metric column
            (the message names the column).
    """
    columns = _read_csv_columns(metrics_csv)
    for key in ("epoch", "direction", *metrics):
        if key not in columns:
            raise ValueError(f"{metrics_csv}: expected a column {key!r}, found columns {sorted(columns)}")
    if not columns["epoch"]:
        raise ValueError(f"{metrics_csv}: expected at least one row, found none")
    if not metrics:
        raise ValueError("metrics: expected at least one metric column, found none")
    epochs = _to_float(columns["epoch"], "epoch")
    directions = np.asarray(columns["direction"])
    figure, axes = plt.subplots(
        1,
        len(metrics),
        figsize=(len(metrics) * PANEL_INCHES[0], PANEL_INCHES[1]),
        squeeze=False,
        layout="constrained",
    )
    for axis, metric in zip(axes[0], metrics):
        values = _to_float(columns[metric], metric)
        baseline_key = BASELINE_PREFIX + metric
        for index, direction in enumerate(sorted(set(directions))):
            chosen = directions == direction
            order = np.argsort(epochs[chosen])
            colour = f"C{index}"
            axis.plot(
                epochs[chosen][order],
                values[chosen][order],
                marker="o",
                color=colour,
                label=SSIM_LABELS.get(direction, direction),
            )
            if baseline_key in columns:
                # The remap does not train: one level per direction (from the latest evaluation).
                level = _to_float(columns[baseline_key], baseline_key)[chosen][order][-1]
                axis.axhline(level, color=colour, linestyle=":", linewidth=1.2,
                             label=f"remap baseline ({direction})")
        axis.set_title(metric, fontsize=9)
        axis.set_xlabel("epoch")
        axis.legend(fontsize=7)
    return _save(figure, path, dpi)


SIM_TO_REAL_COLUMNS = (("source", "input"), ("model", "translation"), ("truth", "real target"))
SIM_TO_REAL_ROWS = (("", "brain-extracted"), ("_whole_head", "whole head"))
SIM_TO_REAL_HEIGHTS = (0.45, 0.65)
"""Axial slices of the sim-to-real figure, as fractions of the brain's height: the lateral ventricles,
and the centrum semiovale above them."""


def sim_to_real_grid(volumes, path, dpi=80):
    """Input / translation / real target on two axial slices, per direction, brain-extracted and whole-head, and a
    row through the basal ganglia.

    Rows per direction: brain-extracted, whole head (columns: input, translation and real target at each of
    :data:`SIM_TO_REAL_HEIGHTS`), and, where the arrays give ``basal_ganglia_z``, the brain-extracted slice through
    the putamen (input, translation, real target, then the three again zoomed on the deep grey nuclei). Each image
    is scaled by its brain's 1st-99th percentiles (as scored). Size: ``6 * 2`` by ``rows * 2`` inches.

    Args:
        volumes: direction -> arrays as in ``gan_mri.sim_to_real.sim_to_real(...)["volumes"]``.
        path: PNG file to write.
        dpi: dots per inch.

    Returns:
        pathlib.Path of the PNG.

    Raises:
        ValueError: no directions or a missing array.
    """
    from gan_mri.sim_to_real import scale_to_unit

    if not volumes:
        raise ValueError("volumes: expected at least one direction, found none")
    needed = ["brain_mask"] + [key + suffix for key, _ in SIM_TO_REAL_COLUMNS for suffix, _ in SIM_TO_REAL_ROWS]
    rows = []  # (label, [(2D image, title), ...])
    for direction, arrays in volumes.items():
        missing = [key for key in needed if key not in arrays]
        if missing:
            raise ValueError(f"volumes[{direction!r}]: missing {missing}")
        mask = np.asarray(arrays["brain_mask"], dtype=bool)
        extent = np.flatnonzero(mask.any(axis=(0, 1)))
        heights = [int(round(extent[0] + h * (extent[-1] - extent[0]))) for h in SIM_TO_REAL_HEIGHTS]
        title = DIRECTION_TITLES.get(direction, direction)
        unit = {key + suffix: scale_to_unit(np.asarray(arrays[key + suffix], dtype=np.float32), mask)
                for key, _ in SIM_TO_REAL_COLUMNS for suffix, _ in SIM_TO_REAL_ROWS}
        for suffix, label in SIM_TO_REAL_ROWS:
            rows.append((f"{title}\n{label}", [(unit[key + suffix][:, :, height], f"{name} (z {height})")
                                               for height in heights for key, name in SIM_TO_REAL_COLUMNS]))
        if "basal_ganglia_z" in arrays:
            z = int(arrays["basal_ganglia_z"])
            # The deep grey nuclei: the middle half of the brain's width and depth on that slice.
            inside = np.argwhere(mask[:, :, z])
            low, high = inside.min(axis=0), inside.max(axis=0)
            quarter = (high - low) // 4
            zoom = (slice(low[0] + quarter[0], high[0] - quarter[0]), slice(low[1] + quarter[1], high[1] - quarter[1]))
            panels = [(unit[key][:, :, z], f"{name} (z {z})") for key, name in SIM_TO_REAL_COLUMNS]
            panels += [(unit[key][zoom[0], zoom[1], z], f"{name}, zoom") for key, name in SIM_TO_REAL_COLUMNS]
            rows.append((f"{title}\nbasal ganglia", panels))
    n_columns = max(len(panels) for _, panels in rows)
    figure, axes = plt.subplots(len(rows), n_columns, figsize=(n_columns * CELL_INCHES, len(rows) * CELL_INCHES),
                                squeeze=False, layout="constrained")
    for row_axes, (label, panels) in zip(axes, rows):
        for axis, (image, panel_title) in zip(row_axes, panels):
            # RAS voxels: x right, y anterior; rotate so anterior is up and the patient's right on the right.
            axis.imshow(np.rot90(image), cmap="gray", vmin=0.0, vmax=1.0)
            axis.set_title(panel_title, fontsize=8)
        for axis in row_axes:
            axis.set_xticks([])
            axis.set_yticks([])
        row_axes[0].set_ylabel(label, fontsize=8)
    return _save(figure, path, dpi)


VOLUME_COLUMNS = (("input", "input"), ("translation", "translation"), ("truth", "ground truth"))
VOLUME_VIEWS = ("axial", "coronal", "sagittal")


def volume_views(results, path, dpi=80):
    """Axial, coronal and sagittal views through the middle of one test volume: input, translation and
    truth, per direction. Stripes of a 2D model show in the coronal and sagittal columns.

    Rows: direction x view; columns: input, translation, ground truth. Slices are stacked upwards
    (the stack's first slice at the bottom of the coronal and sagittal views). Size: ``3 * 2`` by
    ``rows * 2`` inches.

    Args:
        results: `gan_mri.volume_metrics.evaluate_volumes(..., keep_volumes=True)`.
        path: PNG file to write.
        dpi: dots per inch.

    Returns:
        pathlib.Path of the PNG.

    Raises:
        ValueError: no direction with volumes.
    """
    rows = []
    for direction in DIRECTION_TITLES:
        example = results.get(direction, {}).get("volumes")
        if example is None:
            continue
        stacks = [(np.asarray(example[key], dtype=np.float32) + 1.0) / 2.0 for key, _ in VOLUME_COLUMNS]
        middle = [size // 2 for size in stacks[0].shape]
        cuts = {"axial": lambda v: v[middle[0]], "coronal": lambda v: v[::-1, middle[1], :],
                "sagittal": lambda v: v[::-1, :, middle[2]]}
        for view in VOLUME_VIEWS:
            rows.append((f"{DIRECTION_TITLES[direction]}\n{example['subject']}, {view}",
                         [_display(cuts[view](stack)) for stack in stacks]))
    if not rows:
        raise ValueError("results: expected at least one direction with volumes (keep_volumes=True), found none")
    figure, axes = plt.subplots(len(rows), len(VOLUME_COLUMNS),
                                figsize=(len(VOLUME_COLUMNS) * CELL_INCHES, len(rows) * CELL_INCHES),
                                squeeze=False, layout="constrained")
    for row_axes, (label, images) in zip(axes, rows):
        for axis, image, (_, title) in zip(row_axes, images, VOLUME_COLUMNS):
            axis.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, aspect="auto")
            axis.set_title(title, fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
        row_axes[0].set_ylabel(label, fontsize=8)
    return _save(figure, path, dpi)


def lesion_closeups(results, path, half_width=12, dpi=100):
    """Close-ups of the largest lesion of one test subject: input, translation, truth and the lesion's outline.

    Rows: directions with lesion volumes; columns: input, translation, ground truth, labels. Each
    image is cropped to ``2 * half_width`` pixels around the lesion's centre, on its largest slice.

    Args:
        results: `gan_mri.volume_metrics.evaluate_volumes(..., keep_volumes=True)` of a dataset with lesions.
        path: PNG file to write.
        half_width: half the crop's side, in pixels.
        dpi: dots per inch.

    Returns:
        pathlib.Path of the PNG.

    Raises:
        ValueError: no direction with lesion volumes.
    """
    rows = []
    for direction in DIRECTION_TITLES:
        example = results.get(direction, {}).get("lesion_volumes")
        if example is None:
            continue
        lesions = np.asarray(example["lesions"])
        largest = np.argmax(np.bincount(lesions[lesions > 0].ravel())) if lesions.any() else 0
        region = lesions == largest
        index = int(np.argmax(region.sum(axis=(1, 2))))
        centre = np.round(np.argwhere(region[index]).mean(axis=0)).astype(int)
        top, left = (max(0, int(c) - half_width) for c in centre)
        crop = (index, slice(top, top + 2 * half_width), slice(left, left + 2 * half_width))
        images = [(np.asarray(example[key], dtype=np.float32)[crop] + 1.0) / 2.0 for key, _ in VOLUME_COLUMNS]
        rows.append((f"{DIRECTION_TITLES[direction]}\n{example['subject']}, lesion {largest}", images,
                     region[crop].astype(np.float32)))
    if not rows:
        raise ValueError("results: expected at least one direction with lesion volumes, found none")
    columns = [title for _, title in VOLUME_COLUMNS] + ["lesion label"]
    figure, axes = plt.subplots(len(rows), len(columns), figsize=(len(columns) * CELL_INCHES, len(rows) * CELL_INCHES),
                                squeeze=False, layout="constrained")
    for row_axes, (label, images, outline) in zip(axes, rows):
        for axis, image, title in zip(row_axes, [*images, images[-1]], columns):
            axis.imshow(_display(image), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            if title == "lesion label":
                axis.contour(outline, levels=[0.5], colors="red", linewidths=1.0)
            axis.set_title(title, fontsize=8)
            axis.set_xticks([])
            axis.set_yticks([])
        row_axes[0].set_ylabel(label, fontsize=8)
    return _save(figure, path, dpi)
