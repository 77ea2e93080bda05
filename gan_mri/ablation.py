"""The paper's ablation (Table 7): train several presets with one seed and one budget, compare SSIM.

`run_ablation` trains each preset into its own run folder ``out_dir/<preset>/`` (a normal
`gan_mri.training` run, so `gan-mri evaluate/translate/export` work on it), then writes::

    table_7a.csv / .md   one row per preset: SSIM of the T1 and T2 outputs at the final epoch
                         (whole image and brain mask) beside the paper's published values
    table_7b.csv / .md   one row per evaluated epoch: SSIM T1 / T2 of every preset
    ablation.png         grouped bars (ours vs the paper per preset) and SSIM per epoch
    ablation.json        the settings every preset was trained with

"SSIM T1" scores T2w -> T1w translations (direction B2A), "SSIM T2" scores T1w -> T2w (A2B), as
in `gan_mri.results.ssim_table`. The run is resumable per preset: a finished preset is read,
not retrained; an interrupted one continues from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

from gan_mri import training
from gan_mri.config import all_preset_names, get_preset
from gan_mri.results import BASELINE_ROW, atomic_write_text, read_metrics_csv, ssim_table
from gan_mri.run_files import CONFIG_FILE, RUN_FILE
from gan_mri.fileutil import atomic_output

logger = logging.getLogger(__name__)

PAPER_PRESETS = ("unit-rgb", "unit", "unit-cl", "unit-sn", "sa-gen", "sa-gen-cl", "sa-gen-cl-sn", "sa-enc-cl-sn")
"""The eight variants of the paper's Table 7(a), in its row order."""

PAPER_EPOCH = 75
PAPER_SSIM = {
    "unit-rgb": (0.7563, 0.716),
    "unit": (0.7617, 0.7217),
    "unit-cl": (0.7584, 0.7181),
    "unit-sn": (0.7108, 0.7402),
    "sa-gen": (0.7166, 0.5743),
    "sa-gen-cl": (0.7134, 0.5256),
    "sa-gen-cl-sn": (0.6722, 0.6678),
    "sa-enc-cl-sn": (0.7443, 0.6834),
}
"""Maheshwari and Pant, Table 7(a): preset -> (SSIM T1, SSIM T2) after 75 epochs on HCP."""

TABLE_A_COLUMNS = ("Preset", "SSIM T1", "SSIM T2", "SSIM T1 brain", "SSIM T2 brain", "Paper SSIM T1", "Paper SSIM T2")
_OURS = ("SSIM T1", "SSIM T2", "SSIM T1 brain", "SSIM T2 brain")
_SETTINGS_FILE = "ablation.json"


@dataclasses.dataclass(frozen=True)
class AblationResult:
    """What `run_ablation` produced.

    Attributes:
        out_dir: the ablation folder.
        runs: preset -> its run folder.
        table_a: Table 7(a) rows, dicts keyed by `TABLE_A_COLUMNS` (NaN where the paper has no value).
        table_b: Table 7(b) rows: ``{"Epoch": e, "<preset> SSIM T1": ..., "<preset> SSIM T2": ...}``.
        files: name -> path of the written tables, figure and settings.
        trained, resumed, skipped: presets trained from scratch, continued, or found finished.
    """

    out_dir: Path
    runs: dict
    table_a: list
    table_b: list
    files: dict
    trained: tuple = ()
    resumed: tuple = ()
    skipped: tuple = ()


def check_presets(presets) -> tuple[str, ...]:
    """Validates a list of preset names (or one comma-separated string).

    Raises:
        ValueError: empty, duplicated or unknown names (listing the valid ones).
    """
    names = [p.strip() for p in presets.split(",")] if isinstance(presets, str) else [str(p) for p in presets]
    names = [name for name in names if name]
    valid = all_preset_names()  # the paper's eight and cyclegan (no published numbers: empty paper columns)
    unknown = [name for name in names if name not in valid]
    if unknown:
        raise ValueError(f"presets: unknown preset(s) {unknown}; valid presets are {list(valid)}")
    if not names:
        raise ValueError(f"presets: expected at least one preset name from {list(valid)}, found none")
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"presets: expected each preset once, found {duplicated} more than once")
    return tuple(names)


