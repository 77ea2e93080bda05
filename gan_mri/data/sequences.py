"""MR signal equations of the phantom's pulse sequences, and the tissues they image.

Each sequence maps a tissue's relaxation times and proton density to a magnitude signal (arbitrary
units, proportional to the voxel's signal when the tissue fills it):

- :class:`SpinEcho` ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)``: the lineage's T1w (TR 500 / TE 10 ms)
  and the classic T2w (TR 4000 / TE 100 ms).
- :class:`TurboSpinEcho`: the same equation with the effective echo time (the echo that fills the
  centre of k-space) of the T2w scans research protocols use. Fat's brightness in TSE (J-coupling)
  is carried by its apparent T2 in :data:`TISSUES`.
- :class:`SpoiledGradientEcho`: the 3D spoiled gradient echo (FLASH, SPGR) of many clinical T1w,
  ``S = PD sin(a) (1 - E1) / (1 - cos(a) E1) exp(-TE/T2)`` with ``E1 = exp(-TR/T1)`` (the Ernst equation at
  steady state; T2 stands in for T2* at its short echo time).
- :class:`MPRAGE`: the 3D inversion-prepared gradient echo of HCP, ADNI and most research T1w: an
  inversion, ``TI`` to the centre of a train of ``readouts`` small-flip gradient echoes ``echo_spacing``
  apart, recovery until the next inversion ``TR`` later. The longitudinal magnetization is followed
  pulse by pulse to its steady state (Deichmann et al., MRM 2000, give the closed form of the same
  recursion); the signal is ``PD sin(flip) |Mz| exp(-TE/T2)`` at the centre echo.

The defaults (:data:`SEQUENCES`) were calibrated against the real ICBM 2009c T1w/T2w templates
(docs/phantom.md): with the tissue values below, the phantom's grey-matter, CSF and ventricle
intensities relative to white matter fall within 15 % of the templates' in both contrasts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

#: Relaxation at 3 T: name -> (T1 ms, T2 ms, proton density; for fat and marrow the MR-visible share). Brain: Wansapura et al. (JMRI 1999);
#: CSF: long T1/T2, PD 1. Head: subcutaneous fat and fatty (yellow) marrow with the apparent T2 of fat
#: in turbo spin echo (J-coupling makes fat bright there); muscle and skin (Stanisz et al., MRM 2005);
#: cortical bone, whose T2 of about a millisecond leaves no signal at clinical echo times.
TISSUES = {
    "CSF": (4000.0, 2000.0, 1.00),
    "GM": (1330.0, 110.0, 0.80),
    "WM": (830.0, 80.0, 0.69),
    "fat": (380.0, 150.0, 0.50),
    "marrow": (450.0, 120.0, 0.40),
    "muscle": (1400.0, 35.0, 0.70),
    "bone": (300.0, 1.0, 0.05),
    "meninges": (1500.0, 60.0, 0.50),
    # White-matter hyperintensities (MS-like plaques, small-vessel disease): longer T1 and T2 and more water
    # than white matter, so dark on a T1w (near grey matter) and bright on a T2w (above grey matter).
    "WMH": (1300.0, 150.0, 0.80),
}


@dataclass(frozen=True)
class SpinEcho:
    """Spin echo: ``S = PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (times in ms)."""

    TR: float
    TE: float

    def signal(self, t1, t2, pd):
        """Magnitude signal of tissues with relaxation ``t1``, ``t2`` (ms) and proton density ``pd``."""
        t1, t2, pd = (np.asarray(v, dtype=np.float64) for v in (t1, t2, pd))
        return pd * (1.0 - np.exp(-self.TR / t1)) * np.exp(-self.TE / t2)


@dataclass(frozen=True)
class TurboSpinEcho(SpinEcho):
    """Turbo (fast) spin echo: :class:`SpinEcho`'s equation at the effective echo time ``TE``."""


@dataclass(frozen=True)
class SpoiledGradientEcho:
    """Spoiled gradient echo at steady state (times in ms, flip angle in degrees)."""

    TR: float
    TE: float
    flip: float

    def signal(self, t1, t2, pd):
        """Magnitude signal of tissues with relaxation ``t1``, ``t2`` (ms) and proton density ``pd``."""
        t1, t2, pd = (np.asarray(v, dtype=np.float64) for v in (t1, t2, pd))
        e1 = np.exp(-self.TR / t1)
        angle = np.deg2rad(self.flip)
        return pd * np.sin(angle) * (1.0 - e1) / (1.0 - np.cos(angle) * e1) * np.exp(-self.TE / t2)


