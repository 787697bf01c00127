"""The watch display: a live bar in a terminal, a line per tenth of the job elsewhere."""

from __future__ import annotations

import io
import re

from rich.console import Console

from modelops_cli.jobstate import JobView
from modelops_cli.progress import JobProgressDisplay

JOB = "job-00000000000b"


def _views(total: int):  # type: ignore[no-untyped-def]
    view = JobView(job_id=JOB, total=total, state="running")
    for n in range(total + 1):
        view.progress_completed = n
        yield view


def test_plain_lines_at_each_tenth_when_not_a_terminal() -> None:
    buf = io.StringIO()
    with JobProgressDisplay(Console(file=buf, width=120), JOB) as display:
        for view in _views(40):
            display.update(view)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 11  # 0%, 10%, ..., 100%
    assert lines[-1] == f"{JOB}: 40/40 tasks done, 0 failed"


def test_live_bar_in_a_terminal_fits_80_columns() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=80, color_system=None)
    with JobProgressDisplay(console, JOB) as display:
        for view in _views(100_000):
            if view.progress_completed % 25_000 == 0:
                view.progress_failed = view.progress_completed // 1000
                display.update(view)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue())  # cursor control codes
    final = text.replace("\r", "\n").splitlines()
    last = [line for line in final if JOB in line][-1]
    assert "100000/100000" in last and "100 failed" in last and "ETA" in last
    assert len(last.rstrip()) <= 80
