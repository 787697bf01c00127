"""The Job controller's decisions, as a pure function of a Job and its pods.

`reconcile(job, pods, now)` says which indexes to start, which pods to kill, and the new
status; the cluster carries that out. Everything is derived from the pods (which stay in
the store until the Job is deleted, as on a cluster without pod GC), so the function has
no memory of its own and is easy to reason about.

Semantics follow the Kubernetes 1.31+ job controller, simplified where noted:
- Indexed: one success per index 0..completions-1; NonIndexed: `completions` successes, or,
  with completions unset (work queue), the first success ends pod creation.
- Failures count against `backoffLimit`, or per index against `backoffLimitPerIndex`;
  `podFailurePolicy` rules (onExitCodes / onPodConditions) can Ignore, Count, FailIndex or
  FailJob. Replacement pods start at once: the real exponential back-off delay is skipped.
- `activeDeadlineSeconds` counts from startTime.
- A failing Job first gets `FailureTarget` (and a succeeding one `SuccessCriteriaMet`);
  `Failed`/`Complete` follow only once no pod is still running, so whoever sees the final
  condition knows the processes are gone.
- `suspend` kills and removes active pods and resets startTime; resuming starts anew.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .meta import JOB_INDEX_KEY, format_time, parse_time

__all__ = ["Decision", "PodView", "compress_indexes", "reconcile"]

_LIVE = ("Pending", "Running")


@dataclass(frozen=True)
class PodView:
    """What the controller needs to know about one pod."""

    name: str
    namespace: str
    index: int | None
    phase: str
    terminating: bool
    container: str
    exit_code: int | None
    conditions: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, pod: dict[str, Any]) -> PodView:
        meta, status = pod["metadata"], pod.get("status") or {}
        index = (meta.get("annotations") or {}).get(JOB_INDEX_KEY)
        container_statuses = status.get("containerStatuses") or [{}]
        terminated = (container_statuses[0].get("state") or {}).get("terminated") or {}
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            index=int(index) if index is not None else None,
            phase=status.get("phase", "Pending"),
            terminating=meta.get("deletionTimestamp") is not None,
            container=pod["spec"]["containers"][0]["name"],
            exit_code=terminated.get("exitCode"),
            conditions=tuple((c["type"], c["status"]) for c in status.get("conditions") or []),
        )


@dataclass
class Decision:
    """What to do next: `terminate` kills pods and keeps them (they end Failed); `evict`
    kills and removes them (suspension). `wake_at` asks for a reconcile at the deadline."""

    status: dict[str, Any]
    start: list[int | None] = field(default_factory=list)
    terminate: list[str] = field(default_factory=list)
    evict: list[str] = field(default_factory=list)
    wake_at: datetime | None = None


def compress_indexes(indexes: set[int]) -> str:
    """``{0,1,2,5}`` -> ``"0-2,5"``, the format of completedIndexes and failedIndexes."""
    ranges: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        ranges.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(ranges)


def _judge(rules: list[dict[str, Any]], pod: PodView) -> tuple[str, int | None]:
    """The pod failure policy action for a failed pod: first matching rule, else Count."""
    for i, rule in enumerate(rules):
        codes = rule.get("onExitCodes")
        if codes is not None and pod.exit_code is not None:
            name_ok = codes.get("containerName") in (None, pod.container)
            hit = pod.exit_code in codes.get("values", [])
            if name_ok and (hit if codes.get("operator") == "In" else not hit):
                return rule["action"], i
        for pattern in rule.get("onPodConditions") or []:
            if (pattern["type"], pattern.get("status", "True")) in pod.conditions:
                return rule["action"], i
    return "Count", None


def _has(status: dict[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in status.get("conditions", []))


def _set_condition(
    status: dict[str, Any], kind: str, value: str, reason: str, message: str, now: str
) -> None:
    conditions = status.setdefault("conditions", [])
    for condition in conditions:
        if condition["type"] == kind:
            if (condition["status"], condition.get("reason")) != (value, reason):
                condition.update(
                    status=value,
                    reason=reason,
                    message=message,
                    lastProbeTime=now,
                    lastTransitionTime=now,
                )
            return
    conditions.append(
        {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
    )


def _set_count(status: dict[str, Any], key: str, value: int) -> None:
    """active/succeeded/failed are `omitempty` in the API: zero means absent."""
    if value:
        status[key] = value
    else:
        status.pop(key, None)


@dataclass
class _Tally:
    live: list[PodView]
    active: list[PodView]
    succeeded: list[PodView]
    counted: list[tuple[PodView, str, int | None]]
    done: set[int]
    failed_indexes: set[int]


def _tally(spec: dict[str, Any], views: list[PodView]) -> _Tally:
    live = [v for v in views if v.phase in _LIVE]
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    judged = [(v, *_judge(rules, v)) for v in views if v.phase == "Failed"]
    counted = [j for j in judged if j[1] != "Ignore"]
    completions = spec.get("completions")
    succeeded = [v for v in views if v.phase == "Succeeded"]
    done = {
        v.index
        for v in succeeded
        if v.index is not None and completions is not None and v.index < completions
    }
    failed_indexes: set[int] = set()
    per_index = spec.get("backoffLimitPerIndex")
    if per_index is not None:
        counts: dict[int, int] = {}
        for view, action, _ in counted:
            if view.index is None or view.index in done:
                continue
            counts[view.index] = counts.get(view.index, 0) + 1
            if action == "FailIndex" or counts[view.index] > per_index:
                failed_indexes.add(view.index)
    return _Tally(
        live, [v for v in live if not v.terminating], succeeded, counted, done, failed_indexes
    )


def reconcile(job: dict[str, Any], pods: list[dict[str, Any]], now: datetime) -> Decision:
    """Decide the next step for `job` given all its pods (see the module docstring)."""
    spec = job["spec"]
    status = copy.deepcopy(job.get("status") or {})
    stamp = format_time(now)
    indexed = spec.get("completionMode") == "Indexed"
    tally = _tally(spec, [PodView.of(p) for p in pods])
    decision = Decision(status)
    _set_count(status, "active", len(tally.active))
    _set_count(status, "succeeded", len(tally.done) if indexed else len(tally.succeeded))
    _set_count(status, "failed", len(tally.counted))
    status["ready"] = sum(1 for v in tally.active if v.phase == "Running")
    status["terminating"] = len(tally.live) - len(tally.active)
    status.setdefault("uncountedTerminatedPods", {})
    if indexed:
        _set_index_field(status, "completedIndexes", tally.done)
        if spec.get("backoffLimitPerIndex") is not None:
            status["failedIndexes"] = compress_indexes(tally.failed_indexes)

    if _has(status, "Complete") or _has(status, "Failed"):
        decision.terminate = [v.name for v in tally.active]
        return decision
    if spec.get("suspend"):
        decision.evict = [v.name for v in tally.active]
        status.pop("startTime", None)
        _set_condition(status, "Suspended", "True", "JobSuspended", "Job suspended", stamp)
        return decision
    if _has(status, "Suspended"):
        _set_condition(status, "Suspended", "False", "JobResumed", "Job resumed", stamp)
    status.setdefault("startTime", stamp)

    if not (_has(status, "FailureTarget") or _has(status, "SuccessCriteriaMet")):
        verdict = _failure(spec, status, tally, now) or _success(spec, tally, indexed)
        if verdict is not None:
            kind, reason, message = verdict
            _set_condition(status, kind, "True", reason, message, stamp)
    if _has(status, "FailureTarget") or _has(status, "SuccessCriteriaMet"):
        _finish(status, tally, stamp, decision)
        return decision

    decision.start = _starts(spec, tally, indexed)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None:
        decision.wake_at = parse_time(status["startTime"]) + timedelta(seconds=deadline)
    return decision


def _set_index_field(status: dict[str, Any], key: str, indexes: set[int]) -> None:
    if indexes:
        status[key] = compress_indexes(indexes)
    else:
        status.pop(key, None)


def _finish(status: dict[str, Any], tally: _Tally, stamp: str, decision: Decision) -> None:
    """Kill what still runs; once nothing runs, add the terminal condition."""
    decision.terminate = [v.name for v in tally.active]
    if tally.live:
        return
    failing = _has(status, "FailureTarget")
    target = next(
        c
        for c in status["conditions"]
        if c["type"] == ("FailureTarget" if failing else "SuccessCriteriaMet")
    )
    final = "Failed" if failing else "Complete"
    _set_condition(status, final, "True", target["reason"], target["message"], stamp)
    if not failing:
        status["completionTime"] = stamp


def _failure(
    spec: dict[str, Any], status: dict[str, Any], tally: _Tally, now: datetime
) -> tuple[str, str, str] | None:
    for view, action, rule in tally.counted:
        if action != "FailJob":
            continue
        if view.exit_code is not None:
            what = (
                f"Container {view.container} for pod {view.namespace}/{view.name} "
                f"failed with exit code {view.exit_code}"
            )
        else:
            what = f"Pod {view.namespace}/{view.name} has a condition"
        return (
            "FailureTarget",
            "PodFailurePolicy",
            f"{what} matching FailJob rule at index {rule}",
        )
    max_failed = spec.get("maxFailedIndexes")
    if max_failed is not None and len(tally.failed_indexes) > max_failed:
        return (
            "FailureTarget",
            "MaxFailedIndexesExceeded",
            "Job has exceeded the specified maximal number of failed indexes",
        )
    if len(tally.counted) > spec.get("backoffLimit", 6):
        return (
            "FailureTarget",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        )
    deadline = spec.get("activeDeadlineSeconds")
    if (
        deadline is not None
        and parse_time(status["startTime"]) + timedelta(seconds=deadline) <= now
    ):
        return (
            "FailureTarget",
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        )
    return None


def _success(spec: dict[str, Any], tally: _Tally, indexed: bool) -> tuple[str, str, str] | None:
    completions = spec.get("completions")
    if indexed:
        remaining = set(range(completions)) - tally.done - tally.failed_indexes
        if remaining:
            return None
        if tally.failed_indexes:
            return ("FailureTarget", "FailedIndexes", "Job has failed indexes")
    elif completions is not None:
        if len(tally.succeeded) < completions:
            return None
    elif not tally.succeeded or tally.active:
        return None
    return ("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods")


def _starts(spec: dict[str, Any], tally: _Tally, indexed: bool) -> list[int | None]:
    room = max(0, spec.get("parallelism", 1) - len(tally.active))
    completions = spec.get("completions")
    if indexed:
        busy = {v.index for v in tally.live}
        skip = tally.done | tally.failed_indexes | busy
        return [i for i in range(completions) if i not in skip][:room]
    if completions is not None:
        return [None] * max(0, min(room, completions - len(tally.succeeded) - len(tally.active)))
    return [] if tally.succeeded else [None] * room
