"""gan-mri: translate brain MR images between T1-weighted and T2-weighted contrasts.

Domain ``A`` is T1-weighted and domain ``B`` is T2-weighted throughout the library; a
direction is ``"A2B"`` (T1w -> T2w) or ``"B2A"`` (T2w -> T1w). Images are float32,
channels-last, with intensities in [-1, 1].
"""

__version__ = "0.1.0"

DOMAINS = ("A", "B")
DIRECTIONS = ("A2B", "B2A")
CONTRAST_OF_DOMAIN = {"A": "T1w", "B": "T2w"}
