"""The embedded brain phantom: a simulated multi-contrast BIDS cohort (no download).

:func:`simulate` writes the cohort. Its default anatomy (``anatomy="synthseg"``, since 2026-12-07) is real:
SynthSeg's 20 label maps of real heads, rendered by :mod:`gan_mri.data.real_anatomy` with per-structure tissue
parameters (:mod:`gan_mri.data.tissues`), the subject's protocol (:mod:`gan_mri.data.protocols`) and the scanner of
:mod:`gan_mri.data.scanner` (docs/phantom.md). ``anatomy="mni152"`` is the phantom of earlier releases, built here
by :func:`simulate_subject` (DESIGN.md section 4; its calibration in docs/phantom.md):

- Anatomy: the MNI152 (ICBM 2009a) grey- and white-matter probability maps and brain mask that nilearn
  ships; CSF = clip(brain mask - GM - WM, 0, 1). The three maps give partial volume for free. With
  ``head=True`` (the default) a head is wrapped around the brain (:mod:`gan_mri.data.head`:
  subarachnoid CSF, skull tables and diploë, muscle, fat and skin), so whole-head scans are in
  distribution.
- Physics (:mod:`gan_mri.data.sequences`): per tissue, the magnitude signal of the sequence with 3T
  relaxation values. T1w: MPRAGE (TR 2300, TI 1100 ms, flip 10 deg) by default, as HCP, ADNI and the MNI
  templates' kind of T1w, or the lineage's spin echo (TR 500 / TE 10 ms, ``t1w_sequence="se"``);
  T2w: turbo spin echo (TR 4000, effective TE 80 ms) or spin echo (TR 4000 / TE 100 ms). The defaults
  were calibrated on the real ICBM 2009c templates: grey matter, CSF and ventricles relative to white
  matter agree within 15 % in both contrasts. A voxel's signal is the fraction-weighted sum of its
  tissues' signals.
- Population: each subject gets its own smooth random deformation (a few mm), a small affine
  (rotation, scale, shift), head-layer thicknesses, tissue-parameter jitter (log-normal, a few %), its
  own scanner protocol (sequence timings and flip angle jittered), a point-spread blur, a smooth
  multiplicative bias field per contrast, Rician noise of its own level and a scanner gain, then is
  stored as int16 like scanner data.
- Files per subject: ``T1w`` and ``T2w`` (with a BIDS JSON sidecar naming the sequence and its
  timings), ``dseg`` (0 background, 1 CSF, 2 GM, 3 WM: the most probable brain class) and
  ``desc-brain_mask``. A share of the subjects (``skull_stripped``) is written brain-extracted
  (T1w and T2w zero outside the brain mask), as skull-stripped data sets are.
- Determinism: subject ``i`` draws from ``numpy.random.default_rng([seed, i])``, so it is the same
  whatever ``n_subjects`` is; nibabel writes gzip with mtime 0, so files are byte-identical per seed.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..fileutil import atomic_output
from .head import HEAD_TISSUES, LAYERS, head_fractions, meninges_fraction
from .layouts import split_subjects
from .lesion_kinds import white_matter_lesions
from .scanner import random_pose, scan, smooth_field
from .sequences import SEQUENCES, TISSUES, jitter_timings, sequence

logger = logging.getLogger(__name__)

BRAIN_TISSUES = ("CSF", "GM", "WM")
#: 3T tissue parameters of the brain: (T1 ms, T2 ms, proton density), in label order CSF, GM, WM.
TISSUE_PARAMETERS = {name: TISSUES[name] for name in BRAIN_TISSUES}
#: Label values written in ``*_dseg.nii.gz``.
LABELS = {"background": 0, "CSF": 1, "GM": 2, "WM": 3}
CONTRASTS = ("T1w", "T2w")
BRAIN_MASK_SUFFIX = "desc-brain_mask"


@functools.lru_cache(maxsize=2)
def load_templates(resolution: int = 2):
    """MNI152 T1 template, tissue probabilities and brain mask from nilearn (cached per resolution).

    Args:
        resolution: voxel size in mm (1 or 2).

    Returns:
        ``(t1_template, probabilities, brain_mask, affine)``: float32 template, float32
        ``(3, X, Y, Z)`` probabilities of CSF, GM, WM summing to at most 1, bool mask, 4x4 affine.

    Raises:
        ValueError: for a resolution other than 1 or 2.
    """
    if resolution not in (1, 2):
        raise ValueError(f"resolution: expected 1 or 2 (mm), found {resolution!r}")
    from nilearn import datasets  # imported lazily: it is slow and only the phantom needs it

    # nilearn's 2 mm templates are resampled at every call (~4 s here); the 1 mm files load in under
    # a second, and a [1/4, 1/2, 1/4] filter + every other voxel gives the same 2 mm grid (the
    # 2 mm voxel centres are the even 1 mm voxel centres), anti-aliased.
    template = datasets.load_mni152_template(resolution=1)
    volumes = [template.get_fdata(), datasets.load_mni152_brain_mask(resolution=1).get_fdata(),
               datasets.load_mni152_gm_template(resolution=1).get_fdata(),
               datasets.load_mni152_wm_template(resolution=1).get_fdata()]
    affine = template.affine.copy()
    if resolution == 2:
        volumes = [_downsample_by_two(volume) for volume in volumes]
        affine[:3, :3] *= 2.0
    t1, mask, gm, wm = volumes
    mask = mask > 0.5
    gm = np.clip(gm, 0.0, 1.0) * mask
    wm = np.clip(wm, 0.0, 1.0) * mask
    total = gm + wm
    over = total > 1.0
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    probabilities = np.stack([csf, gm, wm]).astype(np.float32)
    return t1.astype(np.float32), probabilities, mask, affine


def _downsample_by_two(volume: np.ndarray) -> np.ndarray:
    smooth = np.asarray(volume, dtype=np.float32)
    for axis in range(3):
        smooth = ndimage.convolve1d(smooth, [0.25, 0.5, 0.25], axis=axis, mode="nearest")
    return smooth[::2, ::2, ::2]


def tissue_signal(t1: float, t2: float, pd: float, sequence_name: str) -> float:
    """Magnitude signal of one tissue under the sequence ``sequence_name`` of :data:`SEQUENCES`
    (e.g. ``"T1w-mprage"``)."""
    return float(SEQUENCES[sequence_name].signal(t1, t2, pd))


def _warp_coordinates(rng, shape, voxel_mm: float, deformation_mm, rotation_deg, scale_jitter, translation_mm):
    """Source coordinates of each output voxel: a small affine about the centre plus a smooth warp."""
    matrix = random_pose(rng, rotation_deg, scale_jitter)
    shift = rng.uniform(-translation_mm, translation_mm, size=3) / voxel_mm
    centre = (np.asarray(shape) - 1) / 2.0
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    coords = (matrix.astype(np.float32) @ (grid - centre[:, None].astype(np.float32))) + (centre + shift)[:, None]
    warp = smooth_field(rng, shape, 3, frequencies=8) * (deformation_mm / voxel_mm)
    return (coords + warp.reshape(3, -1)).astype(np.float32)


def simulate_subject(
    rng: np.random.Generator,
    resolution: int = 2,
    deformation_mm: float = 2.0,
    rotation_deg: float = 3.0,
    scale_jitter: float = 0.03,
    translation_mm: float = 2.0,
    bias_field: float = 0.1,
    noise: float = 0.02,
    tissue_jitter: float = 0.05,
    t1w_sequence: str = "mprage",
    t2w_sequence: str = "tse",
    sequence_jitter: float = 0.08,
    head: bool = True,
    blur_mm: float = 1.0,
    lesions: int = 0,
):
    """Simulate one subject in memory.

    Args:
        rng: numpy Generator (its draws define the subject).
        resolution: template voxel size in mm (1 or 2).
        deformation_mm: standard deviation of the smooth displacement, mm.
        rotation_deg, scale_jitter, translation_mm: bounds of the uniform random affine.
        bias_field: standard deviation of the log bias field (0.1 ~ +-10 %).
        noise: largest Rician noise standard deviation relative to the white-matter signal; each
            subject draws its own level uniformly between a quarter of it and it.
        tissue_jitter: log-normal standard deviation of T1, T2 and PD per tissue.
        t1w_sequence: ``"mprage"`` or ``"se"`` (:data:`gan_mri.data.sequences.SEQUENCES`).
        t2w_sequence: ``"tse"`` or ``"se"``.
        sequence_jitter: log-normal standard deviation of each timing and flip angle of the subject's
            protocol (:func:`gan_mri.data.sequences.jitter_timings`).
        head: wrap a head (skull, scalp, extra-cerebral CSF) around the brain.
        blur_mm: largest standard deviation of the subject's Gaussian point-spread blur (drawn uniformly
            from 0 to it).
        lesions: number of white-matter hyperintensities (:func:`white_matter_lesions`). They are drawn
            from a generator spawned from ``rng``, so the subject is otherwise the same as without them.

    Returns:
        ``{"T1w": int16, "T2w": int16, "dseg": uint8, "brain_mask": bool, "affine": 4x4,
        "protocols": {"T1w": sequence, "T2w": sequence}}``, and with ``lesions`` ``"lesions"``: uint8
        labels, 1..n one per lesion (the dseg keeps them as white matter).

    Raises:
        ValueError: for an unknown sequence or a negative variation parameter.
    """
    protocols = {"T1w": sequence("T1w", t1w_sequence), "T2w": sequence("T2w", t2w_sequence)}
    for name, value in (("deformation_mm", deformation_mm), ("rotation_deg", rotation_deg),
                        ("scale_jitter", scale_jitter), ("translation_mm", translation_mm),
                        ("bias_field", bias_field), ("noise", noise), ("tissue_jitter", tissue_jitter),
                        ("sequence_jitter", sequence_jitter), ("blur_mm", blur_mm), ("lesions", lesions)):
        if not value >= 0:
            raise ValueError(f"{name}: expected a value >= 0, found {value!r}")
    _, probabilities, template_mask, affine = load_templates(resolution)
    shape = probabilities.shape[1:]
    meninges = meninges_fraction(probabilities[0], template_mask, float(resolution))
    tissues = [*BRAIN_TISSUES, "meninges"]
    maps = [probabilities[0] - meninges, probabilities[1], probabilities[2], meninges]
    if head:
        fractions = head_fractions(template_mask, float(resolution), smooth_field(rng, shape, len(LAYERS), 3))
        tissues += list(HEAD_TISSUES)
        maps += [fractions[name] for name in HEAD_TISSUES]
    coords = _warp_coordinates(rng, shape, float(resolution), deformation_mm, rotation_deg, scale_jitter,
                               translation_mm)
    warped = np.stack([ndimage.map_coordinates(p, coords, order=1, mode="constant", cval=0.0).reshape(shape)
                       for p in maps])
    brain = warped[:len(BRAIN_TISSUES)].copy()
    brain[0] += warped[len(BRAIN_TISSUES)]  # the meninges are labelled CSF
    brain_mask = brain.sum(axis=0) > 0.5
    # The most probable brain class inside the brain mask, so that the labels and the mask agree.
    dseg = np.where(brain_mask, 1 + np.argmax(brain, axis=0), 0).astype(np.uint8)
    lesion_map = lesion_labels = None
    if lesions:
        lesion_rng = rng.spawn(1)[0]  # spawning draws nothing from rng: the rest of the subject is unchanged
        lesion_map, lesion_labels = white_matter_lesions(lesion_rng, warped[2], int(lesions), float(resolution))
        warped[2] -= lesion_map
        lesion_parameters = np.array(TISSUES["WMH"]) * np.exp(lesion_rng.normal(0.0, tissue_jitter, size=3))

    jitter = np.exp(rng.normal(0.0, tissue_jitter, size=(len(tissues), 3)))
    parameters = np.array([TISSUES[name] for name in tissues]) * jitter
    blur = rng.uniform(0.0, blur_mm) / resolution
    noise_level = noise * rng.uniform(0.25, 1.0)
    volumes = {}
    for contrast in CONTRASTS:
        protocols[contrast] = jitter_timings(rng, protocols[contrast], sequence_jitter)
        signals = protocols[contrast].signal(*parameters.T).astype(np.float32)
        clean = np.tensordot(signals, warped, axes=1)
        if lesion_map is not None:
            clean += protocols[contrast].signal(*lesion_parameters).astype(np.float32) * lesion_map
        volumes[contrast] = scan(rng, clean, blur, bias_field, noise_level * float(signals[tissues.index("WM")]),
                                 float(signals[:len(BRAIN_TISSUES)].max()))
    subject = {"T1w": volumes["T1w"], "T2w": volumes["T2w"], "dseg": dseg, "brain_mask": brain_mask,
               "affine": affine, "protocols": protocols}
    if lesion_labels is not None:
        subject["lesions"] = lesion_labels
    return subject


SEQUENCE_TYPES = {"SpinEcho": "SE", "TurboSpinEcho": "TSE"}


def bids_sidecar(protocol) -> dict:
    """BIDS JSON sidecar fields of a sequence (times in seconds, as BIDS wants)."""
    fields = {"RepetitionTime": protocol.TR / 1000.0}
    if hasattr(protocol, "TI"):
        fields.update(PulseSequenceType="MPRAGE", InversionTime=protocol.TI / 1000.0, FlipAngle=protocol.flip,
                      EchoTime=protocol.TE / 1000.0)
    else:
        fields.update(PulseSequenceType=SEQUENCE_TYPES[type(protocol).__name__], EchoTime=protocol.TE / 1000.0)
    return {key: round(value, 6) if isinstance(value, float) else value for key, value in fields.items()}


def mni_t1_correlation(t1w: np.ndarray, resolution: int = 2) -> float:
    """Pearson correlation of a T1w volume with nilearn's MNI152 T1 template inside its brain mask.

    Args:
        t1w: array on the template grid (e.g. a simulated T1w).
        resolution: the grid's voxel size in mm.

    Returns:
        The correlation coefficient.

    Raises:
        ValueError: if the shapes differ.
    """
    template, _, mask, _ = load_templates(resolution)
    if tuple(np.shape(t1w)) != tuple(template.shape):
        raise ValueError(f"t1w: expected shape {template.shape} (the template grid), found {np.shape(t1w)}")
    return float(np.corrcoef(np.asarray(t1w, dtype=np.float64)[mask], template[mask])[0, 1])


def save_atomically(image, path: Path) -> None:
    """Writes a nibabel image to ``path`` under a hidden temporary name, then renames it into place."""
    with atomic_output(path) as temporary:
        nib.save(image, str(temporary))


def nifti_image(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A NIfTI-1 image of ``array`` with ``affine`` as its sform and qform (scanner space) and mm units."""
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    return image


