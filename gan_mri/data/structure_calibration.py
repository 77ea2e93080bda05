"""The real-anatomy phantom against real MRI, structure by structure: intensity ratios against the ICBM 2009c pair.

For every structure that both the phantom's labels (FreeSurfer codes, :mod:`gan_mri.data.anatomy`) and the real
pair's CerebrA labels (:data:`gan_mri.data.icbm152.CEREBRA_STRUCTURES`) carry, its mean intensity over that of
cerebral white matter, in T1w and in T2w:

- real: the brain-extracted ICBM 2009c templates, in their CerebrA labels (white matter: the ``dseg`` white matter
  no CerebrA label claims);
- phantom: noise-free subjects (no deformation, jitter, texture, bias, blur or noise; 1 mm; the default MPRAGE /
  TSE protocol at 3 T) of the label maps :data:`MAPS`, in their own labels, averaged over the maps. The templates
  are averages of 152 registered brains, smoother than one subject's scan, so the phantom is first blurred by
  :data:`TEMPLATE_BLUR_MM` (the blur at which its lateral ventricles, the largest pure-CSF structure, come out as
  bright relative to white matter as the real ones); without it every thin structure would look purer in the
  phantom than in the template.

The brain tissues' T1 and T2 in :data:`gan_mri.data.tissues.TISSUES` were fitted by :func:`fit_relaxation` so that
the ratios agree within :data:`TOLERANCE`. Structures whose CerebrA label is unreliable are reported but not held
to it (:data:`UNRELIABLE`). Run ``python -m gan_mri.data.structure_calibration`` for the table of docs/phantom.md
(``--fit`` for the fitted relaxation times).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy import ndimage

from . import tissues as tissue_table
from .anatomy import load_label_map, structure
from .icbm152 import load_icbm152

COMPARED = {
    "cerebral cortex": (3, 42),
    "lateral ventricles": (4, 43),
    "inferior lateral ventricles": (5, 44),
    "3rd ventricle": (14,),
    "4th ventricle": (15,),
    "thalamus": (10, 49),
    "caudate": (11, 50),
    "putamen": (12, 51),
    "pallidum": (13, 52),
    "hippocampus": (17, 53),
    "amygdala": (18, 54),
    "accumbens": (26, 58),
    "ventral diencephalon": (28, 60),
    "brainstem": (16,),
    "cerebellar cortex": (8, 47),
    "cerebellar white matter": (7, 46),
}
"""Structure -> the FreeSurfer codes of the phantom's labels (the real side: the same name in CerebrA)."""
WHITE_MATTER = (2, 41)
UNRELIABLE = {
    "inferior lateral ventricles": "CerebrA's label agrees with its manual reference at Dice 0.12 (CerebrA_LabelDetails.csv)",
    "4th ventricle": "CerebrA's label was delimited by a CSF intensity threshold (Dice 0.39): its mean is CSF's by construction",
}
"""Structures reported but not held to :data:`TOLERANCE`, and why."""
TOLERANCE = 0.10
TEMPLATE_BLUR_MM = 1.0
MAPS = (1, 6, 11, 16)
"""The label maps the calibration averages over (every fifth: different heads and scanners' FOVs)."""
CONTRASTS = ("T1w", "T2w")
FITTED = tuple(dict.fromkeys(structure(codes[0]).tissue for name, codes in COMPARED.items()
                             if name not in UNRELIABLE and structure(codes[0]).tissue != "CSF"))
"""The tissues :func:`fit_relaxation` fits: one per compared structure, CSF and white matter kept at their values."""
STILL = dict(deformation_mm=0.0, rotation_deg=0.0, scale_jitter=0.0, translation_mm=0.0, bias_field=0.0, noise=0.0,
             tissue_jitter=0.0, texture=0.0, sequence_jitter=0.0, blur_mm=0.0)
"""The settings of a noise-free mean phantom subject."""


def real_ratios() -> dict:
    """contrast -> structure -> mean / cerebral white matter's mean, on the brain-extracted real pair."""
    pair = load_icbm152()
    white = pair.structure_mask("cerebral white matter")
    ratios = {}
    for contrast in CONTRASTS:
        volume = pair.array(contrast)
        ratios[contrast] = {name: float(volume[pair.structure_mask(name)].mean() / volume[white].mean())
                            for name in COMPARED}
    return ratios


def structure_ratios(volume: np.ndarray, labels: np.ndarray) -> dict:
    """structure -> mean of ``volume`` over its codes / mean over cerebral white matter (labels: FreeSurfer codes)."""
    white = float(volume[np.isin(labels, WHITE_MATTER)].mean())
    return {name: float(volume[np.isin(labels, codes)].mean()) / white for name, codes in COMPARED.items()}


