"""The `gan-mri` command line: parses arguments and calls the library; no logic of its own.

    gan-mri demo                              simulate -> prepare -> train -> evaluate -> export
    gan-mri simulate --subjects 20 --out phantom/
    gan-mri icbm152 --out real/                 the real ICBM 2009c T1w/T2w pair, as BIDS
    gan-mri prepare phantom/ --out data/ --size 64
    gan-mri train --preset sa-enc-cl-sn --data data/ --epochs 5 --out saved_models/run1
    gan-mri train --model cyclegan --data data/ --epochs 5 --out saved_models/cyclegan1
    gan-mri evaluate saved_models/run1 --data data/
    gan-mri translate sub-01_T1w.nii.gz --direction 'T1->T2' --out sub-01_T2w-synth.nii.gz
    gan-mri export saved_models/run1

Every subcommand has `--help`. Errors print one line naming the file or field and exit with 2.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path

# stdlib-only modules: --help stays fast
from gan_mri.config import DISTRIBUTIONS, FAMILY_REGISTRY, RECIPE_REGISTRY, REMAP_PRIORS, all_preset_names
from gan_mri.run_files import find_model_file

QUIET_LOGGERS = ("tensorflow", "absl", "jax")
"""Python loggers of the frameworks under gan-mri, held to ERROR unless -v/--debug: their INFO and
WARNING records ("Assets written to ...", "Unable to initialize backend 'tpu'") describe the
framework's internals, not anything a gan-mri user chose (docs/logging.md)."""



def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text}")
    return value


def _epoch_list(text: str) -> list[int]:
    if text.strip().lower() == "none":
        return []
    try:
        epochs = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated epochs like 1,25,50, found {text!r}") from None
    if any(e < 1 for e in epochs):
        raise argparse.ArgumentTypeError(f"epochs are 1-based, found {text!r}")
    return epochs