LESION_SUFFIX = "label-lesion_mask"
"""BIDS suffix of a lesion label map (``sub-XX_label-lesion_mask.nii.gz``: 0 outside, 1..n per lesion)."""
STRUCTURES_SUFFIX = "desc-structures_dseg"
"""BIDS suffix of the real-anatomy subjects' structure labels (FreeSurfer codes, named in the root's
``desc-structures_dseg.tsv``)."""
LESIONS_IN = ("test", "all")
ANATOMIES = ("synthseg", "mni152")
"""``"synthseg"``: SynthSeg's 20 real label maps (:mod:`gan_mri.data.real_anatomy`, the default); ``"mni152"``:
the MNI152 template's three tissue classes (:func:`simulate_subject`), the phantom of earlier releases."""
PROTOCOL_KEYS = {"t1w_sequence": "t1w", "t2w_sequence": "t2w", "field": "field", "slice_mm": "slice_mm",
                 "gap_mm": "gap_mm"}
"""``simulate`` keywords that fix one protocol for every real-anatomy subject -> :class:`Protocols` fields."""


def _keywords(function, *without) -> set:
    code = function.__code__
    return set(code.co_varnames[1:code.co_argcount]) - set(without)


def label_map_order(seed: int) -> np.ndarray:
    """The label maps (1..20) of a real-anatomy cohort in subject order: subject ``i`` is built on map
    ``order[i % 20]``, a permutation drawn from the cohort seed, so every map is used once before any repeats
    (the 20 subjects of one cohort are 20 different heads)."""
    from .anatomy import LABEL_MAPS

    return np.random.default_rng([int(seed), 2**31 - 1]).permutation(LABEL_MAPS) + 1


