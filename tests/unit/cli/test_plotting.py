"""Quick-look plots: a time series gives bands, a scalar output gives scatters."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops_cli.errors import ConfigError
from modelops_cli.plotting import is_time_series, plot_table

from .tables import summary, timeseries

PNG = b"\x89PNG\r\n\x1a\n"


def test_time_series_plot(tmp_path: Path) -> None:
    assert is_time_series(timeseries())
    report = plot_table(timeseries(), tmp_path / "ts.png", title="t", max_sets=2)
    assert (report.kind, report.columns, report.parameter_sets) == ("time series", ("I",), 2)
    assert (tmp_path / "ts.png").read_bytes().startswith(PNG)


def test_scalar_plot_and_column_choice(tmp_path: Path) -> None:
    assert not is_time_series(summary())
    report = plot_table(summary(), tmp_path / "s.png", title="s", columns=["peak"])
    assert (report.kind, report.columns, report.parameter_sets) == ("scatter", ("peak",), 3)
    assert (tmp_path / "s.png").read_bytes().startswith(PNG)
    with pytest.raises(ConfigError, match="label") as info:
        plot_table(summary(), tmp_path / "x.png", title="s", columns=["label"])
    assert "peak" in (info.value.hint or "")


def test_empty_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no rows"):
        plot_table(summary().slice(0, 0), tmp_path / "e.png", title="e")
