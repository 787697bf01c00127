"""JSON Schema export: the committed files are current, and they accept what we publish."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from modelops_contracts import Message, encode
from modelops_contracts.messages import COMMANDS, EVENTS
from modelops_contracts.schema import message_schemas

from .examples import DIGEST, message_examples

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "schemas"
EXAMPLES = message_examples()


def _tag(cls: type) -> str:
    return cls.__struct_config__.tag  # type: ignore[attr-defined]


def _validator(tag: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{tag}.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schemas_are_what_the_exporter_writes(tmp_path: Path) -> None:
    """Regenerating with the documented command gives byte-identical files: they cannot go stale."""
    subprocess.run(
        [sys.executable, "-m", "modelops_contracts.schema", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    fresh = {p.name: p.read_bytes() for p in sorted(tmp_path.iterdir())}
    committed = {p.name: p.read_bytes() for p in sorted(SCHEMA_DIR.iterdir())}
    assert sorted(committed) == sorted(fresh), (
        "run: python -m modelops_contracts.schema shared/contracts/schemas"
    )
    for name, data in fresh.items():
        assert committed[name] == data, (
            f"{name} is stale: python -m modelops_contracts.schema shared/contracts/schemas"
        )


def test_one_file_per_message_and_an_index() -> None:
    tags = [_tag(c) for c in (*COMMANDS, *EVENTS)]
    assert sorted(p.name for p in SCHEMA_DIR.glob("modelops.*.json")) == sorted(
        f"{t}.json" for t in tags
    )
    index = json.loads((SCHEMA_DIR / "index.json").read_text(encoding="utf-8"))
    assert index == {"commands": [_tag(c) for c in COMMANDS], "events": [_tag(e) for e in EVENTS]}


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: _tag(type(m)))
def test_each_schema_accepts_a_valid_instance(message: Message) -> None:
    validator = _validator(_tag(type(message)))
    errors = list(validator.iter_errors(json.loads(encode(message))))
    assert not errors, [e.message for e in errors]


def _break_digest(data: dict[str, Any]) -> None:
    data["model"]["code"][0]["digest"] = "sha256:abc"


@pytest.mark.parametrize(
    ("tag", "breaker"),
    [
        ("modelops.cmd.register_model", _break_digest),
        ("modelops.cmd.register_model", lambda d: d.pop("correlation_id")),
        ("modelops.cmd.submit_job", lambda d: d["study"].update(model="model")),
        ("modelops.cmd.submit_job", lambda d: d["study"].update(n_replicates=0)),
        (
            "modelops.cmd.submit_job",
            lambda d: d["study"]["parameter_sets"][0]["params"].update(beta=[1]),
        ),
        ("modelops.cmd.cancel_job", lambda d: d.update(job_id="Not A DNS label")),
        ("modelops.cmd.cancel_job", lambda d: d.update(type="modelops.cmd.submit_job")),
        ("modelops.evt.bundle_pushed", lambda d: d.update(bundle_ref=DIGEST)),
        ("modelops.evt.task_failed", lambda d: d.update(failure="exploded")),
    ],
)
def test_schemas_reject_invalid_instances(tag: str, breaker: Any) -> None:
    message = next(m for m in EXAMPLES if _tag(type(m)) == tag)
    data = json.loads(encode(message))
    breaker(data)
    assert list(_validator(tag).iter_errors(data)), "the schema accepted an invalid message"


def test_exported_patterns_are_portable() -> None:
    """ECMA-262 `$` is already the end of text; Python-only lookaheads stay out of the export."""
    text = json.dumps(message_schemas())
    assert "(?!" not in text and "\\\\Z" not in text
