"""Categorical variables shared between stages, and their CF flag attributes."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["EquilibriumType", "flag_attrs", "STABLE_TYPES"]


class EquilibriumType(IntEnum):
    """Type of an equilibrium from its Jacobian spectrum (padding entries are -1)."""

    stable_node = 0
    stable_focus = 1
    saddle = 2
    unstable_node = 3
    unstable_focus = 4
    non_hyperbolic = 5


STABLE_TYPES = (EquilibriumType.stable_node, EquilibriumType.stable_focus)


def flag_attrs(enum: type[IntEnum], long_name: str) -> dict:
    """CF attributes (`flag_values`, `flag_meanings`) for an IntEnum-coded variable."""
    return {
        "long_name": long_name,
        "units": "1",
        "flag_values": [int(m) for m in enum],
        "flag_meanings": " ".join(m.name for m in enum),
    }