def _subject_builder(anatomy: str, seed: int, resolution: int, protocols: str, lesion_kind: str, variation: dict):
    """``build(index, lesions) -> subject`` for one cohort, after checking the keywords against ``anatomy``."""
    if anatomy not in ANATOMIES:
        raise ValueError(f"anatomy: expected one of {list(ANATOMIES)}, found {anatomy!r}")
    if anatomy == "mni152":
        allowed = _keywords(simulate_subject, "resolution", "lesions")
        if protocols != "research" or lesion_kind != "wmh":
            raise ValueError(f"anatomy 'mni152': expected protocols 'research' and lesion_kind 'wmh' (the other "
                             f"protocols and lesion kinds need the real anatomy), found {protocols!r}, {lesion_kind!r}")
    else:
        from .real_anatomy import simulate_labelled_subject

        allowed = _keywords(simulate_labelled_subject, "number", "resolution", "lesions", "lesion_kind",
                            "protocols") | set(PROTOCOL_KEYS)
    unknown = sorted(set(variation) - allowed)
    if unknown:
        raise ValueError(f"simulate: unknown keyword(s) {unknown} for anatomy {anatomy!r}; expected some of "
                         f"{sorted(allowed)}")
    if anatomy == "mni152":
        return lambda index, lesions: simulate_subject(np.random.default_rng([int(seed), index]),
                                                       resolution=resolution, lesions=lesions, **variation)
    from .protocols import Protocols, draw_protocols

    fixed = {PROTOCOL_KEYS[key]: variation.pop(key) for key in list(variation) if key in PROTOCOL_KEYS}
    if fixed and protocols != "research":
        raise ValueError(f"simulate: give either protocols={protocols!r} or fixed sequences {sorted(fixed)}, not both")
    if fixed.get("slice_mm", 0) > 0:
        fixed["two_d"] = ("T1w", "T2w")
    fixed_protocols = Protocols(**fixed) if fixed else None
    order = label_map_order(seed)

    def build(index, lesions):
        subject_protocols = fixed_protocols or draw_protocols(np.random.default_rng([int(seed), index, 1]), protocols)
        return simulate_labelled_subject(np.random.default_rng([int(seed), index]), int(order[index % len(order)]),
                                         resolution=resolution, protocols=subject_protocols, lesions=lesions,
                                         lesion_kind=lesion_kind, **variation)

    return build


