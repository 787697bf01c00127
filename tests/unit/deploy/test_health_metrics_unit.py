"""modelops_runtime.health and .metrics without NATS: labels, settings, checks, HTTP answers."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops_runtime import health, metrics
from modelops_runtime.health import (
    HealthServer,
    HealthServerError,
    HealthSettings,
    NotReady,
    health_server_from_env,
    run_checks,
)
from modelops_runtime.metrics import Metrics, subject_kind


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        ("modelops.cmd.submit_job", "submit_job"),
        ("modelops.evt.job.job123.task_failed", "task_failed"),
        ("modelops.evt.model.model_registered", "model_registered"),
        ("modelops.evt.rejected.command_rejected", "command_rejected"),
        ("modelops.tasks.job123", "task"),
        ("modelops.cmd.made_up_kind", "other"),  # bounded: unknown kinds never make new series
        ("modelops.evt.job.j1.made_up", "other"),
        ("other.cmd.submit_job", "other"),
        ("", "other"),
    ],
)
def test_subject_kind_is_bounded(subject: str, kind: str):
    assert subject_kind(subject) == kind


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_service_metrics_fill_the_shared_families_with_the_service_label():
    m = Metrics()
    runner = m.for_service("runner")
    runner.message("modelops.tasks.job1", "acked")
    runner.message("modelops.tasks.job2", "acked")
    runner.message("modelops.tasks.job2", "nacked")
    runner.task_finished(0.02)
    runner.task_finished(3.0, failure="timeout")
    runner.task_cached()
    runner.failure("BlobStoreUnavailable")
    runner.queue_depth("MODELOPS_TASKS", "runners-j1", "pending", 7)

    got = samples(m)
    svc = ("service", "runner")
    assert (
        got[
            (
                "modelops_messages_handled_total",
                (("outcome", "acked"), svc, ("subject_kind", "task")),
            )
        ]
        == 2
    )
    assert (
        got[
            (
                "modelops_messages_handled_total",
                (("outcome", "nacked"), svc, ("subject_kind", "task")),
            )
        ]
        == 1
    )
    assert got[("modelops_tasks_completed_total", (("cached", "false"), svc))] == 1
    assert got[("modelops_tasks_completed_total", (("cached", "true"), svc))] == 1
    assert got[("modelops_tasks_failed_total", (("failure", "timeout"), svc))] == 1
    assert got[("modelops_failures_total", (("kind", "BlobStoreUnavailable"), svc))] == 1
    assert got[("modelops_task_duration_seconds_count", (("outcome", "completed"), svc))] == 1
    assert got[("modelops_task_duration_seconds_count", (("outcome", "failed"), svc))] == 1
    depth = (("consumer", "runners-j1"), svc, ("state", "pending"), ("stream", "MODELOPS_TASKS"))
    assert got[("modelops_queue_depth", depth)] == 7

    runner.forget_queue("MODELOPS_TASKS", "runners-j1")
    assert ("modelops_queue_depth", depth) not in samples(m)


def test_each_metrics_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.for_service("x").failure("E")
    assert b"modelops_failures_total{" not in b.render()
    assert b'modelops_failures_total{kind="E",service="x"} 1.0' in a.render()


def test_unknown_outcome_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match="acked"):
        Metrics().for_service("s").message("modelops.cmd.submit_job", "dropped")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({}, HealthSettings(port=None, host="127.0.0.1")),
        ({"MODELOPS_HEALTH_PORT": "8080"}, HealthSettings(port=8080, host="127.0.0.1")),
        (
            {"MODELOPS_HEALTH_PORT": " 9000 ", "MODELOPS_HEALTH_HOST": "0.0.0.0"},
            HealthSettings(port=9000, host="0.0.0.0"),
        ),
    ],
)
def test_health_settings_from_env(env: dict[str, str], want: HealthSettings):
    assert HealthSettings.from_env(env) == want


@pytest.mark.parametrize("raw", ["http", "70000", "-1"])
def test_bad_health_port_names_the_variable(raw: str):
    with pytest.raises(HealthServerError, match="MODELOPS_HEALTH_PORT"):
        HealthSettings.from_env({"MODELOPS_HEALTH_PORT": raw})


async def test_run_checks_reports_each_kind_of_answer():
    never = asyncio.Event()

    async def ok_true() -> bool:
        return True

    async def ok_none() -> None:
        return None

    async def false() -> bool:
        return False

    async def not_ready() -> bool:
        raise NotReady("stream X missing")

    async def broken() -> bool:
        raise RuntimeError("boom")

    async def hangs() -> bool:
        await never.wait()
        return True

    results = await run_checks(
        {"a": ok_true, "b": ok_none, "c": false, "d": not_ready, "e": broken, "f": hangs},
        timeout_s=0.05,
    )
    assert {r.name: (r.ok, r.detail) for r in results} == {
        "a": (True, "ok"),
        "b": (True, "ok"),
        "c": (False, "not ready"),
        "d": (False, "stream X missing"),
        "e": (False, "RuntimeError: boom"),
        "f": (False, "no answer within 0.05s"),
    }


async def test_health_server_answers_probes_and_metrics_over_http():
    state = {"ready": False}

    async def flag() -> bool:
        if not state["ready"]:
            raise NotReady("still starting")
        return True

    m = Metrics()
    m.for_service("registrar").message("modelops.cmd.register_model", "rejected")
    async with (
        HealthServer(port=0, ready_checks={"startup": flag}, metrics=m, service="registrar") as hs,
        aiohttp.ClientSession() as http,
    ):
        assert hs.url == f"http://127.0.0.1:{hs.port}"
        async with http.get(f"{hs.url}/livez") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "ok"
        async with http.get(f"{hs.url}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"] == {"startup": "still starting"}
        state["ready"] = True
        async with http.get(f"{hs.url}/readyz") as resp:
            assert resp.status == 200
        hs.draining()
        async with http.get(f"{hs.url}/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["draining"] == "shutting down"
        async with http.get(f"{hs.url}/metrics") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            body = await resp.text()
        assert (
            'modelops_messages_handled_total{outcome="rejected",service="registrar",'
            'subject_kind="register_model"} 1.0' in body
        )
        async with http.get(f"{hs.url}/nothing") as resp:
            assert resp.status == 404


async def test_a_taken_port_is_a_clear_error():
    async with HealthServer(port=0) as first:
        with pytest.raises(HealthServerError, match=f"127.0.0.1:{first.port}.*hint"):
            await HealthServer(port=first.port).start()


async def test_health_server_from_env_is_off_without_a_port_and_on_with_one():
    async with health_server_from_env(service="s", env={}) as none:
        assert none is None
    env = {"MODELOPS_HEALTH_PORT": "0", "MODELOPS_HEALTH_HOST": "127.0.0.1"}
    async with health_server_from_env(service="s", env=env) as hs:
        assert hs is not None and hs.port > 0


def test_public_api_is_declared():
    assert set(health.__all__) <= set(dir(health))
    assert set(metrics.__all__) <= set(dir(metrics))
