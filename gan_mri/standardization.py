"""Per-volume intensity standardization: every volume's brain-intensity landmarks onto one scale.

Percentile normalization (:func:`gan_mri.data.volumes.normalize_intensities`) fixes each volume's
background and brightest tissue, but not where grey and white matter fall in between: that varies
with scanner, sequence and subject (in the phantom, with the per-subject tissue jitter). A
translation network then sees the same anatomy at different intensities in every volume and maps a
subject's unusual contrast into an unusual translation. Nyúl and Udupa's standardization
(Nyúl, Udupa & Zhang, IEEE TMI 2000; compared for MR synthesis by Reinhold et al., SPIE 2019) removes
that: the percentiles :data:`LANDMARK_PERCENTILES` of a volume's brain voxels (its *landmarks*) are
sent piecewise-linearly onto a reference, the mean landmarks of the training volumes of the same
contrast; -1 (background) and 1 stay where they are, so the map is monotone and stays in [-1, 1].

Landmarks use only the volume's own image and brain mask (never the other contrast or a test
target), so the same map applies when a new volume is translated. A prepared dataset records
each volume's landmarks and the training reference in its manifest; a model trained on it keeps the
reference (``model.standardization``) and `gan_mri.inference.translate_volume` applies it.

Example:
    >>> rng = np.random.default_rng(0)
    >>> volumes = [np.clip(rng.normal(m, 0.2, (4, 8, 8)), -1, 1) for m in (0.2, 0.4)]
    >>> masks = [np.ones((4, 8, 8), bool)] * 2
    >>> marks = [landmarks(v, m) for v, m in zip(volumes, masks)]
    >>> standardization = IntensityStandardization.fit({"A": marks, "B": marks})
    >>> standardized = standardization.apply(volumes[0], "A", marks[0])
"""

from __future__ import annotations

import numpy as np

from gan_mri import DOMAINS

LANDMARK_PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)
"""Nyúl and Udupa's landmarks: the 1st and 99th percentiles and the deciles of the brain voxels."""


def landmarks(images, brain_mask) -> np.ndarray:
    """The landmark intensities of one volume: :data:`LANDMARK_PERCENTILES` of its brain voxels.

    Args:
        images: the volume's normalized slices in [-1, 1], (N, H, W) or (N, H, W, 1).
        brain_mask: boolean brain mask of the same slices, (N, H, W).

    Returns:
        float64 array of ``len(LANDMARK_PERCENTILES)`` non-decreasing values.

    Raises:
        ValueError: if the mask does not match the images or holds no brain voxel.
    """
    images = np.asarray(images, dtype=np.float32)
    mask = np.asarray(brain_mask).astype(bool)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if mask.shape != images.shape:
        raise ValueError(f"brain_mask: expected shape {images.shape} to match the images, found {mask.shape}")
    if not mask.any():
        raise ValueError("brain_mask: expected brain voxels for the intensity landmarks, found none")
    return np.percentile(np.clip(images[mask], -1.0, 1.0), LANDMARK_PERCENTILES)


def _check_landmarks(values, where: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(LANDMARK_PERCENTILES),) or not np.all(np.isfinite(values)):
        raise ValueError(f"{where}: expected {len(LANDMARK_PERCENTILES)} finite landmark intensities, "
                         f"found {np.shape(values)} values")
    if np.any(np.diff(values) < 0) or values[0] < -1.0 or values[-1] > 1.0:
        raise ValueError(f"{where}: expected non-decreasing landmark intensities in [-1, 1], found "
                         f"{np.round(values, 4).tolist()}")
    return values


class IntensityStandardization:
    """The reference landmarks of each contrast and the piecewise-linear map onto them.

    Args:
        reference: domain ("A" = T1w, "B" = T2w) -> its reference landmarks (non-decreasing, in
            [-1, 1], one per :data:`LANDMARK_PERCENTILES`).

    Raises:
        ValueError: naming the domain, if one is missing or its landmarks are malformed.
    """

    def __init__(self, reference: dict):
        missing = [domain for domain in DOMAINS if domain not in reference]
        if missing:
            raise ValueError(f"standardization: expected reference landmarks for domains {list(DOMAINS)}, "
                             f"missing {missing}")
        self.reference = {domain: _check_landmarks(reference[domain], f"standardization.reference.{domain}")
                          for domain in DOMAINS}

    @classmethod
    def fit(cls, volume_landmarks: dict) -> "IntensityStandardization":
        """The reference of each contrast: the mean landmarks of its (training) volumes.

        Args:
            volume_landmarks: domain -> list of per-volume landmarks (from :func:`landmarks`).

        Raises:
            ValueError: if a domain has no volume.
        """
        reference = {}
        for domain in DOMAINS:
            marks = volume_landmarks.get(domain) or []
            if not marks:
                raise ValueError(f"standardization: expected training volumes of domain {domain}, found none")
            reference[domain] = np.mean([_check_landmarks(m, f"landmarks of a {domain} volume") for m in marks],
                                        axis=0)
        return cls(reference)

    def apply(self, images, domain: str, volume_landmarks) -> np.ndarray:
        """Maps images of one volume onto the reference: its landmarks go to the reference's,
        linearly in between; -1 and 1 are fixed.

        Args:
            images: slices of the volume in [-1, 1] (any shape).
            domain: "A" or "B", the contrast of the volume.
            volume_landmarks: the volume's landmarks (:func:`landmarks`).

        Returns:
            float32 array of the shape of ``images``, in [-1, 1].

        Raises:
            ValueError: for an unknown domain or malformed landmarks.
        """
        if domain not in DOMAINS:
            raise ValueError(f"domain: expected one of {list(DOMAINS)}, found {domain!r}")
        source = _check_landmarks(volume_landmarks, "volume landmarks")
        knots = np.concatenate([[-1.0], source, [1.0]])
        values = np.concatenate([[-1.0], self.reference[domain], [1.0]])
        images = np.clip(np.asarray(images, dtype=np.float32), -1.0, 1.0)
        return np.interp(images, knots, values).astype(np.float32)

    def standardize(self, images, domain: str, brain_mask) -> np.ndarray:
        """:meth:`apply` with the landmarks of ``images`` itself (one whole volume and its brain mask)."""
        return self.apply(images, domain, landmarks(images, brain_mask))

    def to_dict(self) -> dict:
        """JSON-compatible form: ``{"percentiles": [...], "reference": {"A": [...], "B": [...]}}``."""
        return {"percentiles": list(LANDMARK_PERCENTILES),
                "reference": {domain: [float(v) for v in values] for domain, values in self.reference.items()}}

    @classmethod
    def from_dict(cls, data) -> "IntensityStandardization":
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: if ``data`` is not that form or was made with other landmark percentiles.
        """
        if not isinstance(data, dict) or not isinstance(data.get("reference"), dict):
            raise ValueError('standardization: expected {"percentiles": [...], "reference": {"A": [...], '
                             f'"B": [...]}}, found {type(data).__name__}')
        if [float(p) for p in data.get("percentiles", [])] != list(LANDMARK_PERCENTILES):
            raise ValueError(f"standardization.percentiles: expected {list(LANDMARK_PERCENTILES)}, "
                             f"found {data.get('percentiles')!r}")
        return cls(data["reference"])

    def __eq__(self, other) -> bool:
        return isinstance(other, IntensityStandardization) and all(
            np.array_equal(self.reference[d], other.reference[d]) for d in DOMAINS)

    def __repr__(self) -> str:
        medians = ", ".join(f"{d}: median {self.reference[d][5]:.3f}" for d in DOMAINS)
        return f"IntensityStandardization({medians})"
