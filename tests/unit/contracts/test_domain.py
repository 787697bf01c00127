"""Domain types: study.bind -> SimJob, parameter spaces, and the invariants jobs keep."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec
import pytest

from modelops_contracts import (
    InvalidBundleRef,
    InvalidMessage,
    ParameterSet,
    ParameterSpace,
    ParameterSpec,
    Resources,
    SimBatch,
    SimJob,
    SimTask,
    SimulationStudy,
    derive_seeds,
    new_job_id,
    task_id,
)
from modelops_contracts.domain import JOB_ID_PATTERN

from .examples import BUNDLE_REF, DIGEST, space, study


def test_bind_makes_one_batch_of_sets_times_replicates() -> None:
    s = study(n_replicates=4)
    job = s.bind(BUNDLE_REF, job_id="job-1")
    assert len(job.batches) == 1
    batch = job.batches[0]
    assert batch.sampling_method == s.sampling_method
    assert len(batch.tasks) == job.n_tasks == s.n_tasks == 2 * 4
    assert job.bundle_ref == BUNDLE_REF and job.job_id == "job-1"
    assert job.metadata == {"study": "sir-sweep", "owner": "team-epi"}
    for ps in s.parameter_sets:
        tasks = [t for t in batch.tasks if t.params == ps]
        assert [t.replicate for t in tasks] == [0, 1, 2, 3]
        assert [t.seed for t in tasks] == derive_seeds(s.base_seed, ps.param_id, 4)
    assert len({t.task_id for t in job.tasks()}) == job.n_tasks


def test_bind_carries_config_outputs_and_bundle_into_every_task() -> None:
    s = study()
    job = s.bind(
        BUNDLE_REF, job_id="job-1", resources=Resources(cpu="2", memory="8Gi"), metadata={"k": "v"}
    )
    assert job.resources == Resources(cpu="2", memory="8Gi")
    assert job.metadata["k"] == "v"
    for t in job.tasks():
        assert t.bundle_ref == BUNDLE_REF
        assert t.config == s.config and t.outputs == s.outputs
        expected = task_id(
            bundle_digest=DIGEST,
            entrypoint=t.entrypoint,
            param_id=t.params.param_id,
            seed=t.seed,
            config=s.config,
            outputs=s.outputs,
        )
        assert t.task_id == expected


@pytest.mark.parametrize(
    ("model", "scenario", "expected"),
    [
        ("model:StochasticSIR", "lockdown", "model:StochasticSIR/lockdown"),
        ("model:StochasticSIR/lockdown", None, "model:StochasticSIR/lockdown"),
        ("model:StochasticSIR/lockdown", "lockdown", "model:StochasticSIR/lockdown"),
        ("model:StochasticSIR", None, "model:StochasticSIR"),
    ],
)
def test_the_scenario_reaches_every_task(model: str, scenario: str | None, expected: str) -> None:
    job = study(model=model, scenario=scenario).bind(BUNDLE_REF, job_id="job-1")
    assert {t.entrypoint for t in job.tasks()} == {expected}


def test_the_scenario_changes_the_task_ids() -> None:
    a = study(scenario="lockdown").bind(BUNDLE_REF, job_id="job-1")
    b = study(scenario=None).bind(BUNDLE_REF, job_id="job-1")
    assert {t.task_id for t in a.tasks()}.isdisjoint({t.task_id for t in b.tasks()})


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        (
            {"model": "model:SIR/lockdown", "scenario": "other"},
            "scenario",
            "names scenario 'lockdown'",
        ),
        ({"scenario": "bad scenario"}, "scenario", "'bad scenario'"),
        ({"scenario": ""}, "scenario", "''"),
        ({"parameter_sets": []}, "parameter_sets", "at least one parameter set"),
        (
            {
                "parameter_sets": [
                    ParameterSet(params={"b": 1.0, "a": 2}),
                    ParameterSet(params={"a": 2, "b": 1.0}),
                ]
            },
            "parameter_sets.1",
            "repeats #0",
        ),
        (
            {"parameter_sets": [ParameterSet(params={"x": 0.0}), ParameterSet(params={"x": -0.0})]},
            "parameter_sets.1",
            "repeats #0",
        ),
    ],
)
def test_study_refuses_bad_designs_naming_the_field(
    overrides: dict[str, Any], field: str, fragment: str
) -> None:
    with pytest.raises(InvalidMessage) as info:
        study(**overrides)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_int_and_float_sets_are_not_duplicates() -> None:
    s = study(parameter_sets=[ParameterSet(params={"x": 1}), ParameterSet(params={"x": 1.0})])
    assert s.n_tasks == 2 * s.n_replicates


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        (
            {"beta": 1.5, "gamma": 0.1, "n": 10},
            "parameter_sets.0.params.beta",
            "outside [0.0, 1.0]",
        ),
        ({"beta": 0.5, "gamma": 0.001, "n": 10}, "parameter_sets.0.params.gamma", "outside"),
        ({"beta": 0.5, "gamma": 0.1, "n": 10.0}, "parameter_sets.0.params.n", "int parameter"),
        ({"beta": 0.5, "gamma": 0.1, "n": 0}, "parameter_sets.0.params.n", "outside"),
        ({"beta": True, "gamma": 0.1, "n": 10}, "parameter_sets.0.params.beta", "must be a number"),
        (
            {"beta": "0.5", "gamma": 0.1, "n": 10},
            "parameter_sets.0.params.beta",
            "must be a number",
        ),
        ({"beta": 0.5, "gamma": 0.1}, "parameter_sets.0.params", "missing parameter(s) n"),
        (
            {"beta": 0.5, "gamma": 0.1, "n": 10, "delta": 1.0},
            "parameter_sets.0.params",
            "unknown parameter(s) delta",
        ),
    ],
)
def test_out_of_space_values_are_refused(params: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        study(parameter_space=space(), parameter_sets=[ParameterSet(params=params)])
    assert info.value.field == field
    assert fragment in str(info.value)


def test_in_space_boundaries_are_accepted() -> None:
    sets = [
        ParameterSet(params={"beta": b, "gamma": g, "n": n})
        for b, g, n in [(0.0, 0.01, 1), (1.0, 1.0, 10_000)]
    ]
    assert study(parameter_space=space(), parameter_sets=sets).n_tasks == 2 * 3


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "1bad", "lower": 0, "upper": 1},
        {"name": "x", "lower": 1, "upper": 0},
        {"name": "x", "lower": 1, "upper": 1},
        {"name": "x", "lower": 0, "upper": math.inf},
        {"name": "x", "lower": 0.5, "upper": 2, "kind": "int"},
        {"name": "x", "lower": 0, "upper": 1, "log": True},
        {"name": "x\n", "lower": 0, "upper": 1},
    ],
)
def test_parameter_spec_refuses_bad_ranges(spec: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ParameterSpec(**spec)


def test_parameter_space_refuses_empty_and_repeated_names() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ParameterSpace(specs=[])
    with pytest.raises(ValueError, match="repeat: x"):
        ParameterSpace(specs=[ParameterSpec(name="x", lower=0, upper=1)] * 2)


@pytest.mark.parametrize("name", ["be ta", "1x", "x-y", "x\n", ""])
def test_parameter_names_must_be_identifiers(name: str) -> None:
    with pytest.raises(ValueError, match="not a Python identifier"):
        ParameterSet(params={name: 1.0})


@pytest.mark.parametrize("job_id", ["Job-1", "job_1", "-job", "job-", "j" * 41, "job-1\n", ""])
def test_bind_validates_the_job_id(job_id: str) -> None:
    with pytest.raises(ValueError, match="job_id"):
        study().bind(BUNDLE_REF, job_id=job_id)


def test_bind_makes_a_valid_job_id_when_none_is_given() -> None:
    job = study().bind(BUNDLE_REF)
    assert re.search(JOB_ID_PATTERN, job.job_id)
    assert re.search(JOB_ID_PATTERN, new_job_id())
    assert new_job_id() != new_job_id()


@pytest.mark.parametrize("ref", ["localhost:5000/models/sir:v1", DIGEST, f"Bad Host/x@{DIGEST}"])
def test_bind_requires_a_digest_pinned_ref(ref: str) -> None:
    with pytest.raises(InvalidBundleRef):
        study().bind(ref)


def test_bind_is_deterministic_apart_from_the_job_id() -> None:
    a = study().bind(BUNDLE_REF, job_id="job-1")
    b = study().bind(BUNDLE_REF, job_id="job-1")
    assert a == b
    assert [t.task_id for t in a.tasks()] == [t.task_id for t in b.tasks()]


def test_base_seed_above_int64_is_refused_when_decoded() -> None:
    raw = msgspec.json.encode(study())
    data = msgspec.json.decode(raw)
    data["base_seed"] = 2**63
    with pytest.raises(msgspec.ValidationError, match="base_seed"):
        msgspec.json.decode(msgspec.json.encode(data), type=SimulationStudy)


def _task(seed: int, **kw: Any) -> SimTask:
    return SimTask(
        bundle_ref=BUNDLE_REF,
        entrypoint="model:SIR",
        params=ParameterSet(params={"b": 1.0}),
        seed=seed,
        **kw,
    )


def test_sim_job_refuses_duplicate_task_ids() -> None:
    with pytest.raises(ValueError, match=r"task #2 repeats task #0"):
        SimJob(
            job_id="job-1",
            bundle_ref=BUNDLE_REF,
            batches=[
                SimBatch(batch_id="a", sampling_method="grid", tasks=[_task(1), _task(2)]),
                SimBatch(batch_id="b", sampling_method="grid", tasks=[_task(1, replicate=5)]),
            ],
        )


def test_sim_job_refuses_foreign_bundles_and_empty_jobs() -> None:
    other = BUNDLE_REF.replace("models/sir", "models/other")
    with pytest.raises(ValueError, match="uses bundle"):
        SimJob(
            job_id="job-1",
            bundle_ref=other,
            batches=[SimBatch(batch_id="a", sampling_method="x", tasks=[_task(1)])],
        )
    with pytest.raises(ValueError, match="at least one task"):
        SimJob(
            job_id="job-1",
            bundle_ref=BUNDLE_REF,
            batches=[SimBatch(batch_id="a", sampling_method="x", tasks=[])],
        )


def test_sim_job_round_trips_with_the_same_task_ids() -> None:
    job = study().bind(BUNDLE_REF, job_id="job-1")
    back = msgspec.json.decode(msgspec.json.encode(job), type=SimJob)
    assert back == job
    assert [t.task_id for t in back.tasks()] == [t.task_id for t in job.tasks()]


@pytest.mark.parametrize("bad", ["two", "1.5.5", "4GB", "-1", "1e3", "2\n"])
def test_resources_must_be_kubernetes_quantities(bad: str) -> None:
    with pytest.raises(ValueError, match="Kubernetes quantity"):
        Resources(cpu=bad)
    assert Resources(cpu="500m", memory="1.5Gi").cpu == "500m"