@dataclass(frozen=True)
class MPRAGE:
    """Magnetization-prepared rapid gradient echo (times in ms, flip angle in degrees).

    Attributes:
        TR: time between inversions.
        TI: inversion to the centre echo of the readout train.
        flip: readout flip angle.
        echo_spacing: time between readout pulses.
        readouts: pulses per train.
        TE: echo time of each gradient echo.
    """

    TR: float
    TI: float
    flip: float
    echo_spacing: float = 7.0
    readouts: int = 176
    TE: float = 3.0

    def __post_init__(self):
        before = self.TI - 0.5 * self.readouts * self.echo_spacing
        after = self.TR - self.TI - 0.5 * self.readouts * self.echo_spacing
        if before <= 0 or after <= 0:
            raise ValueError(f"MPRAGE: expected the readout train ({self.readouts} x {self.echo_spacing} ms) to fit "
                             f"between the inversion and TI, and before the next inversion (TR {self.TR}, TI {self.TI})")

    def signal(self, t1, t2, pd, cycles: int = 12):
        """Magnitude signal at the centre echo, after ``cycles`` inversions (steady state to < 1e-6)."""
        t1, t2, pd = (np.asarray(v, dtype=np.float64) for v in (t1, t2, pd))
        half_train = 0.5 * self.readouts * self.echo_spacing
        before, after = self.TI - half_train, self.TR - self.TI - half_train
        cos_flip = np.cos(np.deg2rad(self.flip))
        relax = np.exp(-self.echo_spacing / t1)
        # One readout pulse: m -> 1 - (1 - m cos) relax. n of them in closed form (a geometric series).
        rate = cos_flip * relax
        half = self.readouts // 2

        def pulses(m, n):
            fixed = (1.0 - relax) / (1.0 - rate)
            return fixed + (m - fixed) * rate**n

        mz = np.ones_like(t1)
        centre = mz
        for _ in range(cycles):
            mz = 1.0 - (1.0 + mz) * np.exp(-before / t1)  # inversion, then recovery to the train
            centre = pulses(mz, half)
            mz = pulses(mz, self.readouts)
            mz = 1.0 - (1.0 - mz) * np.exp(-after / t1)
        return pd * np.sin(np.deg2rad(self.flip)) * np.abs(centre) * np.exp(-self.TE / t2)


#: The phantom's sequences by name. ``T1w-mprage`` and ``T2w-tse`` are the defaults (calibrated, see
#: the module docstring); ``T1w-se`` and ``T2w-se`` are the earlier spin-echo pair (``T1w-se`` is also the
#: clinical 2D T1w); ``T1w-spgr`` the 3D spoiled gradient echo (FLASH) of clinical and older research T1w.
SEQUENCES = {
    "T1w-mprage": MPRAGE(TR=2300.0, TI=1100.0, flip=10.0),
    "T1w-se": SpinEcho(TR=500.0, TE=10.0),
    "T1w-spgr": SpoiledGradientEcho(TR=20.0, TE=4.0, flip=30.0),
    "T2w-tse": TurboSpinEcho(TR=4000.0, TE=80.0),
    "T2w-se": SpinEcho(TR=4000.0, TE=100.0),
}
T1W_SEQUENCES = tuple(name.split("-", 1)[1] for name in SEQUENCES if name.startswith("T1w-"))
T2W_SEQUENCES = tuple(name.split("-", 1)[1] for name in SEQUENCES if name.startswith("T2w-"))


def sequence(contrast: str, name: str):
    """The sequence ``f"{contrast}-{name}"`` of :data:`SEQUENCES`.

    Raises:
        ValueError: naming the valid sequences of ``contrast``.
    """
    key = f"{contrast}-{name}"
    if key not in SEQUENCES:
        valid = [k.split("-", 1)[1] for k in SEQUENCES if k.startswith(f"{contrast}-")]
        raise ValueError(f"{contrast.lower()}_sequence: expected one of {valid}, found {name!r}")
    return SEQUENCES[key]


def jitter_timings(rng: np.random.Generator, protocol, scale: float):
    """A copy of ``protocol`` with each timing (TR, TI, TE) and the flip angle scaled by ``exp(N(0, scale))``:
    another scanner's protocol of the same kind. ``scale`` 0 returns ``protocol`` unchanged.

    Timings that would no longer fit the MPRAGE readout train are drawn again (at most 20 times).
    """
    if scale <= 0:
        return protocol
    names = [f.name for f in dataclasses.fields(protocol) if f.name in ("TR", "TI", "TE", "flip")]
    for _ in range(20):
        factors = np.exp(rng.normal(0.0, scale, size=len(names)))
        try:
            return dataclasses.replace(protocol, **{n: float(getattr(protocol, n) * f) for n, f in zip(names, factors)})
        except ValueError:
            continue
    return protocol