def phantom_ratios(maps=MAPS, resolution: int = 1) -> dict:
    """contrast -> structure -> ratio of the noise-free phantom subjects of ``maps``, blurred by
    :data:`TEMPLATE_BLUR_MM`, averaged over the maps."""
    from .real_anatomy import simulate_labelled_subject

    collected = {contrast: [] for contrast in CONTRASTS}
    for number in maps:
        subject = simulate_labelled_subject(np.random.default_rng(0), number, resolution=resolution, **STILL)
        for contrast in CONTRASTS:
            volume = ndimage.gaussian_filter(subject[contrast].astype(np.float32), TEMPLATE_BLUR_MM / resolution)
            collected[contrast].append(structure_ratios(volume, subject["structures"]))
    return {contrast: {name: float(np.mean([r[name] for r in rows])) for name in COMPARED}
            for contrast, rows in collected.items()}


def calibration_table(maps=MAPS) -> dict:
    """contrast -> structure -> ``{"real", "phantom", "error", "held"}`` (``error``: phantom / real - 1;
    ``held``: whether :data:`TOLERANCE` applies)."""
    real, phantom = real_ratios(), phantom_ratios(maps)
    return {contrast: {name: {"real": real[contrast][name], "phantom": phantom[contrast][name],
                              "error": phantom[contrast][name] / real[contrast][name] - 1.0,
                              "held": name not in UNRELIABLE}
                       for name in COMPARED} for contrast in CONTRASTS}


def _mixing(maps) -> tuple[list, np.ndarray, np.ndarray]:
    """The noise-free blurred phantom as a linear model of its tissues' signals: for each map, the share of each
    tissue's signal in each compared structure's mean (and in white matter's)."""
    from .real_anatomy import TISSUE_NAMES, _TISSUE_INDEX

    structures, white = [], []
    for number in maps:
        labels, _ = load_label_map(number)
        tissue = _TISSUE_INDEX[labels]
        masks = [np.isin(labels, codes) for codes in COMPARED.values()]
        white_mask = np.isin(labels, WHITE_MATTER)
        share = np.zeros((len(COMPARED), len(TISSUE_NAMES)))
        share_white = np.zeros(len(TISSUE_NAMES))
        for index in np.unique(tissue):
            blurred = ndimage.gaussian_filter((tissue == index).astype(np.float32), TEMPLATE_BLUR_MM)
            share[:, index] = [blurred[mask].mean() for mask in masks]
            share_white[index] = blurred[white_mask].mean()
        structures.append(share)
        white.append(share_white)
    return list(TISSUE_NAMES), np.stack(structures), np.stack(white)


def fit_relaxation(maps=MAPS, iterations: int = 12) -> dict:
    """T1 and T2 (3 T) of each tissue of :data:`FITTED` such that the noise-free phantom's structure ratios match
    the real pair's (Gauss-Newton on log T1 and log T2, through the linear mixing of :func:`_mixing`).

    Returns:
        tissue -> ``(T1 ms, T2 ms, PD)`` (PD unchanged).
    """
    from .sequences import SEQUENCES

    names, share, share_white = _mixing(maps)
    real = real_ratios()
    held = [index for index, name in enumerate(COMPARED) if name not in UNRELIABLE]
    target = np.log([real[contrast][list(COMPARED)[i]] for contrast in CONTRASTS for i in held])
    parameters = np.array([tissue_table.TISSUES[name] for name in names], dtype=np.float64)
    fitted = [names.index(name) for name in FITTED]
    sequences = [SEQUENCES["T1w-mprage"], SEQUENCES["T2w-tse"]]

    def predict(params):
        out = []
        for sequence in sequences:
            signal = sequence.signal(*params.T)
            ratios = (share @ signal) / (share_white @ signal)[:, None]
            out.append(np.log(ratios.mean(axis=0)[held]))
        return np.concatenate(out)

    step = 1e-4
    for _ in range(iterations):
        residual = target - predict(parameters)
        jacobian = []
        for index in fitted:
            for column in (0, 1):
                moved = parameters.copy()
                moved[index, column] *= np.exp(step)
                jacobian.append((predict(moved) - predict(parameters)) / step)
        update = np.linalg.lstsq(np.stack(jacobian, axis=1), residual, rcond=None)[0]
        for k, index in enumerate(fitted):
            parameters[index, :2] *= np.exp(np.clip(update[2 * k:2 * k + 2], -0.3, 0.3))
    return {names[index]: tuple(float(v) for v in parameters[index]) for index in fitted}


def main() -> None:
    """Prints the calibration table (Markdown), or with ``--fit`` the fitted relaxation times."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", action="store_true", help="print the fitted T1/T2 of the brain tissues")
    if parser.parse_args().fit:
        for name, (t1, t2, pd) in fit_relaxation().items():
            print(f'    "{name}": ({t1:.0f}.0, {t2:.0f}.0, {pd:.2f}),')
        return
    print("| structure | T1w real | T1w phantom | error | T2w real | T2w phantom | error |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    table = calibration_table()
    for name in COMPARED:
        cells = []
        for contrast in CONTRASTS:
            row = table[contrast][name]
            cells += [f"{row['real']:.3f}", f"{row['phantom']:.3f}", f"{row['error']:+.1%}"]
        note = "" if name not in UNRELIABLE else " (not held: see below)"
        print(f"| {name}{note} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