def _check_budget(epochs, eval_epochs, batch_size) -> list[int]:
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected a positive integer, found {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, found {batch_size!r}")
    eval_epochs = [epochs] if eval_epochs is None else list(eval_epochs)
    bad = [e for e in eval_epochs if isinstance(e, bool) or not isinstance(e, int) or not 1 <= e <= epochs]
    if bad or not eval_epochs:
        raise ValueError(f"eval_epochs: expected 1-based epochs in [1, {epochs}], found {eval_epochs}")
    return sorted(set(eval_epochs))


def _check_existing_run(run: training.RunFolder, config, expected: dict) -> None:
    """Raises ValueError if an existing run was trained with other settings than this ablation's."""
    info = run.read_run_info()
    found = {key: info.get(key) for key in expected}
    if found != expected:
        raise ValueError(f"{run.root}: trained with {found}, but this ablation asks for {expected}; "
                         "use another output folder or the same settings")
    recorded = run.load_config().to_dict()
    changed = sorted(key for key, value in config.to_dict().items() if recorded.get(key) != value)
    if changed:
        raise ValueError(f"{run.root}: its config differs from this ablation's in {changed} "
                         f"(found {[recorded.get(k) for k in changed]}); use another output folder")


def _train_preset(preset, config, dataset, run_dir: Path, *, epochs, eval_epochs, batch_size, seed,
                  max_eval_batches, standardize, verbose) -> str:
    """Trains, resumes or skips one preset; returns "trained", "resumed" or "skipped"."""
    common = dict(epochs=epochs, eval_epochs=eval_epochs, max_eval_batches=max_eval_batches, verbose=verbose)
    if run_dir.is_dir() and (run_dir / RUN_FILE).is_file():
        run = training.RunFolder.open(run_dir)
        standardization = dataset.standardization if standardize else None
        _check_existing_run(run, config, {"dataset": str(Path(dataset.path).resolve()), "batch_size": batch_size,
                                          "seed": seed, "eval_epochs": eval_epochs,
                                          "standardization": standardization and standardization.to_dict()})
        done = run.epochs_done()
        if done > epochs:
            raise ValueError(f"{run_dir}: holds {done} epochs, more than the {epochs} asked for; "
                             f"use another output folder or --epochs {done}")
        if done == epochs and run.model_file.is_file():
            logger.info("preset %s: finished (%d epochs) in %s, not retrained", preset, done, run_dir)
            return "skipped"
        logger.info("preset %s: resuming %s after epoch %d of %d", preset, run_dir, done, epochs)
        training.train(None, dataset, run_dir, resume=True, **common)
        return "resumed"
    # A folder holding only config.json is a run killed between writing its two files.
    leftovers = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if leftovers and leftovers != [CONFIG_FILE]:
        raise ValueError(f"{run_dir}: exists but is not a gan-mri run folder (found {leftovers[:5]}); "
                         "remove it or use another output folder")
    logger.info("preset %s: training %d epochs into %s", preset, epochs, run_dir)
    training.train(config, dataset, run_dir, batch_size=batch_size, seed=seed, overwrite=bool(leftovers),
                   standardize=standardize, **common)
    return "trained"


def run_ablation(dataset, out_dir, presets=PAPER_PRESETS, *, epochs: int, eval_epochs=None,
                 batch_size: int = 1, seed: int = 0, recipe: str = "default", overrides: dict | None = None,
                 max_eval_batches: int | None = None, standardize: bool = True, verbose="auto") -> AblationResult:
    """Trains each preset on one dataset with one seed and one budget; writes Table 7(a)/(b).

    Each preset goes into ``out_dir/<preset>/`` through `gan_mri.training.train`, with the
    dataset's image shape and the same ``overrides`` (e.g. ``{"base_width": 8}``). Re-running
    is cheap: a preset whose run holds ``epochs`` epochs and a ``model.keras`` is not
    retrained, and an interrupted one is resumed from its checkpoint.

    Args:
        dataset: a `PreparedDataset` or the path of one.
        out_dir: the ablation folder (created).
        presets: preset names (default: the paper's eight, `PAPER_PRESETS`).
        epochs: training epochs of every preset.
        eval_epochs: 1-based epochs at which to evaluate (default: the last); the last
            epoch is always evaluated and gives Table 7(a).
        batch_size: images per domain per step.
        seed: seed of weights, data order and noise, the same for every preset.
        recipe: training recipe of every preset (`gan_mri.config.RECIPES`: "default" or "lineage").
        overrides: `UNITConfig` fields set on every preset.
        max_eval_batches: limit on test batches per evaluation.
        standardize: train every preset on intensity-standardized volumes (`gan_mri.training.train`);
            False trains on the percentile-normalized volumes alone, as the lineage did.
        verbose: `fit`'s verbosity.

    Returns:
        An `AblationResult` with both tables, the run folders and the files written.

    Raises:
        ValueError: unknown presets (listing the valid ones), bad epochs or batch size, bad
            overrides, or a run folder in ``out_dir`` trained with other settings.
        FileNotFoundError: the dataset does not exist.
    """
    from gan_mri.data.dataset import PreparedDataset

    presets = check_presets(presets)
    eval_epochs = _check_budget(epochs, eval_epochs, batch_size)
    overrides = dict(overrides or {})
    if not isinstance(dataset, PreparedDataset):
        dataset = PreparedDataset.open(dataset)
    out = Path(out_dir)
    # Build every config first: a bad override fails before hours of training.
    configs = {name: get_preset(name, recipe=recipe, **{"image_shape": tuple(dataset.image_shape), **overrides})
               for name in presets}
    out.mkdir(parents=True, exist_ok=True)
    settings = {"dataset": str(Path(dataset.path).resolve()), "presets": list(presets), "epochs": epochs,
                "eval_epochs": eval_epochs, "batch_size": batch_size, "seed": seed, "recipe": recipe,
                "overrides": overrides, "standardize": bool(standardize),
                "max_eval_batches": max_eval_batches}
    atomic_write_text(out / _SETTINGS_FILE, json.dumps(settings, indent=2, sort_keys=True) + "\n")

    outcome = {"trained": [], "resumed": [], "skipped": []}
    for name in presets:
        status = _train_preset(name, configs[name], dataset, out / name, epochs=epochs, eval_epochs=eval_epochs,
                               batch_size=batch_size, seed=seed, max_eval_batches=max_eval_batches,
                               standardize=standardize, verbose=verbose)
        outcome[status].append(name)

    per_epoch = {name: ssim_table(read_metrics_csv(out / name / "metrics" / "metrics.csv")) for name in presets}
    table_a = table_7a(per_epoch, epochs)
    table_b = table_7b(per_epoch)
    files = write_tables(table_a, table_b, out, epochs=epochs)
    files["figure"] = ablation_figure(table_a, table_b, out / "ablation.png", epochs=epochs)
    files["settings"] = out / _SETTINGS_FILE
    logger.info("ablation of %d presets written to %s", len(presets), out)
    return AblationResult(out_dir=out, runs={name: out / name for name in presets}, table_a=table_a,
                          table_b=table_b, files=files, **{k: tuple(v) for k, v in outcome.items()})


def table_7a(per_epoch: dict, epoch: int) -> list[dict]:
    """Table 7(a): per preset, SSIM at ``epoch`` beside the paper's values.

    Args:
        per_epoch: preset -> its `gan_mri.results.ssim_table` rows.
        epoch: the epoch to report (the final one).

    Returns:
        Rows keyed by `TABLE_A_COLUMNS`; paper columns are NaN for presets not in the paper. When
        the evaluations scored the no-learning intensity remap, a last row ("remap baseline")
        gives its SSIM on the same test slices (it is the same for every preset).

    Raises:
        ValueError: a preset was not evaluated at ``epoch``.
    """
    rows = []
    baseline = None
    for name, lines in per_epoch.items():
        baseline = baseline or next((line for line in lines if line["Epoch"] == BASELINE_ROW), None)
        line = next((line for line in lines if line["Epoch"] == epoch), None)
        if line is None:
            raise ValueError(f"preset {name}: expected an evaluation at epoch {epoch}, found epochs "
                             f"{[line['Epoch'] for line in lines]}")
        paper = PAPER_SSIM.get(name, (math.nan, math.nan))
        rows.append({"Preset": name, **{title: line[title] for title in _OURS},
                     "Paper SSIM T1": paper[0], "Paper SSIM T2": paper[1]})
    if baseline is not None:
        rows.append({"Preset": BASELINE_ROW, **{title: baseline[title] for title in _OURS},
                     "Paper SSIM T1": math.nan, "Paper SSIM T2": math.nan})
    return rows


def table_7b(per_epoch: dict) -> list[dict]:
    """Table 7(b): one row per evaluated epoch, columns ``<preset> SSIM T1`` / ``<preset> SSIM T2``.

    Args:
        per_epoch: preset -> its `gan_mri.results.ssim_table` rows.

    Returns:
        Rows sorted by epoch; NaN where a preset was not evaluated at that epoch.
    """
    # The baseline row of each table is not an epoch; Table 7(a) carries it.
    epochs = sorted({line["Epoch"] for lines in per_epoch.values() for line in lines if line["Epoch"] != BASELINE_ROW})
    rows = []
    for epoch in epochs:
        row = {"Epoch": epoch}
        for name, lines in per_epoch.items():
            line = next((line for line in lines if line["Epoch"] == epoch), {})
            for title in ("SSIM T1", "SSIM T2"):
                row[f"{name} {title}"] = line.get(title, math.nan)
        rows.append(row)
    return rows


def _cell(value, digits=None) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.{digits}f}" if digits else repr(round(value, 6))
    return str(value)


