"""StochasticSIR: an age-structured stochastic SIR model, the ModelOps example.

Follows the model contract (services/runner/src/modelops_runner/model_contract.py): the
runner builds the class once per worker, merges a scenario patch over the parameters, sets
`config`, and calls `simulate(params, seed)`, which returns one table per output.
"""

from __future__ import annotations

import numpy as np
from sir_helpers import infection_step, load_contacts, load_population

__all__ = ["StochasticSIR"]


class StochasticSIR:
    """Binomial tau-leap SIR over age groups mixing through a contact matrix."""

    outputs = ["timeseries", "summary"]
    # Declared ranges: registration records them and studies outside them are refused.
    parameters = {
        "beta": {"lower": 0.01, "upper": 0.1, "kind": "float"},
        "gamma": {"lower": 0.05, "upper": 0.5, "kind": "float"},
        "I0": {"lower": 1, "upper": 100, "kind": "int"},
    }
    scenarios = {"baseline": {}, "lockdown": {"contact_scale": 0.4}}
    config = {"days": 160, "steps_per_day": 3}

    def __init__(self) -> None:
        # Read data once per worker: every task of that worker reuses it.
        self.groups, self.population = load_population()
        self.contacts = load_contacts(self.groups)

    def simulate(self, params: dict, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        beta = float(params.get("beta", 0.04))
        gamma = float(params.get("gamma", 0.1))
        seeds = int(params.get("I0", 10))
        scale = float(params.get("contact_scale", 1.0))
        days = int(self.config["days"])
        steps = int(self.config["steps_per_day"])
        dt = 1.0 / steps

        n = self.population
        i = np.zeros_like(n)
        i[int(np.argmax(n))] = min(seeds, int(n.max()))  # seed the largest group
        s, r = n - i, np.zeros_like(n)
        force = beta * scale * self.contacts

        out_s, out_i, out_r, incidence = (np.zeros(days + 1, dtype=np.int64) for _ in range(4))
        out_s[0], out_i[0] = s.sum(), i.sum()
        for day in range(1, days + 1):
            infected_today = 0
            for _ in range(steps):
                new_i, new_r = infection_step(rng, s, i, n, force, gamma, dt)
                s, i, r = s - new_i, i + new_i - new_r, r + new_r
                infected_today += int(new_i.sum())
            out_s[day], out_i[day], out_r[day] = s.sum(), i.sum(), r.sum()
            incidence[day] = infected_today

        total = int(n.sum())
        return {
            "timeseries": {
                "day": np.arange(days + 1),
                "S": out_s,
                "I": out_i,
                "R": out_r,
                "incidence": incidence,
            },
            "summary": {
                "peak_infected": int(out_i.max()),
                "peak_day": int(out_i.argmax()),
                "attack_rate": float((total - out_s[-1]) / total),
                "final_size": int(total - out_s[-1]),
            },
        }
