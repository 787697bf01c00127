"""One valid instance of every command and event, shared by the codec and schema tests.

`message_examples()` must cover `COMMANDS + EVENTS`; a test checks it, so a new message type
cannot ship without a round-trip and schema check.
"""

from __future__ import annotations

from modelops_contracts import (
    BuildBundle,
    BundleFailed,
    BundlePushed,
    CancelJob,
    CommandRejected,
    JobCancelled,
    JobCompleted,
    JobProgress,
    JobSubmitted,
    LaunchOptions,
    Message,
    ModelEntry,
    ModelRegistered,
    ParameterSet,
    ParameterSpace,
    ParameterSpec,
    RegisterModel,
    Registry,
    Resources,
    SimulationStudy,
    SubmitJob,
    TaskCompleted,
    TaskFailed,
    TaskMetrics,
    TrackedFile,
)

__all__ = [
    "BUNDLE_REF",
    "DIGEST",
    "FILE_DIGEST",
    "message_examples",
    "model_entry",
    "space",
    "study",
]

DIGEST = "sha256:" + "ab" * 32
FILE_DIGEST = "sha256:" + "cd" * 32
BUNDLE_REF = f"localhost:5000/models/sir@{DIGEST}"


def model_entry() -> ModelEntry:
    return ModelEntry(
        id="sir",
        entrypoint="model:StochasticSIR",
        path="model.py",
        code=[TrackedFile(path="model.py", digest=FILE_DIGEST, size=1200)],
        data=[TrackedFile(path="data/pop.csv", digest=DIGEST, size=34)],
        outputs=["prevalence"],
        scenarios=["lockdown"],
        parameters=["beta", "gamma"],
    )


def space() -> ParameterSpace:
    return ParameterSpace(
        specs=[
            ParameterSpec(name="beta", lower=0.0, upper=1.0),
            ParameterSpec(name="gamma", lower=0.01, upper=1.0, log=True),
            ParameterSpec(name="n", lower=1, upper=10_000, kind="int"),
        ]
    )


def study(**overrides: object) -> SimulationStudy:
    """A two-set, three-replicate study with a scenario; override any field."""
    fields: dict[str, object] = {
        "model": "model:StochasticSIR",
        "scenario": "lockdown",
        "name": "sir-sweep",
        "parameter_sets": [
            ParameterSet(
                params={"beta": 0.3, "gamma": 0.1, "n": 1000, "seasonal": True, "region": "north"}
            ),
            ParameterSet(
                params={"beta": 0.5, "gamma": 0.1, "n": 1000, "seasonal": False, "region": "south"}
            ),
        ],
        "n_replicates": 3,
        "base_seed": 7,
        "config": {"days": 180, "solver": {"dt": 0.5}},
        "outputs": ["prevalence"],
        "metadata": {"owner": "team-epi"},
    }
    fields.update(overrides)
    return SimulationStudy(**fields)  # type: ignore[arg-type]


def message_examples() -> list[Message]:
    """A valid, fully populated instance of every message type."""
    entry = model_entry()
    job = study().bind(BUNDLE_REF, job_id="job-0001")
    return [
        RegisterModel(correlation_id="c-1", project="demo", model=entry),
        BuildBundle(
            correlation_id="c-2",
            project="demo",
            repository="localhost:5000/models/sir",
            registry=Registry(project="demo", models={"sir": entry}),
            tag="v1",
            models=["sir"],
        ),
        SubmitJob(
            correlation_id="c-3",
            bundle_ref=BUNDLE_REF,
            study=study(
                parameter_space=space(),
                parameter_sets=[ParameterSet(params={"beta": 0.3, "gamma": 0.1, "n": 1000})],
            ),
            job_id="job-0001",
            options=LaunchOptions(
                runners=2, workers_per_runner=4, resources=Resources(cpu="2", memory="4Gi")
            ),
            idempotency_key="k-1",
        ),
        SubmitJob(correlation_id="c-3b", bundle_ref=BUNDLE_REF, job=job),
        CancelJob(correlation_id="c-4", job_id="job-0001", reason="wrong parameters"),
        ModelRegistered(
            correlation_id="c-1", project="demo", model=entry, model_digest=entry.digest, revision=3
        ),
        BundlePushed(
            correlation_id="c-2",
            project="demo",
            bundle_ref=BUNDLE_REF,
            digest=DIGEST,
            repository="localhost:5000/models/sir",
            tag="v1",
            models={"sir": entry.digest},
            size=4096,
        ),
        BundleFailed(
            correlation_id="c-2", project="demo", reason="blobs missing", missing_blobs=["model.py"]
        ),
        JobSubmitted(
            correlation_id="c-3",
            job_id="job-0001",
            bundle_ref=BUNDLE_REF,
            n_tasks=job.n_tasks,
            n_cached=1,
            spec_uri="file:///tmp/specs/job-0001.json",
            launcher="local",
            study="sir-sweep",
        ),
        JobProgress(
            correlation_id="c-3",
            job_id="job-0001",
            total=6,
            completed=3,
            failed=1,
            cached=1,
            rate_per_s=2.5,
        ),
        TaskCompleted(
            correlation_id="c-3",
            job_id="job-0001",
            task_id=next(job.tasks()).task_id,
            attempt=2,
            outputs={"prevalence": "file:///tmp/out/prevalence.parquet"},
            metrics=TaskMetrics(wall_s=1.5, cpu_s=1.4, peak_rss_bytes=50_000_000),
            runner_id="runner-0",
            cached=False,
        ),
        TaskFailed(
            correlation_id="c-3",
            job_id="job-0001",
            task_id=next(job.tasks()).task_id,
            failure="model_error",
            message="ZeroDivisionError: division by zero",
            attempt=3,
            final=True,
            error_type="ZeroDivisionError",
            traceback_tail="  File model.py, line 3\n",
            stderr_tail="warning\n",
            exit_code=1,
            signal=None,
            runner_id="runner-1",
        ),
        JobCompleted(
            correlation_id="c-3",
            job_id="job-0001",
            total=6,
            completed=5,
            failed=1,
            cached=1,
            results_uri="file:///tmp/results/job-0001.parquet",
            duration_s=12.5,
        ),
        JobCancelled(
            correlation_id="c-4", job_id="job-0001", reason="wrong parameters", purged_tasks=3
        ),
        CommandRejected(
            correlation_id="c-5",
            command_type="modelops.cmd.submit_job",
            command_id="m-5",
            reason="bad bundle_ref",
            field="bundle_ref",
            hint="push it first",
            job_id="job-0002",
        ),
    ]
