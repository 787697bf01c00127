"""From a SubmitJob to a SimJob: reference parsing, checks against the bundle index, binding.

Pure: the bundle index is passed in (read by the caller through the bundle store). Every
refusal is a CommandInvalid naming the field at fault, which the app answers with
CommandRejected.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelops_bundle.errors import BundleError, ModelNotFound
from modelops_bundle.oci import BundleIndex, IndexModel
from modelops_bundle.registry_file import parse_registry
from modelops_contracts import (
    InvalidMessage,
    ParameterSpace,
    SimJob,
    SubmitJob,
    parse_bundle_ref,
)
from modelops_contracts.domain import JOB_ID_PATTERN

from .errors import CommandInvalid

__all__ = [
    "BundleTarget",
    "bind_job",
    "check_against_index",
    "declared_space",
    "entrypoints_of",
    "idempotency_key",
    "job_id_for",
    "parse_target",
]

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}\Z")
_JOB_ID_RE = re.compile(JOB_ID_PATTERN)
_REF_HINT = "use host/repo@sha256:<64 hex> or host/repo:tag, as printed by 'modelops build --push'"


@dataclass(frozen=True)
class BundleTarget:
    """Where a submitted bundle is: a repository and either a digest or a tag to resolve."""

    host: str
    repository: str
    digest: str | None = None
    tag: str | None = None

    def pinned(self, digest: str) -> str:
        """The digest-pinned reference string for this target."""
        return f"{self.host}/{self.repository}@{digest}"


def parse_target(text: str) -> BundleTarget:
    """`host/repo@sha256:…` or `host/repo:tag` (a bare `host/repo` means tag `latest`)."""
    if "@" in text:
        try:
            ref = parse_bundle_ref(text)
        except InvalidMessage as exc:
            raise CommandInvalid(exc.message, field="bundle_ref", hint=exc.hint) from exc
        return BundleTarget(host=ref.host, repository=ref.repository, digest=ref.digest)
    host, slash, rest = text.partition("/")
    if not slash or not rest:
        raise CommandInvalid(
            f"bundle reference {text!r} has no repository", field="bundle_ref", hint=_REF_HINT
        )
    repo, colon, tag = rest.rpartition(":")
    if not colon:
        repo, tag = rest, "latest"
    if not _TAG_RE.match(tag):
        raise CommandInvalid(
            f"bundle reference {text!r} has an invalid tag {tag!r}",
            field="bundle_ref",
            hint=_REF_HINT,
        )
    try:  # the repository grammar lives in contracts: check it with a dummy digest
        parse_bundle_ref(f"{host}/{repo}@sha256:{'0' * 64}")
    except InvalidMessage as exc:
        raise CommandInvalid(
            f"bundle reference {text!r} has an invalid host or repository",
            field="bundle_ref",
            hint=_REF_HINT,
        ) from exc
    return BundleTarget(host=host, repository=repo, tag=tag)


def idempotency_key(cmd: SubmitJob) -> str:
    """The key that makes a resent command return the same job.

    Without an explicit key the command's own message id is used, so a redelivery of the very
    same message (a crash before its ack) never creates a second job.
    """
    return cmd.idempotency_key if cmd.idempotency_key else f"msg:{cmd.id}"


def job_id_for(cmd: SubmitJob) -> str:
    """The job id: given in the command or its SimJob, else derived from the idempotency key.

    Deriving it makes the KV record of the job the idempotency record: a resent command finds
    the job under the same key instead of needing a second index.
    """
    if cmd.job_id:
        if cmd.job is not None and cmd.job.job_id != cmd.job_id:
            raise CommandInvalid(
                f"job_id {cmd.job_id!r} differs from the SimJob's {cmd.job.job_id!r}",
                field="job_id",
                hint="leave job_id out when submitting a ready SimJob",
            )
        return cmd.job_id
    if cmd.job is not None:
        return cmd.job.job_id
    digest = hashlib.sha256(idempotency_key(cmd).encode()).hexdigest()
    return f"job-{digest[:12]}"


def declared_space(index: BundleIndex, model: IndexModel) -> ParameterSpace | None:
    """The parameter ranges the model declares, if any.

    Read from the index's model entry when it carries them, else from the registry.yaml the
    bundle embeds (registration records ranges declared as a literal dict there).
    """
    space = getattr(model, "parameter_space", None)
    if space is not None or not index.registry_yaml:
        return space
    try:
        registry = parse_registry(index.registry_yaml.encode(), source="bundle registry.yaml")
    except BundleError:
        return None  # an unreadable embedded registry only loses the range check
    entry = registry.models.get(model.id)
    return getattr(entry, "parameter_space", None) if entry is not None else None


def _check_names(
    model: IndexModel, space: ParameterSpace | None, names: Iterable[str], field: str
) -> None:
    declared = list(model.parameters) or (list(space.names) if space is not None else [])
    unknown = sorted(set(names) - set(declared)) if declared else []
    if unknown:
        raise CommandInvalid(
            f"unknown parameter(s) {', '.join(unknown)} for model {model.id!r}",
            field=field,
            hint=f"the model declares: {', '.join(declared)}",
        )


def _check_params(
    model: IndexModel, space: ParameterSpace | None, params: Mapping[str, Any], where: str
) -> None:
    """Names the model declares, values inside its declared ranges (when it declares them).

    A name the model declares but the set leaves out is allowed: the model's default applies.
    """
    _check_names(model, space, params, f"{where}.params")
    if space is None:
        return
    for name, value in params.items():
        try:
            spec = space.spec(name)
        except KeyError:
            continue
        try:
            spec.check(value)
        except InvalidMessage as exc:
            raise CommandInvalid(
                f"{exc.message} (model {model.id!r})",
                field=f"{where}.params.{name}",
                hint=exc.hint or "use a value inside the model's declared parameter space",
            ) from exc


def _model_for(index: BundleIndex, entrypoint: str, field: str) -> IndexModel:
    try:
        return index.model_for(entrypoint)
    except ModelNotFound as exc:
        raise CommandInvalid(exc.message, field=field, hint=exc.hint) from exc


def check_against_index(cmd: SubmitJob, index: BundleIndex) -> None:
    """Entrypoint, scenario and parameters of the command must fit what the bundle declares."""
    if cmd.study is not None:
        study = cmd.study
        model = _model_for(index, study.entrypoint, "study.model")
        space = declared_space(index, model)
        if study.parameter_space is not None:
            _check_names(model, space, study.parameter_space.names, "study.parameter_space")
        for i, ps in enumerate(study.parameter_sets):
            _check_params(model, space, ps.params, f"study.parameter_sets.{i}")
        return
    assert cmd.job is not None
    models: dict[str, tuple[IndexModel, ParameterSpace | None]] = {}
    checked: set[tuple[str, str]] = set()
    for i, task in enumerate(cmd.job.tasks()):
        if task.entrypoint not in models:
            model = _model_for(index, task.entrypoint, f"job.tasks.{i}")
            models[task.entrypoint] = (model, declared_space(index, model))
        if (task.entrypoint, task.params.param_id) in checked:
            continue  # replicates share their parameter set
        checked.add((task.entrypoint, task.params.param_id))
        _check_params(*models[task.entrypoint], task.params.params, f"job.tasks.{i}")


def bind_job(cmd: SubmitJob, *, bundle_ref: str, job_id: str) -> SimJob:
    """The SimJob the command asks for, pinned to `bundle_ref` (already resolved to a digest)."""
    if not _JOB_ID_RE.match(job_id):
        raise CommandInvalid(
            f"job_id {job_id!r} is not a lowercase DNS label of at most 40 characters",
            field="job_id",
        )
    if cmd.study is not None:
        return cmd.study.bind(
            bundle_ref, job_id=job_id, resources=cmd.options.resources, metadata=None
        )
    assert cmd.job is not None
    wanted = bundle_ref.rsplit("@", 1)[1]
    if cmd.job.bundle_ref.rsplit("@", 1)[1] != wanted:
        raise CommandInvalid(
            f"the SimJob is bound to {cmd.job.bundle_ref}, but bundle_ref resolves to {wanted}",
            field="job.bundle_ref",
            hint="submit the SimJob with the bundle reference it was bound to",
        )
    return cmd.job


def entrypoints_of(job: SimJob) -> list[str]:
    """Distinct entrypoints of a job's tasks, in first-seen order."""
    return list(dict.fromkeys(t.entrypoint for t in job.tasks()))
