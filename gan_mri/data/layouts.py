"""Find subjects and contrasts in the folder layouts users bring.

Domain A is T1-weighted, domain B T2-weighted. Supported layouts (``layout=``):

- ``"bids"``: ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]`` and ``*_T2w``; ``*_dseg.nii[.gz]`` in the same
  folder are tissue labels (0 background, 1 CSF, 2 GM, 3 WM, as the phantom writes them) and
  ``*_desc-brain_mask.nii[.gz]`` a brain mask on the T1w's grid (BIDS derivatives' name for it), and
  ``*_label-lesion*.nii[.gz]`` lesion labels on the T1w's grid (the phantom's ``--lesions``).
- ``"hcp"``: ``<subject>/T1w/T1w_acpc_dc_restore_brain.nii.gz`` and ``T2w_acpc_dc_restore_brain``
  (in ``T1w/`` or ``T2w/``).
- ``"ixi"``: ``IXI###-Site-####-T1.nii.gz`` and ``-T2`` (anywhere below the source).
- ``"brats"``: ``*_t1.nii.gz`` and ``*_t2.nii.gz`` (BraTS 2023 ``-t1n`` / ``-t2w`` too).
- ``"glob"``: explicit ``a_glob`` / ``b_glob`` (relative to the source, or absolute); the subject id
  is the file name without extension and without a trailing contrast token (``_T1w``, ``-t2``...),
  so ``x_T1w.nii.gz`` and ``x_T2w.nii.gz`` pair up.
- ``"png"``: GAN-MRI folders ``trainA/ trainB/ testA/ testB/`` (see :mod:`gan_mri.data.png`).

Lesion labels of any volume layout can also come from an explicit ``lesion_glob`` (for BIDS it replaces
the ``*_label-lesion*`` files found): each file goes to the subject whose id its name carries, before
tokens such as ``_lesion``, ``_label``, ``_mask``, ``_seg`` (:func:`lesion_subject`).

``"auto"`` picks the first registered layout that matches, in registration order: bids, hcp, ixi,
brats, png, then the layouts registered since (``glob`` is never picked: it needs its globs; a folder
holding the files of two layouts gets the earlier one).
The train/test split is by subject (:func:`split_subjects`), never by slice.

Each layout is registered once, as a :class:`Layout` in :data:`LAYOUT_REGISTRY` (name, description,
``discover`` and ``detect`` functions); :func:`detect_layout`, :func:`discover`, ``prepare`` and the CLI's
``--layout`` read that registry. Adding a layout is one :func:`register_layout` call::

    def discover_study(source):
        return [VolumeSet(d.name, None, d / "t1.nii.gz", d / "t2.nii.gz") for d in sorted(source.glob("case*"))]

    register_layout(Layout("study", "case*/t1.nii.gz and t2.nii.gz", discover_study))
"""

from __future__ import annotations

import glob as _glob
import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..registry import Registry

logger = logging.getLogger(__name__)

PNG_FOLDERS = ("trainA", "trainB", "testA", "testB")
_NIFTI = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)
_CONTRAST_TOKEN = re.compile(r"[_\-.]?(t1w?|t2w?|t1n)$", re.IGNORECASE)
# Trailing words of lesion label file names (BIDS "label-lesion_roi", "desc-lesion_mask", BraTS "_seg").
_LESION_TOKEN = re.compile(r"(^|[_\-.])(lesions?|labels?|mask|seg|roi|desc)$", re.IGNORECASE)
_BIDS_ENTITY = re.compile(r"(?:^|_)(sub|ses)-([A-Za-z0-9]+)")


@dataclass(frozen=True)
class VolumeSet:
    """The volumes of one subject (and session).

    Attributes:
        subject: subject id; the unit of the train/test split.
        session: session id or ``None``.
        a: T1-weighted volume or ``None``.
        b: T2-weighted volume or ``None``.
        labels: tissue-label volume (0 bg, 1 CSF, 2 GM, 3 WM) or ``None``.
        brain_mask: brain-mask volume on the T1w's grid (used for both contrasts) or ``None``: the mask is
            then found from the images (:func:`gan_mri.data.brain_mask.brain_mask`).
        lesions: lesion label volume on the T1w's grid (0 outside, one value per lesion or 1 for all;
            BIDS ``*_label-lesion*``) or ``None``.
    """

    subject: str
    session: str | None
    a: Path | None
    b: Path | None
    labels: Path | None = None
    brain_mask: Path | None = None
    lesions: Path | None = None

    @property
    def name(self) -> str:
        """``subject`` or ``subject_session``: the id used in manifests and test batches."""
        return self.subject if self.session is None else f"{self.subject}_{self.session}"


