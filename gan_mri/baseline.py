"""The no-learning reference a translation network must beat: an unpaired intensity remap.

Inside the brain, T1w and T2w contrast are roughly inverted (white matter brightest on T1w and
darkest on T2w, CSF the opposite). `IntensityRemap` sends the brain-intensity quantile ``q`` of the
source contrast to the quantile ``1 - q`` of the target contrast::

    y = F_target^-1(1 - F_source(x))     inside the brain mask,   y = x outside it

with ``F`` the cumulative distribution of brain intensities of each contrast over the training
split. It is unpaired (no T1w image is matched with a T2w image) and uses no test data, so it is the
translation an intensity lookup table gives without any learning. A network whose brain SSIM does
not beat it has not learned anatomy-aware translation.

Example:
    >>> remap = IntensityRemap.from_dataset(dataset)              # doctest: +SKIP
    >>> t2w_like = remap.translate(t1w, "A2B", brain_mask)        # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from gan_mri import DIRECTIONS, DOMAINS, Direction

HISTOGRAM_BINS = 4096
"""Bins of the brain-intensity histograms over [-1, 1] (bin width ~5e-4)."""
QUANTILE_LEVELS = 1001
"""Stored quantiles per contrast: levels 0, 0.001, ..., 1."""
CHUNK_SLICES = 256
"""Training slices read at a time, so large prepared sets stream from their memory maps."""


def _quantiles(counts: np.ndarray, edges: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantile function of a histogram at ``levels``: the smallest x with F(x) >= level, F
    linear inside each bin (so level 0 is the lower edge of the first non-empty bin)."""
    cdf = np.concatenate([[0.0], np.cumsum(counts, dtype=np.float64)]) / counts.sum()
    levels = np.maximum(levels, 1e-12)
    upper = np.clip(np.searchsorted(cdf, levels, side="left"), 1, len(cdf) - 1)
    low, high = cdf[upper - 1], cdf[upper]
    fraction = np.clip((levels - low) / np.where(high > low, high - low, 1.0), 0.0, 1.0)
    return edges[upper - 1] + fraction * (edges[upper] - edges[upper - 1])


