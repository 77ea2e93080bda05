"""Synthetic two-domain images for the learning tests (no MR physics, just shapes)."""

import numpy as np


def random_shapes(rng, n, size=32):
    """Discs and squares of random intensity on a dark background, in [-1, 1], shape (n, size, size, 1).

    Domain A of the learning tests; its intensity-inverted twin (-x) from another draw is domain B.
    """
    yy, xx = np.mgrid[:size, :size]
    out = np.full((n, size, size, 1), -1.0, np.float32)
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(6, size - 6, 2)
            r = rng.integers(3, 8)
            if rng.random() < 0.5:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:
                mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            out[i, mask, 0] = rng.uniform(0.0, 1.0)
    return out
