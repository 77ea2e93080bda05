"""How close the phantom's contrasts are to real MRI: tissue intensity ratios against the ICBM 2009c pair.

The phantom's sequences (:mod:`gan_mri.data.sequences`) were chosen so that grey matter, CSF and the
lateral ventricles, each relative to white matter, come out as in the real ICBM 2009c templates
(:mod:`gan_mri.data.icbm152`). Both are measured in the same voxels: the phantom's noise-free mean
subject (no deformation, bias, noise or jitter) is resampled onto the templates' 1 mm grid (both are in
MNI space) and every region is taken from the templates' labels:

- ``WM``, ``GM``: voxels labelled white / grey matter (``dseg`` 3 / 2);
- ``CSF``: voxels labelled CSF (1) outside the lateral ventricles (sulci, cisterns);
- ``ventricles``: the lateral ventricles.

Run ``python -m gan_mri.data.calibration`` for the table of docs/phantom.md.
"""

from __future__ import annotations

import numpy as np

from .icbm152 import load_icbm152

REGIONS = ("GM", "CSF", "ventricles")
TOLERANCE = 0.15
"""The calibration's aim: every phantom ratio within 15 % of the real one."""


def region_masks(pair) -> dict:
    """``{"WM", "GM", "CSF", "ventricles"}`` -> boolean masks on the pair's grid."""
    return {"WM": pair.dseg == 3, "GM": pair.dseg == 2, "CSF": (pair.dseg == 1) & ~pair.ventricles,
            "ventricles": pair.ventricles}


def tissue_ratios(volume: np.ndarray, regions: dict) -> dict:
    """Mean intensity of each of :data:`REGIONS` over that of white matter."""
    white = float(np.mean(volume[regions["WM"]]))
    return {name: float(np.mean(volume[regions[name]])) / white for name in REGIONS}


def phantom_on_real_grid(t1w_sequence: str = "mprage", t2w_sequence: str = "tse") -> dict:
    """The phantom's noise-free mean subject (1 mm), resampled onto the ICBM 2009c grid: contrast -> array."""
    from nilearn.image import resample_to_img

    from .phantom import nifti_image, simulate_subject

    still = dict(deformation_mm=0.0, rotation_deg=0.0, scale_jitter=0.0, translation_mm=0.0, bias_field=0.0,
                 noise=0.0, tissue_jitter=0.0, sequence_jitter=0.0, blur_mm=0.0)
    volumes = simulate_subject(np.random.default_rng(0), resolution=1, t1w_sequence=t1w_sequence,
                               t2w_sequence=t2w_sequence, **still)
    pair = load_icbm152()
    reference = nifti_image(pair.t1w, pair.affine)
    return {contrast: resample_to_img(nifti_image(volumes[contrast].astype(np.float32), volumes["affine"]),
                                      reference, interpolation="linear", force_resample=True,
                                      copy_header=True).get_fdata()
            for contrast in ("T1w", "T2w")}


def calibration_table(t1w_sequence: str = "mprage", t2w_sequence: str = "tse") -> dict:
    """contrast -> region -> ``{"real", "phantom", "error"}`` (``error``: phantom / real - 1)."""
    pair = load_icbm152()
    regions = region_masks(pair)
    phantom = phantom_on_real_grid(t1w_sequence, t2w_sequence)
    table = {}
    for contrast in ("T1w", "T2w"):
        real = tissue_ratios(pair.array(contrast), regions)
        simulated = tissue_ratios(phantom[contrast], regions)
        table[contrast] = {name: {"real": real[name], "phantom": simulated[name],
                                  "error": simulated[name] / real[name] - 1.0} for name in REGIONS}
    return table


def main() -> None:
    """Prints the calibration table (Markdown) for the default and the spin-echo phantom."""
    print("| phantom | contrast | region / WM | real ICBM 2009c | phantom | error |")
    print("| --- | --- | --- | --- | --- | --- |")
    for t1w_sequence, t2w_sequence in (("mprage", "tse"), ("se", "se")):
        for contrast, rows in calibration_table(t1w_sequence, t2w_sequence).items():
            for name, row in rows.items():
                print(f"| {t1w_sequence}/{t2w_sequence} | {contrast} | {name} | {row['real']:.3f} | "
                      f"{row['phantom']:.3f} | {row['error']:+.1%} |")


if __name__ == "__main__":
    main()