def _strip_nifti(name: str) -> str:
    return _NIFTI.sub("", name)


def _first(paths, what: str, where) -> Path | None:
    paths = sorted(paths)
    if len(paths) > 1:
        logger.warning("%s: %d %s files, using %s", where, len(paths), what, paths[0].name)
    return paths[0] if paths else None


def _niftis(folder: Path, suffix: str):
    # The phantom's structure labels (*_desc-structures_dseg) are not the tissue classes a *_dseg holds.
    return [p for p in folder.glob(f"*_{suffix}.nii*") if _NIFTI.search(p.name) and "_desc-structures_" not in p.name]


def _discover_bids(source: Path) -> list[VolumeSet]:
    sets = []
    for anat in sorted(source.glob("sub-*/anat")) + sorted(source.glob("sub-*/ses-*/anat")):
        subject = anat.parts[len(source.parts)]
        session = anat.parent.name if anat.parent.name.startswith("ses-") else None
        a = _first(_niftis(anat, "T1w"), "T1w", anat)
        b = _first(_niftis(anat, "T2w"), "T2w", anat)
        if a or b:
            lesions = [p for p in anat.glob("*_label-lesion*.nii*") if _NIFTI.search(p.name)]
            sets.append(VolumeSet(subject, session, a, b, _first(_niftis(anat, "dseg"), "dseg", anat),
                                  _first(_niftis(anat, "desc-brain_mask"), "brain mask", anat),
                                  _first(lesions, "lesion label", anat)))
    return sets


def _discover_hcp(source: Path) -> list[VolumeSet]:
    sets = []
    for a in sorted(source.glob("*/T1w/T1w_acpc_dc_restore_brain.nii*")):
        subject_dir = a.parent.parent
        b = _first(list(subject_dir.glob("T1w/T2w_acpc_dc_restore_brain.nii*"))
                   + list(subject_dir.glob("T2w/T2w_acpc_dc_restore_brain.nii*")), "T2w", subject_dir)
        sets.append(VolumeSet(subject_dir.name, None, a, b))
    return sets


def _pair_by_key(a_paths, b_paths, key) -> list[VolumeSet]:
    a_by, b_by = {}, {}
    for paths, table in ((a_paths, a_by), (b_paths, b_by)):
        for path in sorted(paths):
            table.setdefault(key(path), path)
    return [VolumeSet(name, None, a_by.get(name), b_by.get(name)) for name in sorted(set(a_by) | set(b_by))]


def _discover_ixi(source: Path) -> list[VolumeSet]:
    pattern = re.compile(r"^(IXI\d{3}-[A-Za-z]+-\d{4})-(T1|T2)\.nii(\.gz)?$")
    found = [p for p in source.rglob("IXI*") if pattern.match(p.name)]
    a = [p for p in found if pattern.match(p.name).group(2) == "T1"]
    b = [p for p in found if pattern.match(p.name).group(2) == "T2"]
    return _pair_by_key(a, b, lambda p: pattern.match(p.name).group(1))


def _discover_brats(source: Path) -> list[VolumeSet]:
    a = list(source.rglob("*_t1.nii.gz")) + list(source.rglob("*-t1n.nii.gz"))
    b = list(source.rglob("*_t2.nii.gz")) + list(source.rglob("*-t2w.nii.gz"))
    return _pair_by_key(a, b, lambda p: re.sub(r"([_-](t1|t2|t1n|t2w))$", "", _strip_nifti(p.name)))


def glob_subject_id(path: Path) -> str:
    """Subject id of a file found by an explicit glob: name without extension and contrast token."""
    stem = _strip_nifti(Path(path).name)
    return _CONTRAST_TOKEN.sub("", stem) or stem


