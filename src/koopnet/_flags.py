"""Categorical variables shared between stages, and their CF flag attributes."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

__all__ = ["EquilibriumType", "flag_attrs", "STABLE_TYPES", "first_stable"]


class EquilibriumType(IntEnum):
    """Type of an equilibrium from its Jacobian spectrum (padding entries are -1)."""

    stable_node = 0
    stable_focus = 1
    saddle = 2
    unstable_node = 3
    unstable_focus = 4
    non_hyperbolic = 5


STABLE_TYPES = (EquilibriumType.stable_node, EquilibriumType.stable_focus)


def first_stable(stable: np.ndarray) -> np.ndarray:
    """Index of each network's reference attractor: its first stable equilibrium.

    The equilibria stage lists stable equilibria first, so this is the stable equilibrium that
    most starts reached. ``stable`` is a boolean mask (B, E); the result (B,) is -1 where a
    network has no stable equilibrium.
    """
    stable = np.asarray(stable, dtype=bool)
    return np.where(stable.any(axis=-1), np.argmax(stable, axis=-1), -1)


def flag_attrs(enum: type[IntEnum], long_name: str, padding: bool = False) -> dict:
    """CF attributes (`flag_values`, `flag_meanings`) for an IntEnum-coded variable.

    ``padding=True`` adds the value -1 ("padding") used where a padded dimension (e.g.
    ``equilibrium``) has no entry.
    """
    values = [int(m) for m in enum]
    names = [m.name for m in enum]
    if padding:
        values, names = [-1] + values, ["padding"] + names
    return {"long_name": long_name, "units": "1", "flag_values": values, "flag_meanings": " ".join(names)}
