"""Evaluation results as files and tables: CSV/JSON and the paper's Table 7(b).

:func:`gan_mri.evaluation.evaluate` returns ``{direction: {metric: value}}``; this module turns
such results into rows, writes them atomically as CSV or JSON, reads metrics CSVs back and builds
the Table 7(b) layout (SSIM per epoch of the T1 output, B2A, and of the T2 output, A2B).
"""

import csv
import io
import json
import logging
import math
from pathlib import Path

from gan_mri.fileutil import atomic_write_text  # noqa: F401 - the writers of metrics files import it from here

logger = logging.getLogger(__name__)

BASELINE_PREFIX = "baseline_"
"""Prefix of the metrics of the no-learning intensity remap scored beside a model."""
IMAGE_METRICS = ("ssim", "ssim_brain", "psnr", "psnr_brain", "mae", "mae_brain")

# Column order of results tables; further keys follow in sorted order.
METRIC_NAMES = (
    *IMAGE_METRICS,
    *(BASELINE_PREFIX + name for name in IMAGE_METRICS),
    "dice_csf",
    "dice_gm",
    "dice_wm",
    "label_dice_csf",
    "label_dice_gm",
    "label_dice_wm",
    "recon_ssim",
    "recon_mae",
    "n_slices",
)


def ordered_columns(names):
    """Metric names in table order: :data:`METRIC_NAMES` first, then the rest sorted."""
    names = set(names)
    return [name for name in METRIC_NAMES if name in names] + sorted(names - set(METRIC_NAMES))


def results_rows(results, epoch=None):
    """Flatten ``{direction: {metric: value}}`` into table rows (one per direction).

    Args:
        results: the dict returned by :func:`evaluate`.
        epoch: optional 1-based epoch number put in an ``epoch`` column.

    Returns:
        list of dicts with ``direction`` (and ``epoch``) plus the metric columns.
    """
    rows = []
    for direction, values in results.items():
        row = {} if epoch is None else {"epoch": int(epoch)}
        row["direction"] = direction
        row.update(values)
        rows.append(row)
    return rows


def rows_to_csv_text(rows):
    """CSV text of rows (dicts), header = key columns then :func:`ordered_columns`."""
    keys = [key for key in ("epoch", "direction") if any(key in row for row in rows)]
    others = ordered_columns({key for row in rows for key in row} - set(keys))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys + others, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _format_value(value) for key, value in row.items()})
    return buffer.getvalue()


def _format_value(value):
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    return value


