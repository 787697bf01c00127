"""Pacing decisions of the runner loop, pure: how much to fetch, and when to retry or give up."""

from __future__ import annotations

import math

__all__ = ["fetch_size", "is_last_delivery", "look_ahead", "nak_delay"]

_MAX_NAK_DELAY_S = 30.0


def nak_delay(attempt: int) -> float:
    """Back-off before redelivering a task that hit infrastructure trouble: 1, 2, 4 … 30 s."""
    return min(_MAX_NAK_DELAY_S, 2.0 ** max(0, attempt - 1))


def fetch_size(*, n_workers: int, occupying: int, held: int, max_held: int, ahead: int) -> int:
    """How many messages to ask for now (0: wait until a task finishes).

    `occupying` counts messages waiting for or holding a worker; `ahead` is how many more to
    hold so that a worker finishing a short task starts the next one without waiting for a
    fetch (0 for long tasks: they are never held idle here while another runner could run
    them). An idle worker is fed at once; otherwise fetches wait until half of `ahead` is
    missing, so short tasks come in batches rather than one round trip each.
    """
    deficit = min(n_workers + ahead - occupying, max_held - held)
    if deficit <= 0:
        return 0
    if occupying < n_workers:
        return deficit
    return deficit if deficit >= max(1, ahead // 2) else 0


def look_ahead(task_s: float | None, *, n_workers: int, window_s: float, limit: int) -> int:
    """Tasks to hold beyond the workers: about `window_s` of work, at least one per worker.

    None (no task finished yet) or tasks longer than the window: none ahead.
    """
    if task_s is None or task_s >= window_s:
        return 0
    per_worker = math.ceil(window_s / max(task_s, 1e-6))
    return max(0, min(limit, n_workers * per_worker))


def is_last_delivery(attempt: int, max_deliver: int) -> bool:
    return max_deliver > 0 and attempt >= max_deliver
