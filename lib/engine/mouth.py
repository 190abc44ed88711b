"""The mouth shapes every avatar has a sprite for; the lip-sync timeline speaks in these."""

from __future__ import annotations

from enum import IntEnum


class MouthShape(IntEnum):
    REST = 0  # lips together, relaxed: silence
    MBP = 1  # lips pressed shut: m, b, p
    CONSONANT = 2  # slightly open, teeth visible: t, d, s, z, n, k, g, ...
    E = 3  # spread, medium open: e, i
    A = 4  # wide open: a
    O = 5  # rounded open: o
    U = 6  # puckered small: u, w
    FV = 7  # lower lip on upper teeth: f, v
    L = 8  # open with tongue up: l, th


CLOSED_SHAPES = frozenset({MouthShape.REST, MouthShape.MBP})