def _markdown(rows: list[dict]) -> str:
    titles = list(rows[0])
    lines = ["| " + " | ".join(titles) + " |", "|" + "|".join(" --- " for _ in titles) + "|"]
    lines += ["| " + " | ".join(_cell(row[t], 4) or "-" for t in titles) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _csv(rows: list[dict]) -> str:
    titles = list(rows[0])
    return ",".join(titles) + "\n" + "".join(",".join(_cell(row[t]) for t in titles) + "\n" for row in rows)


def write_tables(table_a: list[dict], table_b: list[dict], out_dir, *, epochs: int) -> dict:
    """Writes ``table_7a.{csv,md}`` and ``table_7b.{csv,md}`` (Markdown with 4 decimals, as the paper).

    Table 7(a)'s Markdown ends with a note saying which epochs each side reports.

    Returns:
        name -> path: ``table_7a_csv``, ``table_7a_md``, ``table_7b_csv``, ``table_7b_md``.
    """
    out = Path(out_dir)
    note = (f"\nOurs: SSIM after {epochs} epoch(s) (T1 = T2w->T1w output, T2 = T1w->T2w output; brain = "
            f"inside the brain mask). Paper: Maheshwari and Pant, Table 7(a), after {PAPER_EPOCH} epochs on HCP.\n")
    files = {}
    for stem, rows, extra in (("table_7a", table_a, note), ("table_7b", table_b, "")):
        files[f"{stem}_csv"] = out / f"{stem}.csv"
        files[f"{stem}_md"] = out / f"{stem}.md"
        atomic_write_text(files[f"{stem}_csv"], _csv(rows))
        atomic_write_text(files[f"{stem}_md"], _markdown(rows) + extra)
    return files


def ablation_figure(table_a: list[dict], table_b: list[dict], path, *, epochs: int, dpi: int = 100) -> Path:
    """Draws the ablation: grouped SSIM bars per preset (ours and the paper) and SSIM per epoch.

    Left panel: per preset, bars for our SSIM T1 and T2 at the final epoch and the paper's
    (hatched). Right panel: SSIM T1 (solid) and T2 (dashed) per evaluated epoch, one colour
    per preset. Size 14 x 5 inches.

    Returns:
        The path written.
    """
    from gan_mri import plots  # noqa: F401  (selects matplotlib's Agg backend before pyplot)
    import matplotlib.pyplot as plt
    import numpy as np

    baseline = next((row for row in table_a if row["Preset"] == BASELINE_ROW), None)
    table_a = [row for row in table_a if row["Preset"] != BASELINE_ROW]
    names = [row["Preset"] for row in table_a]
    figure, (bars, lines) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 2]})
    colours = plt.get_cmap("tab10")
    series = (("SSIM T1", f"ours T1 (epoch {epochs})", 0, None), ("SSIM T2", f"ours T2 (epoch {epochs})", 1, None),
              ("Paper SSIM T1", f"paper T1 (epoch {PAPER_EPOCH})", 0, "//"),
              ("Paper SSIM T2", f"paper T2 (epoch {PAPER_EPOCH})", 1, "//"))
    x, width = np.arange(len(names)), 0.2
    for index, (column, label, colour, hatch) in enumerate(series):
        values = [row[column] for row in table_a]
        bars.bar(x + (index - 1.5) * width, values, width, label=label, color=colours(colour),
                 alpha=0.5 if hatch else 1.0, hatch=hatch, edgecolor="black", linewidth=0.5)
    if baseline is not None:
        for column, colour, style in (("SSIM T1", 0, ":"), ("SSIM T2", 1, "-.")):
            bars.axhline(baseline[column], color=colours(colour), linestyle=style, linewidth=1.2,
                         label=f"remap baseline {column[-2:]}")
    bars.set_xticks(x, names, rotation=30, ha="right")
    bars.set_ylabel("SSIM")
    bars.set_title("Table 7(a): SSIM per preset")
    bars.legend(fontsize=8)
    epoch_axis = [row["Epoch"] for row in table_b]
    for index, name in enumerate(names):
        for title, style in (("SSIM T1", "-"), ("SSIM T2", "--")):
            lines.plot(epoch_axis, [row[f"{name} {title}"] for row in table_b], style, marker="o",
                       color=colours(index % 10), label=f"{name} {title[-2:]}")
    if len(epoch_axis) <= 12:
        lines.set_xticks(epoch_axis)
    lines.set_xlabel("epoch")
    lines.set_ylabel("SSIM")
    lines.set_title("Table 7(b): SSIM per epoch (T1 solid, T2 dashed)")
    lines.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format="png")
    plt.close(figure)
    return path
