"""Results tables shaped like the submitter's: ids, params, seed, replicate, then outputs."""

from __future__ import annotations

import pyarrow as pa


def timeseries(sets: int = 3, replicates: int = 4, days: int = 10) -> pa.Table:
    rows: dict[str, list] = {
        k: [] for k in ("task_id", "param_id", "beta", "I0", "seed", "replicate", "day", "I")
    }
    for p in range(sets):
        for r in range(replicates):
            for d in range(days):
                rows["task_id"].append(f"t{p}-{r}")
                rows["param_id"].append(f"p{p}")
                rows["beta"].append(0.01 * (p + 1))
                rows["I0"].append(p + 1)
                rows["seed"].append(1000 * p + r)
                rows["replicate"].append(r)
                rows["day"].append(d)
                rows["I"].append(float(d * (p + 1) + r))
    return pa.table(rows)


def summary(sets: int = 3, replicates: int = 4) -> pa.Table:
    rows: dict[str, list] = {
        k: [] for k in ("task_id", "param_id", "beta", "seed", "replicate", "peak", "label")
    }
    for p in range(sets):
        for r in range(replicates):
            rows["task_id"].append(f"t{p}-{r}")
            rows["param_id"].append(f"p{p}")
            rows["beta"].append(0.01 * (p + 1))
            rows["seed"].append(r)
            rows["replicate"].append(r)
            rows["peak"].append(100 * p + r)
            rows["label"].append("x")
    return pa.table(rows)