def save_results(results, path, epoch=None):
    """Write :func:`evaluate` results as JSON or CSV, chosen by the file suffix.

    JSON keeps the nested ``{direction: {metric: value}}`` layout (NaN written as null,
    ``epoch`` added to each direction's dict when given); CSV has one row per direction
    (columns ``epoch`` if given, ``direction``, then the metrics).

    Args:
        results: the dict returned by :func:`evaluate`.
        path: output file ending in ``.json`` or ``.csv``; parents are created.
        epoch: optional epoch number recorded with the results.

    Returns:
        pathlib.Path of the written file.

    Raises:
        ValueError: the suffix is neither .json nor .csv.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        clean = {}
        for direction, values in results.items():
            clean[direction] = {
                name: (None if isinstance(value, float) and math.isnan(value) else value)
                for name, value in values.items()
            }
            if epoch is not None:
                clean[direction]["epoch"] = int(epoch)
        atomic_write_text(path, json.dumps(clean, indent=2, sort_keys=True) + "\n")
    elif suffix == ".csv":
        atomic_write_text(path, rows_to_csv_text(results_rows(results, epoch)))
    else:
        raise ValueError(f"path: expected a file ending in .json or .csv, found {str(path)!r}")
    logger.info("wrote evaluation results to %s", path)
    return path


def read_metrics_csv(path):
    """Read a metrics CSV (as written by :class:`EvaluationCallback`) into rows.

    Args:
        path: CSV file with an ``epoch`` and a ``direction`` column.

    Returns:
        list of dicts; ``epoch`` as int, ``direction`` as str, other non-empty cells as float.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the ``epoch`` or ``direction`` column is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics CSV not found: {path}")
    with path.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        missing = [key for key in ("epoch", "direction") if key not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: expected columns 'epoch' and 'direction', missing {missing}")
        rows = []
        for raw in reader:
            row = {"epoch": int(raw["epoch"]), "direction": raw["direction"]}
            row.update({key: float(value) for key, value in raw.items() if key not in row and value != ""})
            rows.append(row)
    return rows


SSIM_TABLE_COLUMNS = (
    ("SSIM T1", "B2A", "ssim"),
    ("SSIM T2", "A2B", "ssim"),
    ("SSIM T1 brain", "B2A", "ssim_brain"),
    ("SSIM T2 brain", "A2B", "ssim_brain"),
)
BASELINE_ROW = "remap baseline"
"""The ``Epoch`` cell of the table row that holds the no-learning intensity remap."""


def ssim_table(rows):
    """The paper's Table 7(b): one row per epoch, SSIM of the T1 and the T2 outputs.

    "SSIM T1" is the quality of T2w -> T1w translations (direction B2A), "SSIM T2" that
    of T1w -> T2w translations (A2B); the brain-mask versions follow. When the rows hold
    ``baseline_*`` metrics, a last row (``Epoch`` = "remap baseline") gives the no-learning
    intensity remap's SSIM on the same slices (from the latest epoch's rows; it does not train).

    Args:
        rows: metric rows with ``epoch``, ``direction``, ``ssim`` (and ``ssim_brain``),
            e.g. from :func:`read_metrics_csv`.

    Returns:
        list of dicts ``{"Epoch": int, "SSIM T1": float, "SSIM T2": float, ...}`` sorted by
        epoch (then the baseline row); NaN where a direction was not evaluated.

    Raises:
        ValueError: rows are empty or lack the ``ssim`` column.
    """
    if not rows:
        raise ValueError("rows: expected at least one metrics row, found none")
    if not any("ssim" in row for row in rows):
        raise ValueError("rows: expected a 'ssim' column, found none")
    by_epoch = {}
    for row in rows:
        by_epoch.setdefault(int(row["epoch"]), {})[row["direction"]] = row
    table = []
    for epoch in sorted(by_epoch):
        line = {"Epoch": epoch}
        for title, direction, metric in SSIM_TABLE_COLUMNS:
            line[title] = float(by_epoch[epoch].get(direction, {}).get(metric, float("nan")))
        table.append(line)
    latest = by_epoch[max(by_epoch)]
    if any(BASELINE_PREFIX + "ssim" in row for row in latest.values()):
        line = {"Epoch": BASELINE_ROW}
        for title, direction, metric in SSIM_TABLE_COLUMNS:
            line[title] = float(latest.get(direction, {}).get(BASELINE_PREFIX + metric, float("nan")))
        table.append(line)
    return table


def write_ssim_table(rows, out_dir, stem="ssim_table"):
    """Write :func:`ssim_table` as ``<stem>.csv`` and ``<stem>.md`` (4 decimals, as the paper).

    Args:
        rows: metric rows (see :func:`ssim_table`).
        out_dir: output folder (created).
        stem: file name without suffix.

    Returns:
        (csv path, markdown path).

    Raises:
        ValueError: see :func:`ssim_table`.
    """
    table = ssim_table(rows)
    out_dir = Path(out_dir)
    titles = list(table[0])
    cells = [[str(line["Epoch"])] + [f"{line[t]:.4f}" for t in titles[1:]] for line in table]
    csv_text = ",".join(titles) + "\n" + "".join(",".join(row) + "\n" for row in cells)
    markdown = "| " + " | ".join(titles) + " |\n|" + "|".join(" --- " for _ in titles) + "|\n"
    markdown += "".join("| " + " | ".join(row) + " |\n" for row in cells)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    atomic_write_text(csv_path, csv_text)
    atomic_write_text(md_path, markdown)
    return csv_path, md_path