class IntensityRemap:
    """Unpaired quantile remap of brain intensities between the two contrasts.

    Args:
        quantiles: domain ("A" = T1w, "B" = T2w) -> brain-intensity quantiles in [-1, 1] at
            ``QUANTILE_LEVELS`` evenly spaced levels from 0 to 1 (non-decreasing).

    Raises:
        ValueError: if a domain is missing or its quantiles are not a non-decreasing vector.
    """

    def __init__(self, quantiles: dict):
        self.quantiles = {}
        for domain in DOMAINS:
            if domain not in quantiles:
                raise ValueError(f"IntensityRemap: expected quantiles for domains {list(DOMAINS)}, "
                                 f"found {sorted(quantiles)}")
            values = np.asarray(quantiles[domain], dtype=np.float64)
            if values.ndim != 1 or len(values) < 2 or np.any(np.diff(values) < 0):
                raise ValueError(f"IntensityRemap: quantiles of domain {domain} must be a non-decreasing "
                                 f"vector of at least 2 values; found shape {values.shape}")
            self.quantiles[domain] = values
        self.levels = {domain: np.linspace(0.0, 1.0, len(values)) for domain, values in self.quantiles.items()}

    @classmethod
    def fit(cls, images: dict, masks: dict) -> "IntensityRemap":
        """Learns the brain-intensity distribution of each contrast.

        Args:
            images: domain -> slices (N, H, W) or (N, H, W, 1) in [-1, 1]; numpy arrays or memory
                maps (read ``CHUNK_SLICES`` at a time).
            masks: domain -> boolean brain masks of the same slices, (N, H, W).

        Returns:
            An `IntensityRemap`.

        Raises:
            ValueError: if a domain is missing, shapes differ, or a domain has no brain voxel.
        """
        edges = np.linspace(-1.0, 1.0, HISTOGRAM_BINS + 1)
        levels = np.linspace(0.0, 1.0, QUANTILE_LEVELS)
        quantiles = {}
        for domain in DOMAINS:
            if domain not in images or domain not in masks:
                raise ValueError(f"IntensityRemap.fit: expected images and masks for domains {list(DOMAINS)}")
            slices, mask = images[domain], masks[domain]
            if tuple(slices.shape[:3]) != tuple(mask.shape[:3]):
                raise ValueError(f"IntensityRemap.fit: domain {domain}: images {tuple(slices.shape)} and masks "
                                 f"{tuple(mask.shape)} must cover the same slices")
            counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
            non_finite = 0
            for start in range(0, len(slices), CHUNK_SLICES):
                chunk = np.asarray(slices[start:start + CHUNK_SLICES], dtype=np.float32).reshape(
                    np.shape(mask[start:start + CHUNK_SLICES]))
                brain = chunk[np.asarray(mask[start:start + CHUNK_SLICES], bool)]
                non_finite += int(np.count_nonzero(~np.isfinite(brain)))
                counts += np.histogram(np.clip(brain, -1, 1), bins=edges)[0]  # NaN falls in no bin
            if counts.sum() == 0:
                found = f"found only {non_finite} non-finite (NaN) values" if non_finite else "found none"
                raise ValueError(f"IntensityRemap.fit: domain {domain}: expected finite brain voxels in the masks, "
                                 f"{found}")
            quantiles[domain] = _quantiles(counts, edges, levels)
        return cls(quantiles)

    @classmethod
    def from_dataset(cls, dataset, standardization=None) -> "IntensityRemap":
        """Fits the remap on the training split of a `gan_mri.data.dataset.PreparedDataset`
        (its ``train_a``/``train_b`` slices and their brain masks; no test data), standardized
        with ``standardization`` (`gan_mri.standardization.IntensityStandardization`) when given, so
        that it sees the images the model it is compared with sees."""
        return cls.fit({domain: dataset.images(f"train_{domain.lower()}", standardization) for domain in DOMAINS},
                       {domain: dataset.array(f"train_{domain.lower()}_mask") for domain in DOMAINS})

    def translate(self, images, direction: str, brain_mask) -> np.ndarray:
        """Remaps brain intensities of ``images`` into the other contrast; leaves the rest as it is.

        Args:
            images: (N, H, W) or (N, H, W, C) in [-1, 1] of the source contrast.
            direction: "A2B" (T1w -> T2w) or "B2A" (T2w -> T1w).
            brain_mask: boolean (N, H, W) (or (N, H, W, 1)) brain masks of the images.

        Returns:
            float32 array of the shape of ``images``.

        Raises:
            ValueError: for an unknown direction or a mask that does not match the images.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {list(DIRECTIONS)}; found {direction!r}")
        source, target = Direction(direction).source, Direction(direction).target
        images = np.asarray(images, dtype=np.float32)
        mask = np.asarray(brain_mask).astype(bool)
        if mask.ndim == images.ndim and mask.ndim == 4 and mask.shape[-1] == 1:
            mask = mask[..., 0]
        if mask.shape != images.shape[:3]:
            raise ValueError(f"brain_mask: expected shape {images.shape[:3]} to match the images, found {mask.shape}")
        if images.ndim == 4:
            mask = np.broadcast_to(mask[..., None], images.shape)
        probability = np.interp(images[mask], self.quantiles[source], self.levels[source])
        remapped = images.copy()
        remapped[mask] = np.interp(1.0 - probability, self.levels[target], self.quantiles[target])
        return remapped

    def to_dict(self) -> dict:
        """JSON-compatible form: {"A": [...], "B": [...]} quantiles."""
        return {domain: values.tolist() for domain, values in self.quantiles.items()}

    @classmethod
    def from_dict(cls, data: dict) -> "IntensityRemap":
        """Inverse of `to_dict`."""
        return cls(data)