def _expand_glob(source: Path, pattern: str, field: str) -> list[Path]:
    full = pattern if Path(pattern).is_absolute() else str(source / pattern)
    paths = sorted(Path(p) for p in _glob.glob(full, recursive=True) if Path(p).is_file())
    if not paths:
        raise ValueError(f"{field}: the glob {full!r} matched no files (expected NIfTI volumes)")
    return paths


def _lesion_candidates(path: Path, source: Path) -> list[str]:
    """Subject ids a lesion label file may carry, most specific first (see :func:`lesion_subject`)."""
    stem = _strip_nifti(path.name)
    candidates = [stem]
    while True:
        shorter = _LESION_TOKEN.sub("", stem)
        shorter = _CONTRAST_TOKEN.sub("", shorter) if shorter == stem else shorter
        if shorter == stem or not shorter:
            break
        candidates.append(shorter)
        stem = shorter
    entities = dict(match.groups() for match in _BIDS_ENTITY.finditer(path.name))
    if "sub" in entities:  # BIDS names carry other entities (space-, acq-) between subject and label
        candidates.append("_".join(f"{key}-{entities[key]}" for key in ("sub", "ses") if key in entities))
    try:
        folders = path.resolve().parent.relative_to(source.resolve()).parts
    except ValueError:
        folders = ()
    return candidates + list(reversed(folders))  # e.g. HCP's <subject>/T1w/lesion.nii.gz


def lesion_subject(path, source, subjects) -> str | None:
    """The subject a lesion label file belongs to, by the id the layout gives the subject.

    The candidates, most specific first: the file name without extension; the same with trailing tokens
    stripped one at a time (``lesion(s)``, ``label(s)``, ``mask``, ``seg``, ``roi``, ``desc``, and the
    contrast tokens of :func:`glob_subject_id`), so ``case7_T1w_lesion.nii.gz`` and
    ``sub-01_label-lesion_mask.nii.gz`` reach ``case7`` and ``sub-01``; for a BIDS name, its ``sub-``
    (and ``ses-``) entities; then the folders above the file below ``source``, nearest first.

    Args:
        path: the lesion label file.
        source: the layout's root folder.
        subjects: the layout's subject ids (:attr:`VolumeSet.name`).

    Returns:
        The first candidate that is one of ``subjects``, or ``None``.
    """
    subjects = set(subjects)
    return next((key for key in _lesion_candidates(Path(path), Path(source)) if key in subjects), None)


def _with_lesion_glob(source: Path, sets: list[VolumeSet], lesion_glob: str) -> list[VolumeSet]:
    """``sets`` with their lesion labels from ``lesion_glob`` (none for a subject no file matches)."""
    paths = _expand_glob(source, lesion_glob, "lesion_glob")
    by_name = {volume_set.name: volume_set for volume_set in sets}
    volumes = {path.resolve(): (volume_set.name, what) for volume_set in sets
               for what, path in (("T1w", volume_set.a), ("T2w", volume_set.b)) if path is not None}
    found: dict[str, Path] = {}
    problems = []
    for path in paths:
        if path.resolve() in volumes:
            name, what = volumes[path.resolve()]
            problems.append(f"{path} is the {what} volume of subject {name}; expected lesion label volumes")
            continue
        name = lesion_subject(path, source, by_name)
        if name is None:
            listing = ", ".join(sorted(by_name)[:20]) + (f", ... ({len(by_name)} in all)" if len(by_name) > 20 else "")
            problems.append(f"{path} matches no subject; subjects are {listing} (expected a file named after its "
                            "subject, optionally followed by tokens such as _lesion, _label, _mask, _seg)")
        elif name in found:
            problems.append(f"{found[name]} and {path} both match subject {name}; expected one lesion label "
                            "file per subject")
        else:
            found[name] = path
    if problems:
        listing = "\n".join(f"  - {problem}" for problem in problems)
        raise ValueError(f"lesion_glob {lesion_glob!r}: found {len(problems)} problem(s):\n{listing}")
    logger.info("lesion_glob %r: lesion labels for %d of %d subjects", lesion_glob, len(found), len(sets))
    return [replace(volume_set, lesions=found.get(volume_set.name)) for volume_set in sets]


