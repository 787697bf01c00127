"""Codec: every message round-trips; any invalid one raises InvalidMessage naming the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from modelops_contracts import (
    CancelJob,
    InvalidMessage,
    JobProgress,
    Message,
    SubmitJob,
    decode,
    decode_command,
    decode_event,
    decode_message,
    encode,
)
from modelops_contracts.messages import COMMANDS, EVENTS

from .examples import BUNDLE_REF, DIGEST, message_examples, study

EXAMPLES = message_examples()


def _id(m: Message) -> str:
    return type(m).__struct_config__.tag  # type: ignore[return-value]


def test_examples_cover_every_message_type() -> None:
    assert {type(m) for m in EXAMPLES} == set(COMMANDS) | set(EVENTS)


@pytest.mark.parametrize("message", EXAMPLES, ids=_id)
def test_every_message_round_trips(message: Message) -> None:
    raw = encode(message)
    assert json.loads(raw)["type"] == _id(message)
    back = decode_message(raw)
    assert back == message and type(back) is type(message)
    assert decode(raw, type(message)) == message
    # bytes are a fixed point once decoded (an int given for a float field reads back as float)
    assert encode(decode_message(encode(back))) == encode(back)
    expected = decode_command if isinstance(message, COMMANDS) else decode_event
    assert expected(raw) == message
    assert message.subject.startswith("modelops.")


@pytest.mark.parametrize("message", EXAMPLES, ids=_id)
def test_commands_and_events_do_not_cross(message: Message) -> None:
    wrong = decode_event if isinstance(message, COMMANDS) else decode_command
    with pytest.raises(InvalidMessage) as info:
        wrong(encode(message))
    assert info.value.field == "type"


def test_ids_survive_the_wire() -> None:
    submit = next(m for m in EXAMPLES if isinstance(m, SubmitJob) and m.job is not None)
    back = decode_message(encode(submit))
    assert isinstance(back, SubmitJob) and back.job is not None and submit.job is not None
    assert [t.task_id for t in back.job.tasks()] == [t.task_id for t in submit.job.tasks()]


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    message = CancelJob(correlation_id="c", job_id="job-1")
    data = json.loads(encode(message)) | {"added_in_v2": {"x": 1}}
    assert decode_message(json.dumps(data)) == message


# ---------------------------------------------------------------- invalid messages


def _submit(**overrides: Any) -> dict[str, Any]:
    data = json.loads(
        encode(
            SubmitJob(correlation_id="c-1", bundle_ref=BUNDLE_REF, study=study(), job_id="job-0001")
        )
    )
    data.update(overrides)
    return data


def _study(**overrides: Any) -> dict[str, Any]:
    s = _submit()["study"]
    s.update(overrides)
    return _submit(study=s)


def _register(**model_overrides: Any) -> dict[str, Any]:
    data = json.loads(encode(next(m for m in EXAMPLES if _id(m) == "modelops.cmd.register_model")))
    data["model"].update(model_overrides)
    return data


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


def _raw(fn: Callable[[], dict[str, Any]], old: str, new: str) -> Callable[[], str]:
    """Text edits for what json.dumps cannot write (NaN literals, numbers that overflow)."""
    return lambda: json.dumps(fn()).replace(old, new, 1)


_JOB = json.loads(encode(study().bind(BUNDLE_REF, job_id="job-0001")))
INVALID: list[tuple[str, Callable[[], Any], str | None, str]] = [
    (
        "wrong type",
        lambda: _submit(correlation_id=5),
        "correlation_id",
        "Expected `str`, got `int`",
    ),
    ("wrong nested type", lambda: _study(n_replicates="3"), "study.n_replicates", "Expected `int`"),
    (
        "missing field",
        lambda: _without(_submit(), "correlation_id"),
        "correlation_id",
        "required field is missing",
    ),
    ("missing nested field", lambda: _study(model=None), "study.model", "Expected `str`"),
    ("missing type tag", lambda: _without(_submit(), "type"), "type", "required field is missing"),
    (
        "unknown type tag",
        lambda: _submit(type="modelops.cmd.launch_rockets"),
        "type",
        "Invalid value",
    ),
    ("empty correlation id", lambda: _submit(correlation_id=""), "correlation_id", "length >= 1"),
    ("bad job id", lambda: _submit(job_id="Job_1"), "job_id", "lowercase DNS label"),
    ("job id with newline", lambda: _submit(job_id="job-1\n"), "job_id", "lowercase DNS label"),
    (
        "bad digest",
        lambda: _register(code=[{"path": "model.py", "digest": "sha256:abc", "size": 1}]),
        "model.code.0.digest",
        "sha256:<64 lowercase hex>",
    ),
    (
        "uppercase digest",
        lambda: _register(code=[{"path": "model.py", "digest": DIGEST.upper(), "size": 1}]),
        "model.code.0.digest",
        "sha256:<64 lowercase hex>",
    ),
    (
        "digest with newline",
        lambda: _register(code=[{"path": "model.py", "digest": DIGEST + "\n", "size": 1}]),
        "model.code.0.digest",
        "sha256:<64 lowercase hex>",
    ),
    (
        "bad bundle ref in event",
        lambda: (
            json.loads(encode(next(m for m in EXAMPLES if _id(m) == "modelops.evt.bundle_pushed")))
            | {"bundle_ref": "localhost:5000/sir:latest"}
        ),
        "bundle_ref",
        "host[:port]/repo@sha256:<64 hex>",
    ),
    (
        "NaN parameter",
        _raw(_study, '"beta": 0.3', '"beta": NaN'),
        "study.parameter_sets.0.params.beta",
        "non-finite",
    ),
    (
        "Infinity parameter",
        _raw(_study, '"beta": 0.3', '"beta": Infinity'),
        "study.parameter_sets.0.params.beta",
        "non-finite",
    ),
    (
        "overflowing parameter",
        _raw(_study, '"beta": 0.3', '"beta": 1e999'),
        "study.parameter_sets.0.params.beta",
        "non-finite",
    ),
    (
        "NaN in config",
        _raw(_study, '"dt": 0.5', '"dt": NaN'),
        "study.config.solver.dt",
        "non-finite",
    ),
    (
        "entrypoint without a class",
        lambda: _study(model="model"),
        "study.model",
        "package.module:Class",
    ),
    (
        "entrypoint with empty class",
        lambda: _study(model="model:"),
        "study.model",
        "package.module:Class",
    ),
    (
        "entrypoint with two colons",
        lambda: _study(model="a:b:C"),
        "study.model",
        "package.module:Class",
    ),
    (
        "registered entrypoint without a class",
        lambda: _register(entrypoint="model"),
        "model.entrypoint",
        "':Class'",
    ),
    ("bad scenario", lambda: _study(scenario="no spaces"), "study.scenario", "not a name"),
    (
        "conflicting scenario",
        lambda: _study(model="model:SIR/a", scenario="b"),
        "study.scenario",
        "names scenario",
    ),
    (
        "zero parameter sets",
        lambda: _study(parameter_sets=[]),
        "study.parameter_sets",
        "at least one parameter set",
    ),
    (
        "duplicate parameter sets",
        lambda: _study(parameter_sets=[{"params": {"a": 1}}, {"params": {"a": 1}}]),
        "study.parameter_sets.1",
        "repeats #0",
    ),
    (
        "out-of-range parameter",
        lambda: _study(
            parameter_sets=[{"params": {"beta": 2.0}}],
            parameter_space={"specs": [{"name": "beta", "lower": 0, "upper": 1}]},
        ),
        "study.parameter_sets.0.params.beta",
        "outside",
    ),
    ("zero replicates", lambda: _study(n_replicates=0), "study.n_replicates", ">= 1"),
    (
        "base seed beyond int64",
        lambda: _study(base_seed=2**63),
        "study.base_seed",
        "<= 9223372036854775807",
    ),
    (
        "SubmitJob with both study and job",
        lambda: _submit(job=_JOB),
        "job",
        "exactly one of 'study' or 'job'",
    ),
    (
        "SubmitJob with neither",
        lambda: _without(_submit(), "study"),
        "study",
        "exactly one of 'study' or 'job'",
    ),
    ("unsafe path", lambda: _register(path="../model.py"), "model.path", "contains '..'"),
    (
        "job with duplicate tasks",
        lambda: _without(_submit(job=_JOB | {"batches": _JOB["batches"] * 2}), "study"),
        "job",
        "repeats task #0",
    ),
    ("malformed JSON", lambda: '{"type": "modelops.cmd.cancel_job", ', None, "not valid JSON"),
    ("not JSON at all", lambda: b"\x00\xff", None, "not valid JSON"),
    ("JSON but not an object", lambda: [1, 2], None, "Expected `object`, got `array`"),
    ("empty input", lambda: b"", None, "not valid JSON"),
    ("hostile nesting", lambda: '{"a":' * 50_000 + "1" + "}" * 50_000, None, "nests too deeply"),
]


@pytest.mark.parametrize(
    ("case", "make", "field", "fragment"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_messages_raise_invalid_message_naming_the_field(
    case: str, make: Callable[[], Any], field: str | None, fragment: str
) -> None:
    data = make()
    raw = data if isinstance(data, (str, bytes)) else json.dumps(data)
    with pytest.raises(InvalidMessage) as info:
        decode_message(raw)
    err = info.value
    assert type(err) is InvalidMessage, (
        f"{case}: one error type for callers, got {type(err).__name__}"
    )
    assert err.field == field
    assert fragment in str(err)
    if field:
        assert f"'{field}'" in str(err)


def test_decode_never_leaks_msgspec_errors() -> None:
    """The cause is kept for debugging, but callers only ever catch InvalidMessage."""
    with pytest.raises(InvalidMessage) as info:
        decode(b'{"job_id": 1}', JobProgress)
    assert isinstance(info.value.__cause__, msgspec.ValidationError)
