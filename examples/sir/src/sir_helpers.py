"""Helpers for the StochasticSIR example: data loading and one tau-leap step.

Kept in its own module so `register-model` has a local import to follow: this file is
tracked as code of the model without being named on the command line.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["DATA_DIR", "infection_step", "load_contacts", "load_population"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def load_population(path: Path = DATA_DIR / "population.csv") -> tuple[list[str], np.ndarray]:
    """Age-group names and sizes, in file order."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["group"] for r in rows], np.array([int(r["size"]) for r in rows], dtype=np.int64)


def load_contacts(
    groups: list[str], path: Path = DATA_DIR / "contacts" / "contact_matrix.csv"
) -> np.ndarray:
    """Daily contacts between age groups, as a matrix ordered like `groups`.

    Rows are the contacting group, columns the contacted one. The header names the groups,
    so a reordered file cannot silently mix them up.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)[1:]
        table = {row[0]: [float(x) for x in row[1:]] for row in reader}
    if sorted(header) != sorted(groups) or sorted(table) != sorted(groups):
        raise ValueError(f"{path}: groups {header} do not match population groups {groups}")
    order = [header.index(g) for g in groups]
    return np.array([[table[g][j] for j in order] for g in groups])


def infection_step(
    rng: np.random.Generator,
    s: np.ndarray,
    i: np.ndarray,
    n: np.ndarray,
    force: np.ndarray,
    gamma: float,
    dt: float,
) -> tuple[np.ndarray, np.ndarray]:
    """New infections and recoveries per group over `dt` days (binomial tau-leap)."""
    lam = force @ (i / n)  # per-susceptible infection hazard of each group
    new_i = rng.binomial(s, -np.expm1(-lam * dt))
    new_r = rng.binomial(i, -np.expm1(-gamma * dt))
    return new_i, new_r
