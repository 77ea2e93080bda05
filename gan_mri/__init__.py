"""gan-mri: translate brain MR images between T1-weighted and T2-weighted contrasts.

Domain ``A`` is T1-weighted and domain ``B`` is T2-weighted throughout the library; a
direction is ``"A2B"`` (T1w -> T2w) or ``"B2A"`` (T2w -> T1w). Images are float32,
channels-last, with intensities in [-1, 1].
"""

import enum

__version__ = "0.1.0"

DOMAINS = ("A", "B")
DIRECTIONS = ("A2B", "B2A")
CONTRAST_OF_DOMAIN = {"A": "T1w", "B": "T2w"}


class Direction(str, enum.Enum):
    """A translation direction, ``Direction.A2B`` (T1w -> T2w) or ``Direction.B2A`` (T2w -> T1w).

    A ``str``: it equals, hashes, formats and serializes as ``"A2B"``/``"B2A"``, so it goes wherever a
    direction string goes (dict keys, JSON, messages), and it names its domains and contrasts instead of
    leaving callers to index the string. ``Direction("A2B")`` makes one from the canonical name;
    ``gan_mri.inference.parse_direction`` from any spelling a user types ("T1->T2", "t2w2t1w").

    Example:
        >>> Direction("B2A").source, Direction("B2A").target_contrast, Direction.A2B.reverse
        ('B', 'T1w', <Direction.B2A: 'B2A'>)
    """

    A2B = "A2B"
    B2A = "B2A"

    __str__ = str.__str__
    __format__ = str.__format__

    @property
    def source(self) -> str:
        """The source domain, "A" or "B"."""
        return self.value[0]

    @property
    def target(self) -> str:
        """The target domain, "A" or "B"."""
        return self.value[2]

    @property
    def source_contrast(self) -> str:
        """The source contrast, "T1w" or "T2w"."""
        return CONTRAST_OF_DOMAIN[self.source]

    @property
    def target_contrast(self) -> str:
        """The target contrast, "T1w" or "T2w"."""
        return CONTRAST_OF_DOMAIN[self.target]

    @property
    def reverse(self) -> "Direction":
        """The other direction."""
        return Direction(f"{self.target}2{self.source}")