def _discover_glob(source: Path, a_glob, b_glob) -> list[VolumeSet]:
    a = _expand_glob(source, a_glob, "a_glob") if a_glob else []
    b = _expand_glob(source, b_glob, "b_glob") if b_glob else []
    return _pair_by_key(a, b, glob_subject_id)


def _is_png_layout(source: Path) -> bool:
    return any((source / name).is_dir() for name in PNG_FOLDERS)


@dataclass(frozen=True)
class Layout:
    """A folder layout that ``prepare`` reads, registered once in :data:`LAYOUT_REGISTRY`.

    Attributes:
        name: the value of ``layout=`` and ``--layout``.
        description: the files the layout expects, in errors when nothing matches and in the docs.
        discover: ``discover(source: Path) -> [VolumeSet]``, the subjects below ``source`` (an empty
            list when none match); ``None`` for a layout that is not read as volumes (png: images,
            :mod:`gan_mri.data.png`; glob: its globs come from :func:`discover`'s arguments).
        detect: ``detect(source: Path) -> bool``, whether ``layout="auto"`` picks this layout; ``None``
            tries ``discover`` instead, and a layout with neither is never picked automatically.
        pairing: how ``prepare(pair="auto")`` is to meet a test subject's T2w with its T1w, one of
            ``prepare``'s other ``pair`` values: ``"grid"`` (the layout's pairs share a voxel grid) or
            ``"register"`` (scans acquired apart, as IXI's).
    """

    name: str
    description: str
    discover: Callable[[Path], list[VolumeSet]] | None = None
    detect: Callable[[Path], bool] | None = None
    pairing: str = "grid"

    def matches(self, source: Path) -> bool:
        """Whether ``layout="auto"`` picks this layout for ``source``."""
        if self.detect is not None:
            return bool(self.detect(source))
        return self.discover is not None and bool(self.discover(source))


def _check_layout(layout: Layout, registry: Registry) -> None:
    if layout.name == "auto":
        raise ValueError("layout name 'auto' is taken: it means the first registered layout that matches")


LAYOUT_REGISTRY: Registry[Layout] = Registry("data layout", _check_layout)
"""Layout name -> :class:`Layout`, in the order ``layout="auto"`` tries them; read by
:func:`detect_layout`, :func:`discover`, ``prepare`` and the CLI's ``--layout``."""


def register_layout(layout: Layout, replace: bool = False) -> Layout:
    """Registers a folder layout (``Registry.register``; ``LAYOUT_REGISTRY.registered`` for a ``with`` block).

    Raises:
        ValueError: for a name already registered (without ``replace``) or the name ``"auto"``.
    """
    return LAYOUT_REGISTRY.register(layout, replace=replace)


register_layout(Layout("bids", "sub-*/[ses-*/]anat/*_T1w.nii[.gz] and *_T2w.nii[.gz]", _discover_bids))
register_layout(Layout("hcp", "*/T1w/T1w_acpc_dc_restore_brain.nii.gz and T2w_acpc_dc_restore_brain.nii.gz",
                       _discover_hcp))
register_layout(Layout("ixi", "IXI###-Site-####-T1.nii.gz and -T2.nii.gz", _discover_ixi, pairing="register"))
register_layout(Layout("brats", "*_t1.nii.gz and *_t2.nii.gz", _discover_brats))
register_layout(Layout("glob", "explicit a_glob / b_glob (--a-glob / --b-glob)"))
register_layout(Layout("png", "trainA/ trainB/ testA/ testB/ folders of PNG files", detect=_is_png_layout))

LAYOUTS = LAYOUT_REGISTRY.names("auto")
"""The values of ``layout=``: "auto", then every registered layout (a live tuple-like sequence)."""


def detect_layout(source) -> str:
    """Name of the first registered layout that matches ``source`` (bids, hcp, ixi, brats, png, then
    the layouts registered since).

    Raises:
        FileNotFoundError: if ``source`` is not a folder.
        ValueError: if no layout matches, listing the patterns looked for.
    """
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: source folder not found")
    for layout in LAYOUT_REGISTRY.values():
        if layout.matches(source):
            return layout.name
    expected = "; ".join(f"{layout.name}: {layout.description}" for layout in LAYOUT_REGISTRY.values()
                         if layout.detect is not None or layout.discover is not None)
    raise ValueError(f"{source}: found no known layout (expected one of {expected}; or pass a_glob/b_glob)")


