"""The embedded brain phantom: a simulated multi-contrast BIDS cohort built from MNI152 (no download).

Design (DESIGN.md section 4; calibration and measurements in docs/phantom.md):

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


def _smooth_field(rng, shape, components: int, frequencies: int) -> np.ndarray:
    """Smooth random fields with unit standard deviation, from a low-frequency cosine (DCT) basis.

    ``field(x, y, z) = sum_klm c_klm cos(pi k x') cos(pi l y') cos(pi m z')`` over frequencies
    ``1..frequencies`` per axis (plus 0 on the others), with ``c ~ N(0, 1) / (1 + k^2 + l^2 + m^2)``,
    ``x' = (x + 0.5) / X``. Separable, so it costs a few small tensor products (as SPM's bias basis).
    """
    bases = []
    for size in shape:
        position = (np.arange(size) + 0.5) / size
        bases.append(np.cos(np.pi * np.outer(position, np.arange(frequencies + 1))))
    k = np.arange(frequencies + 1)
    weights = 1.0 / (1.0 + k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    weights[0, 0, 0] = 0.0  # no constant offset
    fields = []
    for _ in range(components):
        coefficients = rng.standard_normal(weights.shape) * weights
        field = np.einsum("klm,xk->xlm", coefficients, bases[0])
        field = np.einsum("xlm,yl->xym", field, bases[1])
        field = np.einsum("xym,zm->xyz", field, bases[2])
        fields.append(field / max(float(field.std()), 1e-12))
    return np.stack(fields).astype(np.float32)


def _warp_coordinates(rng, shape, voxel_mm: float, deformation_mm, rotation_deg, scale_jitter, translation_mm):
    """Source coordinates of each output voxel: a small affine about the centre plus a smooth warp."""
    angles = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg, size=3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    matrix = rz @ ry @ rx @ np.diag(1.0 + rng.uniform(-scale_jitter, scale_jitter, size=3))
    shift = rng.uniform(-translation_mm, translation_mm, size=3) / voxel_mm
    centre = (np.asarray(shape) - 1) / 2.0
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1)
    coords = (matrix.astype(np.float32) @ (grid - centre[:, None].astype(np.float32))) + (centre + shift)[:, None]
    warp = _smooth_field(rng, shape, 3, frequencies=8) * (deformation_mm / voxel_mm)
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
        fractions = head_fractions(template_mask, float(resolution), _smooth_field(rng, shape, len(LAYERS), 3))
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
        if blur > 0:
            clean = ndimage.gaussian_filter(clean, blur)
        bias = np.exp(bias_field * _smooth_field(rng, shape, 1, frequencies=3)[0])
        sigma = noise_level * float(signals[tissues.index("WM")])
        real = clean * bias + rng.normal(0.0, sigma, size=shape).astype(np.float32)
        imaginary = rng.normal(0.0, sigma, size=shape).astype(np.float32)
        magnitude = np.sqrt(real * real + imaginary * imaginary)
        # Scanner gain: the brightest brain tissue lands near 1000 +- 20 % of the int16 range.
        gain = 1000.0 * rng.uniform(0.8, 1.2) / float(signals[:len(BRAIN_TISSUES)].max())
        volumes[contrast] = np.clip(np.round(magnitude * gain), 0, np.iinfo(np.int16).max).astype(np.int16)
    subject = {"T1w": volumes["T1w"], "T2w": volumes["T2w"], "dseg": dseg, "brain_mask": brain_mask,
               "affine": affine, "protocols": protocols}
    if lesion_labels is not None:
        subject["lesions"] = lesion_labels
    return subject


LESION_DIAMETER_MM = (3.0, 20.0)
"""Range of the lesions' largest diameter (MS plaques and small-vessel hyperintensities: a few mm to 2 cm)."""


def white_matter_lesions(rng, white_matter: np.ndarray, count: int, voxel_mm: float):
    """Ellipsoidal lesions inside white matter: their partial-volume fraction and their labels.

    Each lesion gets a diameter drawn log-uniformly from :data:`LESION_DIAMETER_MM`, axes 0.6-1 times it
    in random proportions, and a centre in white matter at least its radius deep (a voxel whose
    white-matter fraction is above 0.9 after an erosion by the radius); a lesion takes over the white
    matter it covers, with a one-voxel soft edge. Lesions may touch; the later one keeps the label.

    Args:
        rng: numpy Generator.
        white_matter: white-matter fraction on the subject's grid.
        count: number of lesions (fewer if white matter runs out of room).
        voxel_mm: voxel size in mm.

    Returns:
        ``(fraction float32 of the white matter's share that is lesion, labels uint8 1..count)``.
    """
    core = white_matter > 0.9
    fraction = np.zeros(white_matter.shape, dtype=np.float32)
    labels = np.zeros(white_matter.shape, dtype=np.uint8)
    grid = np.indices(white_matter.shape, dtype=np.float32)
    low, high = np.log(LESION_DIAMETER_MM)
    for number in range(1, count + 1):
        radius = np.exp(rng.uniform(low, high)) / 2.0 / voxel_mm  # voxels
        deep = ndimage.binary_erosion(core, iterations=max(1, int(round(radius))))
        candidates = np.argwhere(deep & (labels == 0))
        if len(candidates) == 0:
            break
        centre = candidates[rng.integers(len(candidates))]
        axes = radius * rng.uniform(0.6, 1.0, size=3)
        axes[rng.integers(3)] = radius
        distance = np.sqrt(sum(((grid[i] - centre[i]) / axes[i]) ** 2 for i in range(3)))
        soft = np.clip((1.0 - distance) * radius + 0.5, 0.0, 1.0)  # about one voxel from 1 to 0
        fraction = np.maximum(fraction, soft)
        labels[soft >= 0.5] = number
    return (fraction * white_matter).astype(np.float32), labels


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
LESIONS_IN = ("test", "all")