def simulate(n_subjects: int, out_dir, seed: int = 0, resolution: int = 2, overwrite: bool = False,
             skull_stripped: float = 0.5, lesions: int = 0, lesions_in: str = "test", test_fraction: float = 0.2,
             split_seed: int = 0, anatomy: str = "synthseg", protocols: str = "research", lesion_kind: str = "wmh",
             **variation):
    """Write a simulated BIDS cohort: ``sub-XX/anat/sub-XX_{T1w,T2w,dseg,desc-brain_mask}.nii.gz``.

    Args:
        n_subjects: number of subjects (>= 1).
        out_dir: BIDS root to create (or fill, if empty).
        seed: cohort seed; subject ``i`` uses ``default_rng([seed, i])``.
        resolution: voxel size in mm (2 is fast; 1 for detail).
        overwrite: replace existing subject files instead of raising.
        skull_stripped: share of the subjects written brain-extracted (T1w and T2w set to 0 outside the
            brain mask), evenly spread (0.5: every second subject, from ``sub-02``). Ignored without a head.
        lesions: lesions per lesioned subject, with their labels in ``sub-XX_label-lesion_mask.nii.gz``.
        lesions_in: ``"test"``: only the subjects that ``prepare`` with ``test_fraction`` and
            ``split_seed`` (its defaults: 0.2 and 0) puts in the test set, so that a model never sees a
            lesion in training, the realistic hazard; ``"all"``: every subject.
        test_fraction, split_seed: the split ``lesions_in="test"`` follows.
        anatomy: one of :data:`ANATOMIES`. Real-anatomy subjects also get their structure labels
            (``sub-XX_desc-structures_dseg.nii.gz``, FreeSurfer codes named in the root's
            ``desc-structures_dseg.tsv``) and the label map and protocol in ``participants.tsv``.
        protocols: ``"research"``, ``"clinical"`` or ``"mixed"`` (:func:`gan_mri.data.protocols.draw_protocols`,
            one per subject from ``default_rng([seed, i, 1])``); real anatomy only.
        lesion_kind: ``"wmh"``, ``"cavity"`` or ``"tumour"`` (:mod:`gan_mri.data.lesion_kinds`); real anatomy
            only (the MNI152 anatomy has white-matter hyperintensities).
        **variation: keyword arguments of :func:`simulate_subject` (MNI152) or of
            :func:`gan_mri.data.real_anatomy.simulate_labelled_subject` (deformation_mm, rotation_deg,
            scale_jitter, translation_mm, bias_field, noise, tissue_jitter, texture, sequence_jitter, head,
            blur_mm), and for the real anatomy one protocol for every subject: t1w_sequence, t2w_sequence,
            field (1.5 or 3), slice_mm and gap_mm (2D acquisitions of both contrasts).

    Returns:
        List of the subject folders written.

    Raises:
        ValueError: for ``n_subjects < 1``, ``skull_stripped`` outside [0, 1], a negative ``lesions``, an
            unknown ``lesions_in``, anatomy, protocols or lesion kind, unknown variation keywords, or an
            existing non-empty ``out_dir`` without ``overwrite``.
    """
    if not isinstance(n_subjects, (int, np.integer)) or n_subjects < 1:
        raise ValueError(f"n_subjects: expected an integer >= 1, found {n_subjects!r}")
    if not 0.0 <= skull_stripped <= 1.0:
        raise ValueError(f"skull_stripped: expected a share in [0, 1], found {skull_stripped!r}")
    if not isinstance(lesions, (int, np.integer)) or lesions < 0:
        raise ValueError(f"lesions: expected an integer >= 0, found {lesions!r}")
    if lesions_in not in LESIONS_IN:
        raise ValueError(f"lesions_in: expected one of {LESIONS_IN}, found {lesions_in!r}")
    from .lesion_kinds import LESION_KINDS
    from .protocols import PROTOCOL_CHOICES

    if protocols not in PROTOCOL_CHOICES:
        raise ValueError(f"protocols: expected one of {list(PROTOCOL_CHOICES)}, found {protocols!r}")
    if lesion_kind not in LESION_KINDS:
        raise ValueError(f"lesion_kind: expected one of {list(LESION_KINDS)}, found {lesion_kind!r}")
    head = variation.get("head", True)
    build = _subject_builder(anatomy, seed, resolution, protocols, lesion_kind, dict(variation))
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"{out_dir}: expected an empty or new folder (or overwrite=True), found existing files")
    out_dir.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(int(n_subjects))))
    names = [f"sub-{index + 1:0{width}d}" for index in range(int(n_subjects))]
    lesioned = set()
    if lesions:
        lesioned = set(names) if lesions_in == "all" or n_subjects < 2 else set(
            split_subjects(names, test_fraction, split_seed)[1])
    subjects, rows, codes = [], [], set()
    for index, subject in enumerate(names):
        volumes = build(index, lesions if subject in lesioned else 0)
        # Evenly spread, whatever n_subjects: subject i is stripped when (i + 1) * share passes an integer.
        stripped = head and int((index + 1) * skull_stripped) > int(index * skull_stripped)
        anat = out_dir / subject / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        protocol = volumes["protocols"]
        for suffix in CONTRASTS:
            image = volumes[suffix] * volumes["brain_mask"] if stripped else volumes[suffix]
            save_atomically(nifti_image(image.astype(np.int16), volumes["affine"]), anat / f"{subject}_{suffix}.nii.gz")
            fields = protocol.sidecar(suffix) if hasattr(protocol, "sidecar") else bids_sidecar(protocol[suffix])
            sidecar = dict(fields, SkullStripped=bool(stripped))
            (anat / f"{subject}_{suffix}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
        labels = {"dseg": volumes["dseg"], BRAIN_MASK_SUFFIX: volumes["brain_mask"].astype(np.uint8)}
        if "structures" in volumes:
            labels[STRUCTURES_SUFFIX] = volumes["structures"]
            codes.update(np.unique(volumes["structures"]).tolist())
        if "lesions" in volumes:
            labels[LESION_SUFFIX] = volumes["lesions"]
        for suffix, array in labels.items():
            save_atomically(nifti_image(array, volumes["affine"]), anat / f"{subject}_{suffix}.nii.gz")
        row = {"participant_id": subject, "skull_stripped": "yes" if stripped else "no"}
        if lesions:
            row["lesions"] = str(lesions if subject in lesioned else 0)
        if anatomy == "synthseg":
            row["anatomy"] = f"synthseg-{int(label_map_order(seed)[index % 20]):02d}"
            row.update(field_T=f"{protocol.field:g}", T1w=protocol.sidecar("T1w")["PulseSequenceType"],
                       acquisition="2D" if protocol.two_d else "3D")
        rows.append(row)
        subjects.append(out_dir / subject)
        logger.info("simulated %s%s", subject, " (skull-stripped)" if stripped else "")
    name = "gan-mri brain phantom on SynthSeg's real label maps" if anatomy == "synthseg" else "gan-mri MNI152 brain phantom"
    description = {"Name": name, "BIDSVersion": "1.8.0", "DatasetType": "raw",
                   "GeneratedBy": [{"Name": "gan-mri phantom", "Description": f"seed={int(seed)}, anatomy={anatomy}, "
                                    f"protocols={protocols}"}]}
    if anatomy == "synthseg":
        description["ReferencesAndLinks"] = [
            "Anatomy: SynthSeg's training label maps (github.com/BBillot/SynthSeg, Apache-2.0); Billot et al., "
            "Medical Image Analysis 86 (2023) 102789"]
        from .anatomy import structures_tsv

        (out_dir / f"{STRUCTURES_SUFFIX}.tsv").write_text(structures_tsv(codes))
    (out_dir / "dataset_description.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    columns = list(rows[0])
    (out_dir / "participants.tsv").write_text("\t".join(columns) + "\n"
                                              + "".join("\t".join(row[c] for c in columns) + "\n" for row in rows))
    (out_dir / "dseg.tsv").write_text("index\tname\n" + "".join(f"{v}\t{k}\n" for k, v in LABELS.items()))
    return subjects