def _shape(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW like 64 or 96x80, found {text!r}") from None
    shape = shape * 2 if len(shape) == 1 else shape
    if len(shape) != 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW like 64 or 96x80, found {text!r}")
    return shape


def _listing(registry) -> str:
    """"name (description), ..." of a registry's entries, for a --help text."""
    return ", ".join(f"{name} ({entry.description})" for name, entry in registry.items()).replace("%", "%%")


class _RegisteredLayouts:
    """The --layout choices: `gan_mri.data.layouts.LAYOUTS`, read when argparse first checks or lists
    a value. The data package imports numpy, nibabel and scipy (a second or more), which `gan-mri --help`
    and the other commands should not wait for."""

    @staticmethod
    def _names():
        from gan_mri.data.layouts import LAYOUTS

        return LAYOUTS

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


# ----------------------------------------------------------------------------------- commands
def cmd_simulate(args) -> None:
    from gan_mri.data.phantom import simulate

    # Only the protocol settings given: each one fixes that setting for every subject.
    protocol = {key: value for key, value in (("t1w_sequence", args.t1w_sequence), ("t2w_sequence", args.t2w_sequence),
                                              ("field", args.field), ("slice_mm", args.slice_mm),
                                              ("gap_mm", args.gap_mm)) if value is not None}
    folders = simulate(args.subjects, args.out, seed=args.seed, resolution=args.resolution,
                       overwrite=args.overwrite, skull_stripped=args.skull_stripped, head=args.head,
                       lesions=args.lesions, lesions_in=args.lesions_in, test_fraction=args.test_fraction,
                       split_seed=args.split_seed, anatomy=args.anatomy, protocols=args.protocols,
                       lesion_kind=args.lesion_kind, **protocol)
    labels = "dseg, structures, brain mask" if args.anatomy == "synthseg" else "dseg, brain mask"
    print(f"wrote {len(folders)} simulated subjects (T1w, T2w, {labels}) to {args.out}")


def cmd_icbm152(args) -> None:
    from gan_mri.data.icbm152 import write_bids

    root = write_bids(args.out, overwrite=args.overwrite)
    print(f"wrote the real ICBM 2009c T1w/T2w pair as a BIDS subject (sessions brain and head) to {root}")


def cmd_prepare(args) -> None:
    from gan_mri.data.dataset import prepare

    dataset = prepare(args.source, args.out, image_shape=args.size, layout=args.layout,
                      a_glob=args.a_glob, b_glob=args.b_glob, test_fraction=args.test_fraction,
                      seed=args.seed, overwrite=args.overwrite, max_voxels=args.max_voxels, pair=args.pair,
                      spacing=args.spacing, lesion_glob=args.lesion_glob)
    print(f"prepared dataset {dataset.path}: {dataset.describe()}")


def _train_config(args, dataset):
    from gan_mri.config import config_from_dict, get_preset

    given = {"base_width": args.width, "precision": args.precision or None,
             "contrast_weight": args.contrast_weight, "structure_weight": args.structure_weight,
             "remap_prior": args.remap_prior}
    overrides = {field: value for field, value in given.items() if value is not None}
    if args.config:
        config = config_from_dict(json.loads(Path(args.config).read_text(encoding="utf-8")))
        return config.replace(**overrides) if overrides else config
    # A preset takes the dataset's image shape; a config file must already match it.
    return get_preset(args.family or args.preset, recipe=args.recipe, image_shape=tuple(dataset.image_shape),
                      **overrides)


def cmd_train(args) -> None:
    from gan_mri.data.dataset import PreparedDataset

    dataset = PreparedDataset.open(args.data, verify_checksums=args.verify_checksums)
    config = None if args.resume else _train_config(args, dataset)
    from gan_mri.training import train  # TensorFlow's import (seconds) after the checks above

    eval_epochs = args.eval_epochs if args.eval_epochs is not None else [args.epochs]
    _, run = train(config, dataset, args.out, epochs=args.epochs, batch_size=args.batch_size,
                   resume=args.resume, overwrite=args.overwrite, eval_epochs=eval_epochs,
                   max_eval_batches=args.max_eval_batches, seed=args.seed, flip=args.flip,
                   standardize=args.standardize, distribute=args.distribute)
    print(f"run written to {run.root}")


def cmd_evaluate(args) -> None:
    find_model_file(args.model)  # a wrong path is reported here, before TensorFlow's import (seconds)
    from gan_mri.data.dataset import PreparedDataset
    from gan_mri.report import evaluate_to_folder
    from gan_mri.inference import load_model

    dataset = PreparedDataset.open(args.data, verify_checksums=args.verify_checksums)
    model = load_model(args.model)
    if args.out:
        out = Path(args.out)
    elif Path(args.model).is_dir():
        out = Path(args.model) / "evaluation"
    else:
        raise ValueError("--out is required when the model is a .keras file")
    results, real = evaluate_to_folder(model, dataset, out, max_batches=args.max_batches, overwrite=args.overwrite,
                                       real=args.real)
    print(format_results(results))
    if real is not None:
        from gan_mri.sim_to_real import format_sim_to_real

        print()
        print(format_sim_to_real(real))
    print(f"metrics and figures written to {out}")


def cmd_verify(args) -> None:
    from gan_mri.data.prepared import PreparedDataset

    dataset = PreparedDataset.open(args.data, verify_checksums=True)
    size = sum((dataset.path / name).stat().st_size for name in dataset.manifest["files"])
    print(f"{dataset.path}: ok (manifest schema, {len(dataset.manifest['files'])} array files of "
          f"{size / 1e6:.1f} MB: shapes, sizes, sha256, finite values)")


def cmd_translate(args) -> None:
    from gan_mri.pretrained import pretrained_model_path

    model_path = args.model or pretrained_model_path()
    find_model_file(model_path)  # before TensorFlow's import
    from gan_mri.inference import load_model, translate_path

    model = load_model(model_path)
    written = translate_path(model, args.input, args.out, args.direction, overwrite=args.overwrite,
                             batch_size=args.batch_size, max_voxels=args.max_voxels, brain_mask=args.brain_mask,
                             confidence=args.confidence)
    for path in written:
        print(path)


def cmd_export(args) -> None:
    find_model_file(args.model)  # before TensorFlow's import
    from gan_mri.export import export_saved_model
    from gan_mri.inference import load_model

    # TF Serving loads numbered versions: <model base path>/<version>/saved_model.pb.
    out = Path(args.out) if args.out else Path(args.model) / "export" / "1"
    path = export_saved_model(load_model(args.model), out, overwrite=args.overwrite)
    print(f"SavedModel with signatures serving_default, a2b, b2a, a2b_uncertainty, b2a_uncertainty written to {path}")


def cmd_ablation(args) -> None:
    from gan_mri.ablation import PAPER_PRESETS, run_ablation

    overrides = {} if args.width is None else {"base_width": args.width}
    presets = PAPER_PRESETS if args.presets is None else args.presets
    result = run_ablation(args.data, args.out, presets, epochs=args.epochs,
                          eval_epochs=args.eval_epochs or None, batch_size=args.batch_size, seed=args.seed,
                          recipe=args.recipe, overrides=overrides, max_eval_batches=args.max_eval_batches,
                          standardize=args.standardize)
    print(result.files["table_7a_md"].read_text(encoding="utf-8"))
    for status in ("trained", "resumed", "skipped"):
        if getattr(result, status):
            print(f"{status}: {', '.join(getattr(result, status))}")
    for name, path in result.files.items():
        print(f"  {name:<12} {path}")
    print(f"run folders in {result.out_dir}/<preset>/")


def cmd_demo(args) -> None:
    from gan_mri.demo import DemoSettings, run_demo
    from gan_mri.sim_to_real import format_sim_to_real  # no TensorFlow: run_demo checks its settings first

    settings = DemoSettings(out_dir=Path(args.out), subjects=args.subjects, image_size=args.size,
                            epochs=args.epochs, base_width=args.width, batch_size=args.batch_size,
                            seed=args.seed, structure_weight=args.structure_weight, overwrite=args.overwrite)
    summary = run_demo(settings, progress=print)
    print()
    print("gan-mri demo finished")
    for name, path in summary["paths"].items():
        print(f"  {name:<18} {path}")
    print()
    print(format_results(summary["results"]))
    print()
    print(format_sim_to_real(summary["sim_to_real"]))
    print()
    print("SSIM per epoch (the paper's Table 7(b): T1 = T2w -> T1w output, T2 = T1w -> T2w output):")
    print(Path(summary["paths"]["ssim table"]).read_text(encoding="utf-8"))


def format_results(results: dict) -> str:
    """The SSIM/PSNR/MAE table of `evaluate` results, as printed by the CLI: one row per
    direction, and under it the no-learning intensity remap's row when the results have one."""
    header = f"{'direction':<18}{'SSIM':>8}{'SSIM brain':>12}{'PSNR dB':>9}{'MAE':>8}"
    lines = [header, "-" * len(header)]
    names = {"A2B": "T1w -> T2w", "B2A": "T2w -> T1w"}
    for direction, values in results.items():
        rows = [(names.get(direction, direction), "")]
        if "baseline_ssim" in values:
            rows.append(("  remap baseline", "baseline_"))
        for label, prefix in rows:
            lines.append(f"{label:<18}{values[prefix + 'ssim']:>8.4f}{values[prefix + 'ssim_brain']:>12.4f}"
                         f"{values[prefix + 'psnr']:>9.2f}{values[prefix + 'mae']:>8.4f}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `gan-mri` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="gan-mri", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Translate brain MR images between T1w and T2w contrasts with UNIT and its "
                    "self-attention / spectral-norm / Charbonnier variants.",
        epilog="examples:\n" + __doc__.split("\n\n")[1].split("Every subcommand")[0].rstrip())
    parser.add_argument("--version", action="version", version=f"gan-mri {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log progress details and show TensorFlow's own log lines")
    parser.add_argument("--debug", action="store_true",
                        help="like -v, and show the Python traceback of an error (for bug reports)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="the whole job on the embedded phantom (about 9 min on 2 idle CPU cores)")
    p.add_argument("--out", default="gan-mri-demo", help="output folder (default: gan-mri-demo)")
    p.add_argument("--subjects", type=_positive_int, default=20, help="phantom subjects (default 20)")
    p.add_argument("--size", type=_positive_int, default=64,
                   help="image size in pixels (default 64; 128 takes about 18 min on 2 CPU cores)")
    p.add_argument("--epochs", type=_positive_int, default=5, help="training epochs (default 5)")
    p.add_argument("--width", type=_positive_int, default=16, help="base width of the networks (default 16)")
    p.add_argument("--batch-size", type=_positive_int, default=4, help="batch size (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the phantom, the split and training (default 0)")
    p.add_argument("--structure-weight", type=float, default=0.0, metavar="W",
                   help="weight of the structure term (default 0: off, as it costs quality on the demo's "
                        "whole-head subjects; the library's default is 30)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing demo folder")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="write simulated T1w/T2w/tissue-label phantom subjects as BIDS")
    p.add_argument("--subjects", type=_positive_int, default=20, help="number of subjects (default 20)")
    p.add_argument("--out", required=True, help="BIDS folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, choices=(1, 2), default=2, help="voxel size in mm (default 2)")
    # Choices written out (anatomies, protocols, sequences, lesion kinds of gan_mri.data) so --help needs no numpy.
    p.add_argument("--anatomy", choices=("synthseg", "mni152"), default="synthseg",
                   help="synthseg (default): 20 real subjects' label maps (SynthSeg's, with deep grey nuclei, "
                        "cerebellum, brainstem and the head's tissues); mni152: the MNI152 template's three tissue "
                        "classes, the phantom of earlier releases (reproduces their numbers)")
    p.add_argument("--protocols", choices=("research", "clinical", "mixed"), default="research",
                   help="research (default): 3 T, 3D MPRAGE T1w, TSE T2w; clinical: 2D spin-echo T1w and TSE T2w with "
                        "3-6 mm axial slices resampled to the grid, 1.5 or 3 T; mixed: one of these per subject "
                        "(research T1w MPRAGE or 3D spoiled gradient echo), recorded in each BIDS sidecar")
    p.add_argument("--t1w-sequence", choices=("mprage", "spgr", "se"), default=None,
                   help="one T1w sequence for every subject: mprage (as HCP, ADNI, the MNI templates), spgr (3D spoiled "
                        "gradient echo) or se (spin echo TR 500/TE 10; mni152: mprage or se)")
    p.add_argument("--t2w-sequence", choices=("tse", "se"), default=None,
                   help="one T2w sequence for every subject: tse (turbo spin echo) or se (spin echo TR 4000/TE 100)")
    p.add_argument("--field", type=float, choices=(1.5, 3.0), default=None,
                   help="one field strength (tesla) for every subject (real anatomy; default 3)")
    p.add_argument("--slice-mm", type=float, default=None, metavar="MM",
                   help="2D acquisitions of both contrasts with axial slices this thick, resampled to the grid (real "
                        "anatomy; default: 3D)")
    p.add_argument("--gap-mm", type=float, default=None, metavar="MM", help="gap between the 2D slices (default 0)")
    p.add_argument("--skull-stripped", type=float, default=0.5, metavar="SHARE",
                   help="share of subjects written brain-extracted (default 0.5; the rest with the head on)")
    p.add_argument("--no-head", dest="head", action="store_false",
                   help="no head around the brain (every subject is then a brain floating in noise)")
    p.add_argument("--lesions", type=int, default=0, metavar="N",
                   help="lesions per lesioned subject, labelled in sub-XX_label-lesion_mask.nii.gz (default 0)")
    p.add_argument("--lesion-kind", choices=("wmh", "cavity", "tumour"), default="wmh",
                   help="wmh (default): white-matter hyperintensities 3-20 mm, bright on T2w, dark on T1w; cavity: a "
                        "fluid-filled cavity 10-30 mm (CSF-like); tumour: a solid tumour 10-30 mm with oedema around "
                        "it (real anatomy)")
    p.add_argument("--lesions-in", choices=("test", "all"), default="test",
                   help="test (default): only the subjects prepare puts in the test set with --test-fraction and "
                        "--split-seed, so the model never sees a lesion in training; all: every subject")
    p.add_argument("--test-fraction", type=float, default=0.2, help="the split --lesions-in test follows (default 0.2, "
                   "prepare's)")
    p.add_argument("--split-seed", type=int, default=0, help="the split --lesions-in test follows (default 0, prepare's --seed)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("icbm152", help="write the real ICBM 2009c T1w/T2w pair that ships with gan-mri as BIDS")
    p.add_argument("--out", required=True, help="BIDS folder to write (subject sub-icbm152, sessions brain, head)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_icbm152)

    p = sub.add_parser("prepare", help="turn a folder of T1w/T2w volumes (see --layout) or PNG slices into a dataset")
    p.add_argument("source", help="folder holding the volumes")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--size", type=_shape, default=(128, 128), help="image size: 128 or HxW (default 128)")
    # metavar: argparse would list the choices while building the parser, importing gan_mri.data.
    p.add_argument("--layout", default="auto", choices=_RegisteredLayouts(), metavar="LAYOUT",
                   help="folder layout of SOURCE: %(choices)s (default auto: the first that matches; "
                        "docs/datasets.md)")
    p.add_argument("--a-glob", help="glob of T1w volumes under SOURCE (layout glob)")
    p.add_argument("--b-glob", help="glob of T2w volumes under SOURCE (layout glob)")
    p.add_argument("--lesion-glob", help="glob of lesion label volumes under SOURCE (on the T1w's grid, 0 outside "
                   "lesions), any volume layout; each goes to the subject its name carries before tokens such as "
                   "_lesion, _label, _mask, _seg (BIDS: replaces the *_label-lesion* files)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of subjects in the test split (1: a test-only dataset, to evaluate a model on)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subject split")
    p.add_argument("--pair", default="auto", choices=("auto", "grid", "world", "register"),
                   help="how a test subject's T2w meets its T1w: grid (co-registered on one grid), world (resampled "
                        "onto the T1w's grid through the affines), register (rigid mutual-information registration, "
                        "then resampled: scans acquired apart); auto: register for IXI, grid otherwise")
    p.add_argument("--spacing", type=float, metavar="MM",
                   help="slice pixels of MM millimetres, centred on the brain (default: the volumes' own voxel size)")
    p.add_argument("--overwrite", action="store_true")
    _add_max_voxels_flag(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a preset or a config JSON on a prepared dataset")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--preset", default="sa-enc-cl-sn",
                        help=f"preset name: {', '.join(all_preset_names())} (default sa-enc-cl-sn)")
    # --family, not --model: elsewhere (evaluate, translate, export) --model is a trained run or .keras file.
    # --model stays accepted here as the older spelling.
    source.add_argument("--family", "--model", dest="family", choices=tuple(FAMILY_REGISTRY),
                        help=f"model family, trains the preset of that name (--family cyclegan = --preset cyclegan; "
                             f"--model is the older spelling): {_listing(FAMILY_REGISTRY)}")
    source.add_argument("--config", help="config JSON file (e.g. a run's config.json)")
    p.add_argument("--recipe", choices=tuple(RECIPE_REGISTRY), default="default",
                   help=f"training recipe of a preset: {_listing(RECIPE_REGISTRY)}")
    p.add_argument("--data", required=True, help="prepared dataset folder")
    p.add_argument("--out", required=True, help="run folder, e.g. saved_models/my-run")
    p.add_argument("--epochs", type=_positive_int, default=10)
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--width", type=_positive_int, help="override the base width (e.g. 16 on a CPU)")
    # No argparse choices: the config validates the value against gan_mri.config.PRECISIONS and names
    # the valid ones with the field (exit 2).
    p.add_argument("--precision", help="auto (mixed_float16 on a GPU; on a CPU mixed_bfloat16 where a probe at the "
                                       "model's shapes finds bfloat16 clearly faster, or near the threshold where "
                                       "the CPU has AMX-BF16, float32 otherwise; decided once per machine, software "
                                       "and model shape, cached in ~/.cache/gan-mri, and recorded with its reason "
                                       "in run.json), float32, mixed_float16 or mixed_bfloat16 (default: the "
                                       "preset's, auto)")
    p.add_argument("--structure-weight", type=float, metavar="W",
                   help="UNIT's structure term, local correlation of each translation with its input (default: "
                        "the recipe's, 30, the lineage's 0; 0 is better on whole-head scans, docs/training_recipe.md)")
    p.add_argument("--contrast-weight", type=float, metavar="W",
                   help="UNIT's lesion-aware term: penalize local contrast of the input that the translation loses "
                        "(docs/lesions.md; default 0, off)")
    p.add_argument("--remap-prior", choices=REMAP_PRIORS,
                   help="build the generators on the brain-intensity remap fitted on the training split: residual "
                        "(learn a correction of it) or channel (an extra input); default: the config's, none "
                        "(gan_mri.remap_prior)")
    p.add_argument("--eval-epochs", type=_epoch_list, help="1-based epochs to evaluate at, e.g. 1,25,50, or none (default: the last)")
    p.add_argument("--max-eval-batches", type=_positive_int, help="limit test batches per evaluation")
    p.add_argument("--flip", action="store_true", help="random left-right flips")
    _add_standardize_flag(p)
    _add_verify_flag(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--distribute", choices=DISTRIBUTIONS, default="none",
                   help="data-parallel training: mirrored = every GPU of this machine, multi-worker = several "
                        "machines (TF_CONFIG); --batch-size is the global batch (docs/distributed.md)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="SSIM/PSNR/MAE/Dice of a model on a dataset's test split, with figures")
    p.add_argument("model", help="run folder or .keras file")
    p.add_argument("--data", required=True, help="prepared dataset folder")
    p.add_argument("--out", help="output folder (default: RUN/evaluation)")
    p.add_argument("--max-batches", type=_positive_int)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-real", dest="real", action="store_false",
                   help="skip the sim-to-real score on the real ICBM 2009c pair that ships with gan-mri "
                        "(sim_to_real.json/.png; about half a minute)")
    _add_verify_flag(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("verify", help="check a prepared dataset: manifest, array sizes, sha256, finite values")
    p.add_argument("data", help="prepared dataset folder")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("translate", help="translate a NIfTI volume, a folder of volumes or PNG slices")
    p.add_argument("input", help=".nii/.nii.gz/.png file or folder")
    p.add_argument("--direction", required=True,
                   help="'T1->T2' or 'T2->T1' (quote the arrow in a shell), also T1toT2, T2toT1, A2B, B2A")
    p.add_argument("--out", required=True, help="output file or folder")
    p.add_argument("--model", help="run folder or .keras file (default: the shipped pretrained model)")
    p.add_argument("--brain-mask", help="brain mask NIfTI of a single input volume (default: found as prepare "
                                        "finds it: the object of a brain-extracted scan, a registered template "
                                        "brain for a whole head)")
    p.add_argument("--confidence", nargs="?", const="default", choices=("default", "cycle", "latent", "flip"),
                   help="also write <output>_uncertainty.nii.gz: where the translation is unsure (0 = certain). "
                        "default: latent-code spread for UNIT models, cycle residual otherwise (docs/lesions.md)")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--overwrite", action="store_true")
    _add_max_voxels_flag(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("export", help="export a SavedModel for TF Serving (signatures a2b, b2a, and *_uncertainty)")
    p.add_argument("model", help="run folder or .keras file")
    p.add_argument("--out", help="SavedModel folder, TF Serving's <base>/<version> (default: RUN/export/1)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("ablation", help="the paper's Table 7: train several presets, one seed and budget")
    p.add_argument("--data", required=True, help="prepared dataset folder")
    p.add_argument("--out", required=True, help="ablation folder (one run folder per preset inside)")
    p.add_argument("--presets", type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
                   help="comma-separated preset names (default: the paper's eight)")
    p.add_argument("--epochs", type=_positive_int, required=True, help="training epochs of every preset")
    p.add_argument("--eval-epochs", type=_epoch_list, help="1-based epochs to evaluate at, e.g. 1,25,50 (default: the last)")
    p.add_argument("--batch-size", type=_positive_int, default=1)
    p.add_argument("--width", type=_positive_int, help="override the base width of every preset (e.g. 16 on a CPU)")
    p.add_argument("--recipe", choices=tuple(RECIPE_REGISTRY), default="default",
                   help=f"training recipe of every preset: {_listing(RECIPE_REGISTRY)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-eval-batches", type=_positive_int, help="limit test batches per evaluation")
    _add_standardize_flag(p)
    p.set_defaults(func=cmd_ablation)
    return parser


def _add_standardize_flag(p) -> None:
    p.add_argument("--no-standardize", dest="standardize", action="store_false",
                   help="train on the percentile-normalized volumes as they are, without the per-volume "
                        "intensity standardization (gan_mri.standardization; the lineage had none)")


def _add_verify_flag(parser) -> None:
    parser.add_argument("--no-verify-checksums", dest="verify_checksums", action="store_false",
                        help="skip the dataset's sha256/finite-value check (sizes and shapes are still "
                             "checked; for huge sets; `gan-mri verify DATA` runs the full check)")


def _add_max_voxels_flag(parser) -> None:
    # The default is gan_mri.data.volumes.DEFAULT_MAX_VOXELS, written out so --help needs no numpy.
    parser.add_argument("--max-voxels", type=_positive_int, default=512**3,
                        help="refuse volumes whose header claims more voxels (default 512^3 = 134217728)")


def _version() -> str:
    from gan_mri import __version__

    return __version__


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so that the cleanup of an interrupted run (which
    handles KeyboardInterrupt) also runs when `timeout`, Slurm or Kubernetes stop the process."""


_signals_received: list[int] = []
"""SIGTERM/SIGINT that reached `main`'s handlers during the running command."""


def _raise_terminated(signum, frame):
    _signals_received.append(signum)
    raise Terminated()


def _raise_interrupted(signum, frame):
    _signals_received.append(signum)
    raise KeyboardInterrupt()


def describe_os_error(err: OSError) -> str:
    """One line naming the path of an OS error and what is wrong, in words a user can act on."""
    path = err.filename
    if path is None or err.errno is None:
        return str(err)
    path = os.fsdecode(path)
    target = f" -> {os.fsdecode(err.filename2)}" if err.filename2 is not None else ""
    reasons = {
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "read-only file system",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EFBIG: "file too large (the file-size limit was reached)",
        errno.EISDIR: "is a folder, expected a file",
        errno.ENAMETOOLONG: "name too long",
    }
    reason = reasons.get(err.errno, err.strerror or str(err))
    if err.errno in (errno.ENOTDIR, errno.EEXIST, errno.ENOENT):
        parent = next((p for p in Path(path).parents if p.is_file()), None)
        if parent is not None:
            reason = f"cannot be created or read because {parent} is a file, not a folder"
        elif err.errno in (errno.ENOTDIR, errno.EEXIST) and Path(path).is_file():
            reason = "is a file, expected a folder"
    return f"{path}{target}: {reason}"


@contextlib.contextmanager
def _framework_loggers_quiet():
    """Holds the loggers of `QUIET_LOGGERS` at ERROR; their previous levels come back on exit.

    No Python warnings filter is installed: none of gan-mri's commands triggers a warning from
    Keras, TensorFlow or JAX, and tests/test_cli.py fails if one starts to, so that its cause is
    fixed rather than hidden (docs/logging.md).
    """
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _native_stderr_held_back():
    """Sends what native code (TensorFlow's C++ absl/oneDNN/CUDA logging) writes to file
    descriptor 2 into a temporary file, while Python's own stderr keeps the terminal.

    TF_CPP_MIN_LOG_LEVEL does not silence all of these lines in TF 2.21. The file is deleted on an
    ordinary exit; a crash inside native code leaves it behind (its path is in the crash message).
    """
    sys.stderr.flush()
    terminal = os.dup(2)
    handle, log_path = tempfile.mkstemp(prefix="gan-mri-native-", suffix=".log")
    os.dup2(handle, 2)
    os.close(handle)
    python_stderr = sys.stderr
    sys.stderr = open(terminal, "w", buffering=1, encoding=python_stderr.encoding, errors="backslashreplace")
    try:
        yield log_path
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        sys.stderr.close()
        sys.stderr = python_stderr
        with contextlib.suppress(OSError):
            os.unlink(log_path)


def main(argv=None) -> int:
    """Entry point of the `gan-mri` console script; returns the exit status.

    Errors of input and of the file system print one line naming the file or field (exit 2;
    ``--debug`` adds the traceback); SIGINT and SIGTERM remove incomplete outputs and exit 130 / 143.
    """
    args = build_parser().parse_args(argv)
    verbose = args.verbose or args.debug
    with contextlib.ExitStack() as stack:
        if not verbose:
            # Only gan-mri's own lines by default (docs/logging.md); -v shows everything.
            stack.enter_context(_framework_loggers_quiet())
            if argv is None:  # only as a command: a caller of main() keeps its own stderr and env
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                stack.enter_context(_native_stderr_held_back())
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        if threading.current_thread() is threading.main_thread():
            _signals_received.clear()
            for signum, handler in ((signal.SIGTERM, _raise_terminated), (signal.SIGINT, _raise_interrupted)):
                stack.callback(signal.signal, signum, signal.signal(signum, handler))
        return _run(args)


def _run(args) -> int:
    def fail(message: str, status: int = 2) -> int:
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        print(f"gan-mri {args.command}: error: {message}", file=sys.stderr)
        return status

    def stopped(terminated: bool) -> int:
        name = "SIGTERM" if terminated else "SIGINT (Ctrl-C)"
        kept = ("completed epochs are checkpointed (continue with --resume)" if args.command == "train"
                else "incomplete outputs were removed")
        print(f"gan-mri {args.command}: stopped by {name}; {kept}", file=sys.stderr)
        return 143 if terminated else 130

    try:
        try:
            args.func(args)
        except BaseException:
            # The handlers' exception can come back as another one when the signal lands in Python
            # code that native code calls (TensorFlow's nest turned it into an AttributeError once);
            # the cleanup ran either way, so report the signal, not that exception.
            if _signals_received:
                return stopped(_signals_received[0] == signal.SIGTERM)
            raise
    except OSError as err:  # FileNotFoundError, PermissionError, ENOSPC, ... and our own messages
        return fail(describe_os_error(err))
    except ValueError as err:
        return fail(str(err))
    except MemoryError as err:
        return fail(f"out of memory{': ' + str(err) if str(err) else ''} (smaller inputs or --batch-size?)")
    except KeyboardInterrupt as err:
        return stopped(isinstance(err, Terminated))
    return 0


if __name__ == "__main__":
    sys.exit(main())
