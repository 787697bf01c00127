"""Study files: build a SimulationStudy from a sampling design, save it, load it back.

A study file is the JSON encoding of `modelops_contracts.SimulationStudy` (parameter sets,
replicates, base seed, sampling method and arguments in `metadata`), so it can be read by
anything that has the contracts, reviewed in a diff, and submitted against any bundle.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import msgspec
import structlog

from modelops_bundle.errors import BundleError
from modelops_bundle.registry_file import load_registry
from modelops_contracts import (
    InvalidMessage,
    ModelEntry,
    ParameterSpace,
    ParameterSpec,
    SimulationStudy,
    decode,
    encode,
    parse_entrypoint,
)

from .errors import CliError, ConfigError, StudyFileError

__all__ = [
    "check_declared",
    "load_study",
    "parse_param",
    "pick_method",
    "registered_model",
    "save_study",
    "space_from_params",
]

log = structlog.get_logger(__name__)

_PARAM_RE = re.compile(
    r"^(?P<name>[A-Za-z_]\w*)=(?P<lo>[^:]+):(?P<hi>[^:]+)(?P<flags>(:(int|log))*)\Z"
)


def parse_param(text: str) -> ParameterSpec:
    """`NAME=LOW:HIGH[:int][:log]` (the `--param` flag) as a ParameterSpec."""
    m = _PARAM_RE.match(text.strip())
    if not m:
        raise ConfigError(
            f"--param {text!r} is not NAME=LOW:HIGH",
            hint="e.g. --param beta=0.02:0.08 --param I0=1:50:int (add :log for a log scale)",
        )
    flags = set(filter(None, m["flags"].split(":")))
    try:
        lower, upper = float(m["lo"]), float(m["hi"])
        if not (math.isfinite(lower) and math.isfinite(upper)):
            raise ValueError("bounds must be finite")
        return ParameterSpec(
            name=m["name"],
            lower=lower,
            upper=upper,
            kind="int" if "int" in flags else "float",
            log="log" in flags,
        )
    except ValueError as exc:
        raise ConfigError(
            f"--param {text!r}: {exc}", hint="bounds are numbers, LOW < HIGH"
        ) from exc


def space_from_params(texts: list[str]) -> ParameterSpace:
    """A ParameterSpace from repeated `--param` flags, in the order given."""
    try:
        return ParameterSpace(specs=[parse_param(t) for t in texts])
    except ValueError as exc:
        if isinstance(exc, CliError):
            raise
        raise ConfigError(f"--param: {exc}") from exc


def pick_method(method: str | None, *, table: Path | None, levels: int | None) -> str:
    """The sampling method when none is named: explicit with a table, grid with levels,
    else Latin hypercube (a good space-filling default for a few dozen points)."""
    if method:
        return method
    if table is not None:
        return "explicit"
    if levels is not None:
        return "grid"
    return "lhs"


def registered_model(root: Path, entrypoint: str | None) -> ModelEntry | None:
    """The project's registered model for `entrypoint` (or its only model when None).

    Returns None when nothing is registered and an entrypoint was given: a study can be
    written for a model registered elsewhere. Raises ConfigError when the choice is ambiguous.
    """
    try:
        registry = load_registry(root)
    except BundleError as exc:
        if entrypoint is not None:
            log.warning("study.registry_unreadable", error=str(exc))
            return None
        raise
    models = list(registry.models.values())
    if entrypoint is None:
        if len(models) == 1:
            return models[0]
        if not models:
            raise ConfigError(
                f"no model is registered in {root} and no --model was given",
                hint="pass --model module:Class, or register one with "
                "'modelops-bundle register-model module:Class --path src/module.py'",
            )
        raise ConfigError(
            f"{len(models)} models are registered in {root}; which one is this study for?",
            hint="pass --model with one of: " + ", ".join(sorted(m.entrypoint for m in models)),
        )
    target = parse_entrypoint(entrypoint).target
    for entry in models:
        if parse_entrypoint(entry.entrypoint).target == target:
            return entry
    return None


def check_declared(study: SimulationStudy, entry: ModelEntry | None) -> None:
    """Refuse, before anything is submitted, sets outside the model's declared ranges."""
    if entry is None or entry.parameter_space is None:
        return
    for i, ps in enumerate(study.parameter_sets):
        try:
            entry.parameter_space.check(ps.params)
        except InvalidMessage as exc:
            raise ConfigError(
                f"parameter set #{i}: {exc.message} (declared by {entry.entrypoint})",
                hint="keep the parameter space inside the ranges the model declares",
            ) from exc


def save_study(study: SimulationStudy, path: Path) -> None:
    """Write the study as indented JSON (diffable), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(encode(study), indent=2) + b"\n")


def load_study(path: Path) -> SimulationStudy:
    """Read a study file, or raise StudyFileError naming the file and the field at fault."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StudyFileError(
            f"study file {path} does not exist",
            hint="create one with 'modelops study create -o study.json'",
        ) from None
    except OSError as exc:
        raise StudyFileError(f"cannot read study file {path}: {exc}") from exc
    try:
        return decode(data, SimulationStudy)
    except InvalidMessage as exc:
        raise StudyFileError(
            f"study file {path} is not a valid study: {exc.message}",
            hint=exc.hint or "create a study with 'modelops study create' (or fix the field named)",
        ) from exc
