"""SubmitJob -> SimJob: reference parsing, job ids, checks against the bundle index."""

from __future__ import annotations

import pytest

from modelops_contracts import (
    ParameterSet,
    ParameterSpace,
    ParameterSpec,
    SimulationStudy,
    SubmitJob,
)
from modelops_submitter.binding import (
    bind_job,
    check_against_index,
    idempotency_key,
    job_id_for,
    parse_target,
)
from modelops_submitter.errors import CommandInvalid

from .fakes import DIGEST, REF, sir_index


def study(**kw: object) -> SimulationStudy:
    sets = kw.pop("sets", [{"beta": 0.2, "gamma": 0.1}, {"beta": 0.3, "gamma": 0.1}])
    return SimulationStudy(
        model=kw.pop("model", "model:StochasticSIR"),
        parameter_sets=[ParameterSet(params=p) for p in sets],  # type: ignore[attr-defined]
        n_replicates=kw.pop("n_replicates", 3),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def submit(**kw: object) -> SubmitJob:
    return SubmitJob(correlation_id="c1", bundle_ref=kw.pop("bundle_ref", REF), **kw)  # type: ignore[arg-type]


def test_parse_target_forms() -> None:
    pinned = parse_target(REF)
    assert (pinned.host, pinned.repository, pinned.digest, pinned.tag) == (
        "registry.test:5000",
        "models/sir",
        DIGEST,
        None,
    )
    tagged = parse_target("127.0.0.1:5000/models/sir:v2")
    assert (tagged.host, tagged.repository, tagged.tag) == ("127.0.0.1:5000", "models/sir", "v2")
    assert parse_target("127.0.0.1:5000/models/sir").tag == "latest"
    assert tagged.pinned(DIGEST) == f"127.0.0.1:5000/models/sir@{DIGEST}"


@pytest.mark.parametrize(
    "text", ["nohost", "h/Repo:tag", "h/repo@sha256:abc", "h/repo:bad tag", "h/"]
)
def test_parse_target_refuses_malformed_references(text: str) -> None:
    with pytest.raises(CommandInvalid) as info:
        parse_target(text)
    assert info.value.field == "bundle_ref"


def test_job_id_is_derived_from_the_idempotency_key() -> None:
    a = submit(study=study(), idempotency_key="k1")
    b = submit(study=study(), idempotency_key="k1")
    c = submit(study=study(), idempotency_key="k2")
    assert job_id_for(a) == job_id_for(b) != job_id_for(c)
    assert job_id_for(a).startswith("job-") and len(job_id_for(a)) == 16


def test_without_a_key_the_message_id_keeps_a_redelivery_on_the_same_job() -> None:
    cmd = submit(study=study())
    assert idempotency_key(cmd) == f"msg:{cmd.id}"
    assert job_id_for(cmd) == job_id_for(cmd)
    assert job_id_for(submit(study=study())) != job_id_for(cmd)


def test_explicit_job_id_wins() -> None:
    assert job_id_for(submit(study=study(), job_id="my-job", idempotency_key="k")) == "my-job"


def test_check_accepts_a_matching_study() -> None:
    check_against_index(submit(study=study(scenario="lockdown")), sir_index())


def test_unknown_entrypoint_is_refused_with_the_known_ones() -> None:
    with pytest.raises(CommandInvalid) as info:
        check_against_index(submit(study=study(model="model:Nope")), sir_index())
    assert info.value.field == "study.model"
    assert "model:StochasticSIR" in (info.value.hint or "")


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(CommandInvalid) as info:
        check_against_index(submit(study=study(scenario="nowhere")), sir_index())
    assert "nowhere" in info.value.message
    assert info.value.field == "study.model"


def test_unknown_parameter_names_are_refused() -> None:
    with pytest.raises(CommandInvalid) as info:
        check_against_index(submit(study=study(sets=[{"beta": 0.2, "delta": 1.0}])), sir_index())
    assert info.value.field == "study.parameter_sets.0.params"
    assert "delta" in info.value.message and "beta, gamma" in (info.value.hint or "")


def test_a_model_that_declares_no_parameters_accepts_any_names() -> None:
    check_against_index(submit(study=study(sets=[{"anything": 1}])), sir_index(parameters=[]))


def test_values_outside_the_models_declared_ranges_are_refused() -> None:
    space = ParameterSpace(
        specs=[
            ParameterSpec(name="beta", lower=0.05, upper=0.5),
            ParameterSpec(name="gamma", lower=0.05, upper=0.3),
        ]
    )
    index = sir_index(space=space)
    check_against_index(submit(study=study()), index)
    with pytest.raises(CommandInvalid) as info:
        check_against_index(submit(study=study(sets=[{"beta": 0.9, "gamma": 0.1}])), index)
    assert info.value.field == "study.parameter_sets.0.params.beta"
    assert "outside" in info.value.message


def test_bind_pins_the_study_and_keeps_the_job_id() -> None:
    cmd = submit(study=study(), job_id="job-x")
    job = bind_job(cmd, bundle_ref=REF, job_id="job-x")
    assert job.job_id == "job-x" and job.n_tasks == 6
    assert all(t.bundle_ref == REF for t in job.tasks())


def test_a_ready_simjob_must_match_the_bundle_digest() -> None:
    job = study().bind(REF, job_id="job-y")
    other = REF.replace(DIGEST, "sha256:" + "00" * 32)
    with pytest.raises(CommandInvalid) as info:
        bind_job(submit(job=job, bundle_ref=other), bundle_ref=other, job_id="job-y")
    assert info.value.field == "job.bundle_ref"
    assert bind_job(submit(job=job), bundle_ref=REF, job_id="job-y") is job


def test_a_ready_simjob_is_checked_task_by_task() -> None:
    job = study(sets=[{"beta": 0.2, "zeta": 1}]).bind(REF, job_id="job-z")
    with pytest.raises(CommandInvalid) as info:
        check_against_index(submit(job=job), sir_index())
    assert info.value.field == "job.tasks.0.params"


def test_job_id_conflict_between_command_and_simjob() -> None:
    job = study().bind(REF, job_id="job-y")
    with pytest.raises(CommandInvalid):
        job_id_for(submit(job=job, job_id="job-other"))