def simulate(n_subjects: int, out_dir, seed: int = 0, resolution: int = 2, overwrite: bool = False,
             skull_stripped: float = 0.5, lesions: int = 0, lesions_in: str = "test", test_fraction: float = 0.2,
             split_seed: int = 0, **variation):
    """Write a simulated BIDS cohort: ``sub-XX/anat/sub-XX_{T1w,T2w,dseg,desc-brain_mask}.nii.gz``.

    Args:
        n_subjects: number of subjects (>= 1).
        out_dir: BIDS root to create (or fill, if empty).
        seed: cohort seed; subject ``i`` uses ``default_rng([seed, i])``.
        resolution: voxel size in mm (2 is fast; 1 for detail).
        overwrite: replace existing subject files instead of raising.
        skull_stripped: share of the subjects written brain-extracted (T1w and T2w set to 0 outside the
            brain mask), evenly spread (0.5: every second subject, from ``sub-02``). Ignored without a head.
        lesions: white-matter hyperintensities per lesioned subject
            (:func:`white_matter_lesions`), with their labels in ``sub-XX_label-lesion_mask.nii.gz``.
        lesions_in: ``"test"``: only the subjects that ``prepare`` with ``test_fraction`` and
            ``split_seed`` (its defaults: 0.2 and 0) puts in the test set, so that a model never sees a
            lesion in training, the realistic hazard; ``"all"``: every subject.
        test_fraction, split_seed: the split ``lesions_in="test"`` follows.
        **variation: keyword arguments of :func:`simulate_subject` (deformation_mm, rotation_deg,
            scale_jitter, translation_mm, bias_field, noise, tissue_jitter, t1w_sequence, t2w_sequence,
            sequence_jitter, head, blur_mm).

    Returns:
        List of the subject folders written.

    Raises:
        ValueError: for ``n_subjects < 1``, ``skull_stripped`` outside [0, 1], a negative ``lesions``, an
            unknown ``lesions_in``, unknown variation keywords, or an existing non-empty ``out_dir`` without
            ``overwrite``.
    """
    if not isinstance(n_subjects, (int, np.integer)) or n_subjects < 1:
        raise ValueError(f"n_subjects: expected an integer >= 1, found {n_subjects!r}")
    if not 0.0 <= skull_stripped <= 1.0:
        raise ValueError(f"skull_stripped: expected a share in [0, 1], found {skull_stripped!r}")
    if not isinstance(lesions, (int, np.integer)) or lesions < 0:
        raise ValueError(f"lesions: expected an integer >= 0, found {lesions!r}")
    if lesions_in not in LESIONS_IN:
        raise ValueError(f"lesions_in: expected one of {LESIONS_IN}, found {lesions_in!r}")
    allowed = set(simulate_subject.__code__.co_varnames[1:simulate_subject.__code__.co_argcount]) - {
        "resolution", "lesions"}
    unknown = sorted(set(variation) - allowed)
    if unknown:
        raise ValueError(f"simulate: unknown keyword(s) {unknown}; expected some of {sorted(allowed)}")
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
    subjects, stripped_ids = [], []
    for index, subject in enumerate(names):
        volumes = simulate_subject(np.random.default_rng([int(seed), index]), resolution=resolution,
                                   lesions=lesions if subject in lesioned else 0, **variation)
        # Evenly spread, whatever n_subjects: subject i is stripped when (i + 1) * share passes an integer.
        stripped = variation.get("head", True) and int((index + 1) * skull_stripped) > int(index * skull_stripped)
        anat = out_dir / subject / "anat"
        anat.mkdir(parents=True, exist_ok=True)
        for suffix in CONTRASTS:
            image = volumes[suffix] * volumes["brain_mask"] if stripped else volumes[suffix]
            save_atomically(nifti_image(image.astype(np.int16), volumes["affine"]), anat / f"{subject}_{suffix}.nii.gz")
            sidecar = dict(bids_sidecar(volumes["protocols"][suffix]), SkullStripped=bool(stripped))
            (anat / f"{subject}_{suffix}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
        save_atomically(nifti_image(volumes["dseg"], volumes["affine"]), anat / f"{subject}_dseg.nii.gz")
        save_atomically(nifti_image(volumes["brain_mask"].astype(np.uint8), volumes["affine"]),
                         anat / f"{subject}_{BRAIN_MASK_SUFFIX}.nii.gz")
        if "lesions" in volumes:
            save_atomically(nifti_image(volumes["lesions"], volumes["affine"]), anat / f"{subject}_{LESION_SUFFIX}.nii.gz")
        subjects.append(out_dir / subject)
        if stripped:
            stripped_ids.append(subject)
        logger.info("simulated %s%s", subject, " (skull-stripped)" if stripped else "")
    description = {"Name": "gan-mri MNI152 brain phantom", "BIDSVersion": "1.8.0", "DatasetType": "raw",
                   "GeneratedBy": [{"Name": "gan-mri phantom", "Description": f"seed={int(seed)}"}]}
    (out_dir / "dataset_description.json").write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
    columns = {"skull_stripped": lambda name: "yes" if name in stripped_ids else "no"}
    if lesions:
        columns["lesions"] = lambda name: str(lesions if name in lesioned else 0)
    (out_dir / "participants.tsv").write_text(
        "\t".join(["participant_id", *columns]) + "\n"
        + "".join("\t".join([path.name, *(value(path.name) for value in columns.values())]) + "\n"
                  for path in subjects))
    (out_dir / "dseg.tsv").write_text("index\tname\n" + "".join(f"{v}\t{k}\n" for k, v in LABELS.items()))
    return subjects
