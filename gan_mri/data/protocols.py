"""Acquisition protocols of the real-anatomy phantom: which sequence, field strength and slice geometry.

A subject's :class:`Protocols` says how each contrast was acquired: the T1w as a 3D MPRAGE (the default), a 3D
spoiled gradient echo or a 2D spin echo; the T2w as a turbo spin echo, 3D-like (isotropic) or 2D with thick axial
slices; at 3 T or 1.5 T. :func:`draw_protocols` draws one per subject for ``simulate(protocols=...)``:

- ``"research"`` (the default, and every subject's protocol unless asked otherwise): 3 T, 3D MPRAGE T1w and
  isotropic TSE T2w at the sequences' default timings (:data:`gan_mri.data.sequences.SEQUENCES`);
- ``"clinical"``: 2D spin-echo T1w (TR 400-650, TE 8-15 ms) and 2D TSE T2w (TR 2500-6000, TE 80-120 ms), axial
  slices 3-6 mm thick with no gap or a gap up to 1 mm, resampled to the output grid, at 1.5 T or 3 T (even odds),
  as in clinical archives and BraTS;
- ``"mixed"``: per subject, even odds of a clinical protocol or a research one, the research T1w an MPRAGE
  (two in three) or a 3D spoiled gradient echo, its T2w TE 80-120 ms and TR 2500-6000 ms, at 3 T (two in three)
  or 1.5 T.

Each is also selectable alone: ``simulate(t1w_sequence=..., t2w_sequence=..., field=..., slice_mm=...)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .sequences import MPRAGE, SpinEcho, SpoiledGradientEcho, TurboSpinEcho, sequence
from .tissues import FIELDS

PROTOCOL_CHOICES = ("research", "clinical", "mixed")
SLICE_MM = (3.0, 6.0)
"""Range of a 2D acquisition's slice thickness (mm)."""
GAP_MM = 1.0
"""Largest gap between 2D slices (mm); half the 2D protocols have none."""


@dataclass(frozen=True)
class Protocols:
    """How a subject's two contrasts were acquired.

    Attributes:
        t1w, t2w: sequence names (``gan_mri.data.sequences.SEQUENCES`` keys without the contrast) or sequences.
        field: field strength in tesla (1.5 or 3).
        slice_mm: thickness of the axial slices of the 2D acquisitions (0: both contrasts 3D, isotropic).
        gap_mm: gap between 2D slices.
        two_d: the contrasts acquired in 2D (``slice_mm`` > 0), e.g. ``("T1w", "T2w")``.
    """

    t1w: object = "mprage"
    t2w: object = "tse"
    field: float = 3.0
    slice_mm: float = 0.0
    gap_mm: float = 0.0
    two_d: tuple[str, ...] = ()

    def __post_init__(self):
        if self.field not in FIELDS:
            raise ValueError(f"field: expected one of {FIELDS} (tesla), found {self.field!r}")
        if self.slice_mm < 0 or self.gap_mm < 0:
            raise ValueError(f"slice_mm, gap_mm: expected values >= 0, found {self.slice_mm!r}, {self.gap_mm!r}")
        for contrast in ("T1w", "T2w"):
            self.sequence(contrast)  # validates the names

    def sequence(self, contrast: str):
        """The sequence of ``contrast`` ("T1w" or "T2w")."""
        value = self.t1w if contrast == "T1w" else self.t2w
        return sequence(contrast, value) if isinstance(value, str) else value

    def slices(self, contrast: str, rng) -> tuple[float, float, float] | None:
        """``(slice_mm, gap_mm, offset_mm)`` of a 2D ``contrast`` (the first slice's offset drawn from ``rng``),
        else ``None``."""
        if contrast not in self.two_d or self.slice_mm <= 0:
            return None
        return self.slice_mm, self.gap_mm, float(rng.uniform(0.0, self.slice_mm + self.gap_mm))

    def with_sequences(self, sequences: dict) -> "Protocols":
        """A copy whose sequences are ``sequences`` (contrast -> sequence, e.g. the subject's jittered ones)."""
        return dataclasses.replace(self, t1w=sequences["T1w"], t2w=sequences["T2w"])

    def sidecar(self, contrast: str) -> dict:
        """The BIDS sidecar fields of ``contrast`` (times in seconds, as BIDS wants)."""
        protocol = self.sequence(contrast)
        fields = {"MagneticFieldStrength": self.field, "RepetitionTime": protocol.TR / 1000.0,
                  "EchoTime": protocol.TE / 1000.0,
                  "PulseSequenceType": {MPRAGE: "MPRAGE", SpoiledGradientEcho: "SPGR", TurboSpinEcho: "TSE",
                                        SpinEcho: "SE"}[type(protocol)],
                  "MRAcquisitionType": "2D" if contrast in self.two_d and self.slice_mm > 0 else "3D"}
        if isinstance(protocol, MPRAGE):
            fields["InversionTime"] = protocol.TI / 1000.0
        if isinstance(protocol, (MPRAGE, SpoiledGradientEcho)):
            fields["FlipAngle"] = protocol.flip
        if fields["MRAcquisitionType"] == "2D":
            fields.update(SliceThickness=self.slice_mm, SpacingBetweenSlices=self.slice_mm + self.gap_mm)
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in fields.items()}


def _timed(name: str, contrast: str, rng, **ranges):
    """The sequence ``name`` with each of ``ranges`` (field -> (low, high)) drawn uniformly."""
    return dataclasses.replace(sequence(contrast, name), **{key: float(rng.uniform(*span))
                                                            for key, span in ranges.items()})


def draw_protocols(rng, kind: str = "research") -> Protocols:
    """One subject's :class:`Protocols` of ``kind`` (module docstring).

    Raises:
        ValueError: for an unknown kind.
    """
    if kind not in PROTOCOL_CHOICES:
        raise ValueError(f"protocols: expected one of {list(PROTOCOL_CHOICES)}, found {kind!r}")
    if kind == "research":
        return Protocols()
    clinical = kind == "clinical" or rng.uniform() < 0.5
    t2w = _timed("tse", "T2w", rng, TR=(2500.0, 6000.0), TE=(80.0, 120.0))
    if clinical:
        slice_mm = float(rng.uniform(*SLICE_MM))
        gap_mm = float(rng.uniform(0.0, GAP_MM)) if rng.uniform() < 0.5 else 0.0
        return Protocols(t1w=_timed("se", "T1w", rng, TR=(400.0, 650.0), TE=(8.0, 15.0)), t2w=t2w,
                         field=1.5 if rng.uniform() < 0.5 else 3.0, slice_mm=slice_mm, gap_mm=gap_mm,
                         two_d=("T1w", "T2w"))
    t1w = "mprage" if rng.uniform() < 2.0 / 3.0 else "spgr"
    return Protocols(t1w=t1w, t2w=t2w, field=3.0 if rng.uniform() < 2.0 / 3.0 else 1.5)