def discover(source, layout: str = "auto", a_glob: str | None = None, b_glob: str | None = None,
             lesion_glob: str | None = None):
    """Find the subjects and their T1w/T2w (and label) volumes below ``source``.

    Args:
        source: root folder.
        layout: one of :data:`LAYOUTS` except ``"png"`` (PNG folders are read by :mod:`.png`): ``"auto"``
            or a name of :data:`LAYOUT_REGISTRY`.
        a_glob, b_glob: explicit globs for domain A / B (imply ``layout="glob"`` under ``"auto"``).
        lesion_glob: explicit glob of lesion label volumes (relative to ``source``, or absolute), each
            matched to its subject by :func:`lesion_subject`; replaces the BIDS ``*_label-lesion*`` files.

    Returns:
        ``(layout_name, [VolumeSet, ...])`` sorted by subject and session.

    Raises:
        FileNotFoundError: if ``source`` is not a folder.
        ValueError: for an unknown layout, when nothing matches (naming the folder or glob), or, listing
            every one of them, lesion label files that match no subject, or two that match one.
    """
    source = Path(source)
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {LAYOUTS}, found {layout!r}")
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: source folder not found")
    if layout == "auto":
        layout = "glob" if (a_glob or b_glob) else detect_layout(source)
    if layout == "glob":
        if not (a_glob or b_glob):
            raise ValueError("layout 'glob': expected a_glob and/or b_glob, found neither")
        sets = _discover_glob(source, a_glob, b_glob)
    elif LAYOUT_REGISTRY[layout].discover is None:
        raise ValueError(f"{source}: the {layout} layout holds images, not volumes; use gan_mri.data.png")
    else:
        sets = LAYOUT_REGISTRY[layout].discover(source)
    if not sets:
        raise ValueError(f"{source}: layout {layout!r} expected files matching "
                         f"{LAYOUT_REGISTRY[layout].description}, found none")
    if lesion_glob:
        sets = _with_lesion_glob(source, sets, lesion_glob)
    logger.info("%s: layout %s, %d subject volume sets", source, layout, len(sets))
    return layout, sorted(sets, key=lambda s: (s.subject, s.session or ""))


def split_subjects(subjects, test_fraction: float, seed: int, pairable=None) -> tuple[list[str], list[str]]:
    """Split subject ids into train and test, by subject, reproducibly.

    Args:
        subjects: subject ids (duplicates are merged).
        test_fraction: fraction of subjects for the test set, in [0, 1]; 1 puts every pairable subject in
            the test set (a test-only dataset, to evaluate on).
        seed: seed of the permutation.
        pairable: subject ids that have both contrasts (only these can be test subjects);
            default: all.

    Returns:
        ``(train_ids, test_ids)``, each sorted; disjoint.

    Raises:
        ValueError: for a bad fraction, or too few pairable subjects for a non-empty test set.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction: expected a value in [0, 1], found {test_fraction!r}")
    unique = sorted(set(subjects))
    candidates = sorted(set(unique if pairable is None else pairable) & set(unique))
    if test_fraction == 0.0:
        return unique, []
    if test_fraction == 1.0:
        if not candidates:
            raise ValueError(f"test_fraction=1.0: expected subjects with both T1w and T2w, found none of "
                             f"{len(unique)}")
        return sorted(set(unique) - set(candidates)), candidates
    n_test = max(1, int(round(test_fraction * len(unique))))
    n_test = min(n_test, len(candidates))
    if n_test == 0 or len(unique) - n_test < 1:
        raise ValueError(
            f"test_fraction={test_fraction}: expected at least 2 subjects with at least one having both "
            f"T1w and T2w, found {len(unique)} subjects, {len(candidates)} with both"
        )
    order = np.random.default_rng(int(seed)).permutation(len(candidates))
    test = sorted(candidates[i] for i in order[:n_test])
    train = sorted(set(unique) - set(test))
    return train, test
