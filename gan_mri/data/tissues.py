"""Relaxation times and proton density of the tissues the real-anatomy phantom images, at 3 T and 1.5 T.

Every code of the label maps (:data:`gan_mri.data.anatomy.STRUCTURES`) names one tissue below. Each tissue has
``(T1 ms, T2 ms, PD)`` at 3 T and at 1.5 T (PD relative to water; for fat and marrow the MR-visible share).

- The brain's structures start from literature values and were then calibrated against the real ICBM 2009c pair
  (docs/phantom.md, "Calibration per structure"): T1 and T2 of each structure were moved, within or near the
  literature's range, until its mean intensity relative to cerebral white matter matched the real templates' in
  both contrasts (MPRAGE T1w, TSE T2w, 3 T). The docs list the literature ranges, the sources and the calibrated
  values side by side.
- At 1.5 T, T1 is shorter (Rooney et al., MRM 2007: T1 grows with the field, less for free water), and T2
  barely changes except in the iron-rich nuclei, whose relaxation rate R2 grows with the field (Gelman et al.,
  Radiology 1999); :data:`FIELD_15T` holds each tissue's factors.
- Flowing blood: in spin echoes it leaves the slice between excitation and echo (flow void), so its effective T2
  here is short; gradient echoes (MPRAGE, SPGR) see it with its T1.
- Fat's T2 is its apparent T2 in turbo spin echo, where J-coupling makes it bright.

Example:
    >>> t1, t2, pd = parameters("putamen", field=3.0)
"""

from __future__ import annotations

import numpy as np

#: tissue -> (T1 ms, T2 ms, PD) at 3 T. Brain values: calibrated (module docstring); the rest from the literature
#: (docs/phantom.md, "Tissue parameters", gives each one's source).
TISSUES = {
    "air": (1000.0, 1.0, 0.0),
    # The brain (calibrated on the real ICBM 2009c pair).
    "cerebral white matter": (832.0, 80.0, 0.69),
    "cerebral cortex": (1224.0, 84.0, 0.80),
    "CSF": (3900.0, 2000.0, 1.00),
    "cerebellar white matter": (874.0, 83.0, 0.69),
    "cerebellar cortex": (1197.0, 93.0, 0.80),
    "thalamus": (1089.0, 88.0, 0.74),
    "caudate": (1251.0, 102.0, 0.78),
    "putamen": (1209.0, 90.0, 0.78),
    "pallidum": (1028.0, 66.0, 0.74),
    "hippocampus": (1264.0, 104.0, 0.80),
    "amygdala": (1314.0, 105.0, 0.80),
    "accumbens": (1503.0, 135.0, 0.79),
    "ventral diencephalon": (943.0, 83.0, 0.72),
    "brainstem": (951.0, 84.0, 0.71),
    "choroid plexus": (1700.0, 120.0, 0.85),
    "white-matter lesion": (1300.0, 150.0, 0.80),
    "nerve": (1000.0, 75.0, 0.70),
    # Outside the brain (literature).
    "blood": (1650.0, 20.0, 0.80),
    "vitreous": (4000.0, 1000.0, 1.00),
    "soft tissue": (1400.0, 35.0, 0.70),
    "muscle": (1400.0, 35.0, 0.70),
    "fat": (380.0, 150.0, 0.50),
    "scalp": (700.0, 80.0, 0.60),
    "mucosa": (1500.0, 120.0, 0.85),
    "bone": (300.0, 1.0, 0.05),
    "marrow": (450.0, 120.0, 0.40),
    "meninges": (1500.0, 60.0, 0.50),
    # Lesions (gan_mri.data.phantom_lesions): a fluid-filled cavity, a solid tumour and the oedema around it.
    "cavity": (3800.0, 1500.0, 0.98),
    "tumour": (1800.0, 120.0, 0.85),
    "oedema": (1600.0, 180.0, 0.90),
}

#: tissue -> (T1 factor, T2 factor) from 3 T to 1.5 T (module docstring); tissues not listed: (0.8, 1.05).
FIELD_15T = {
    "air": (1.0, 1.0),
    "CSF": (1.0, 1.0),
    "vitreous": (1.0, 1.0),
    "cavity": (1.0, 1.0),
    "cerebral white matter": (0.79, 1.05),
    "cerebellar white matter": (0.79, 1.05),
    "cerebral cortex": (0.89, 1.02),
    "cerebellar cortex": (0.89, 1.02),
    "pallidum": (0.78, 1.30),
    "putamen": (0.80, 1.15),
    "thalamus": (0.80, 1.08),
    "caudate": (0.80, 1.08),
    "blood": (0.87, 1.0),
    "fat": (0.70, 1.05),
    "marrow": (0.75, 1.05),
    "muscle": (0.80, 1.1),
    "soft tissue": (0.80, 1.1),
    "bone": (1.0, 1.0),
}
DEFAULT_15T = (0.80, 1.05)
FIELDS = (1.5, 3.0)


def parameters(tissue: str, field: float = 3.0) -> tuple[float, float, float]:
    """``(T1 ms, T2 ms, PD)`` of ``tissue`` at ``field`` tesla (1.5 or 3).

    Raises:
        ValueError: for an unknown tissue or field.
    """
    if tissue not in TISSUES:
        raise ValueError(f"tissue: expected one of {sorted(TISSUES)}, found {tissue!r}")
    if field not in FIELDS:
        raise ValueError(f"field: expected one of {FIELDS} (tesla), found {field!r}")
    t1, t2, pd = TISSUES[tissue]
    if field == 1.5:
        t1_factor, t2_factor = FIELD_15T.get(tissue, DEFAULT_15T)
        t1, t2 = t1 * t1_factor, t2 * t2_factor
    return float(t1), float(t2), float(pd)


def parameter_table(tissues, field: float = 3.0) -> np.ndarray:
    """``(len(tissues), 3)`` float64 array of :func:`parameters` rows."""
    return np.array([parameters(tissue, field) for tissue in tissues], dtype=np.float64)
