"""Quick-look plots of a results table (matplotlib, Agg: no display needed).

- A time-series output (several rows per task): for a few parameter sets, the median and the
  90% band (5th-95th percentile) over replicates, one panel per output column, against the
  output's first column (e.g. `day`).
- A scalar output (one row per task): each output column scattered against each parameter.

Pure apart from writing the image: a table comes in, a PNG goes out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib.figure import Figure

from .errors import ConfigError
from .results import column_groups

__all__ = ["PlotReport", "is_time_series", "plot_table"]

MAX_PANELS = 4
_QUANTILES = (0.05, 0.5, 0.95)


@dataclass(frozen=True)
class PlotReport:
    """What was drawn, for the command's one-line answer."""

    kind: str  # "time series" | "scatter"
    columns: tuple[str, ...]
    parameter_sets: int
    path: Path


def _numeric(table: pa.Table, names: list[str]) -> list[str]:
    return [
        n
        for n in names
        if pa.types.is_integer(table.schema.field(n).type)
        or pa.types.is_floating(table.schema.field(n).type)
    ]


def is_time_series(table: pa.Table) -> bool:
    """More rows than tasks: each task produced a series, not a single row."""
    return table.num_rows > pc.count_distinct(table["task_id"]).as_py()


def _pick(wanted: list[str] | None, numeric: list[str], what: str) -> list[str]:
    if not wanted:
        return numeric[:MAX_PANELS]
    unknown = [c for c in wanted if c not in numeric]
    if unknown:
        raise ConfigError(
            f"cannot plot {', '.join(unknown)}: not a numeric {what} column",
            hint="numeric columns: " + ", ".join(numeric),
        )
    return wanted


def _step_column(table: pa.Table) -> pa.Table:
    """Add `step`: the row's position within its task (for series with no x column)."""
    counts: dict[str, int] = {}
    steps = []
    for task in table["task_id"].to_pylist():
        steps.append(counts.get(task, 0))
        counts[task] = steps[-1] + 1
    return table.append_column("step", pa.array(steps, pa.int64()))


def _series_figure(
    table: pa.Table, outputs: list[str], columns: list[str] | None, max_sets: int, title: str
) -> tuple[Figure, list[str], int]:
    numeric = _numeric(table, outputs)
    if not numeric:
        raise ConfigError("the output has no numeric column to plot")
    if len(numeric) >= 2:
        x, candidates = numeric[0], numeric[1:]
    else:
        table, x, candidates = _step_column(table), "step", numeric
    ys = _pick(columns, candidates, "output")
    param_ids = list(dict.fromkeys(table["param_id"].to_pylist()))[:max_sets]
    ncols = len(ys) if len(ys) <= 2 else 2
    nrows = -(-len(ys) // ncols)
    fig = Figure(figsize=(5.5 * ncols, 4.0 * nrows), layout="constrained")
    grid = fig.subplots(nrows, ncols, squeeze=False)
    axes = [ax for row in grid for ax in row]
    for ax in axes[len(ys) :]:
        ax.set_visible(False)
    for ax, y in zip(axes, ys, strict=False):
        for pid in param_ids:
            rows = table.filter(pc.equal(table["param_id"], pid))
            stats = (
                rows.group_by(x)
                .aggregate([(y, "tdigest", pc.TDigestOptions(q=list(_QUANTILES)))])
                .sort_by(x)
            )
            xs = stats[x].to_numpy()
            q = np.array(stats[f"{y}_tdigest"].to_pylist(), dtype=float)
            (line,) = ax.plot(xs, q[:, 1], label=pid[:12])
            ax.fill_between(xs, q[:, 0], q[:, 2], color=line.get_color(), alpha=0.2)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{y}: median, 90% band")
    axes[0].legend(title="param_id", fontsize="small")
    fig.suptitle(title)
    return fig, ys, len(param_ids)


def _scatter_figure(
    table: pa.Table, params: list[str], outputs: list[str], columns: list[str] | None, title: str
) -> tuple[Figure, list[str], int]:
    ys = _pick(columns, _numeric(table, outputs), "output")
    xs = _numeric(table, params)[:MAX_PANELS]
    if not ys or not xs:
        raise ConfigError("need numeric parameters and outputs for a scatter plot")
    fig = Figure(figsize=(3.6 * len(xs), 3.0 * len(ys)), layout="constrained")
    axes = fig.subplots(len(ys), len(xs), squeeze=False)
    for i, y in enumerate(ys):
        yv = table[y].to_numpy(zero_copy_only=False)
        for j, x in enumerate(xs):
            ax = axes[i][j]
            ax.scatter(table[x].to_numpy(zero_copy_only=False), yv, s=8, alpha=0.5)
            ax.set_xlabel(x)
            ax.set_ylabel(y)
    fig.suptitle(title)
    n_sets = pc.count_distinct(table["param_id"]).as_py()
    return fig, ys, n_sets


def plot_table(
    table: pa.Table,
    dest: Path,
    *,
    title: str,
    columns: list[str] | None = None,
    max_sets: int = 5,
) -> PlotReport:
    """Draw the table (time series or scatter, decided by its shape) into `dest` (PNG)."""
    if table.num_rows == 0:
        raise ConfigError("the results table has no rows to plot")
    params, outputs = column_groups(table.schema)
    if is_time_series(table):
        fig, ys, n_sets = _series_figure(table, outputs, columns, max_sets, title)
        kind = "time series"
    else:
        fig, ys, n_sets = _scatter_figure(table, params, outputs, columns, title)
        kind = "scatter"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=100)
    return PlotReport(kind=kind, columns=tuple(ys), parameter_sets=n_sets, path=dest)
