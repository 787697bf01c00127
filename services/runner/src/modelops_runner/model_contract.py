"""The model contract: what a modeler writes, and how a worker holds a model to it.

A model is a class in an importable module, named by an entrypoint
`package.module:Class[/scenario]`::

    class StochasticSIR:
        outputs = ["incidence", "summary"]                        # optional: declared outputs
        scenarios = {"baseline": {}, "lockdown": {"beta": 0.1}}  # optional: param patches
        config = {"days": 160}                                    # optional: default config

        def simulate(self, params: dict, seed: int) -> dict[str, table]:
            days = self.config["days"]
            ...
            return {"incidence": {"day": ..., "infected": ...}, "summary": {"peak": 412}}

What the runner does with it:

- It imports the module once per worker process and builds the class once, with no
  arguments. Expensive set-up (reading data files, compiling) belongs in `__init__`: every
  task of that worker reuses the instance. Workers may be recycled after N tasks, so the
  instance must not be the only place a result lives.
- Per task it merges the scenario patch over the parameters, `{**params, **scenarios[name]}`
  (an entrypoint without `/scenario` uses the parameters as given; an unknown scenario fails
  the task, naming the known ones), then sets `self.config = {**Class.config, **task.config}`
  when the class or the task has a config, then calls `simulate(params, seed)`.
- The seed is the task's only source of randomness: use `numpy.random.default_rng(seed)`,
  never global state, so a rerun of the same task gives the same tables.
- `simulate` returns a dict of output name -> table. A table is a pyarrow Table, a polars or
  pandas DataFrame, or a dict of equal-length columns (lists or 1-D numpy arrays); a dict of
  scalars is a one-row table. If the task names outputs, only those are kept, and a missing
  one fails the task as `bad_output`. For small outputs a dict of numpy arrays, lists or
  scalars is the cheapest form: the worker hands it over as it is (wire.py) and the runner
  writes its Parquet warm, while a DataFrame or Arrow table is written by the worker right
  after `simulate`, when that costs most (2-3 ms for the example's two tables, ~0.5 warm).
- An exception in `simulate` fails the task as `model_error` with its type, message and
  traceback; a `MemoryError` fails it as `oom`. Printing is fine: stdout and stderr are
  kept (the tail is attached to failures) and never disturb the runner.

`outputs` is informational here (the registry and tools read it); what counts is what
`simulate` returns.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelops_contracts.entrypoint import parse_entrypoint
from modelops_contracts.errors import InvalidEntrypoint

__all__ = [
    "LoadedModel",
    "ModelCache",
    "ModelTaskError",
    "format_traceback",
    "load_model",
    "run_model",
]

_TRACEBACK_TAIL_CHARS = 8000


class ModelTaskError(Exception):
    """A task failed in a way the contract names. `kind` is a TaskFailureKind."""

    def __init__(
        self, kind: str, message: str, *, error_type: str = "", traceback_text: str = ""
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.error_type = error_type
        self.traceback_text = traceback_text


def format_traceback(exc: BaseException, *, limit_chars: int = _TRACEBACK_TAIL_CHARS) -> str:
    """The formatted traceback of `exc`, cut to its last `limit_chars` characters."""
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= limit_chars else "...\n" + text[-limit_chars:]


@dataclass
class LoadedModel:
    """A model class imported and instantiated once per worker."""

    target: str
    cls: type
    instance: Any
    scenarios: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    base_config: Mapping[str, Any] | None = None


def _import_failure(target: str, what: str, exc: BaseException) -> ModelTaskError:
    return ModelTaskError(
        "import_error",
        f"cannot load model {target!r}: {what}: {type(exc).__name__}: {exc}",
        error_type=type(exc).__name__,
        traceback_text=format_traceback(exc),
    )


def _check_class(target: str, cls: Any) -> None:
    problem = ""
    if not inspect.isclass(cls):
        problem = f"{target} is a {type(cls).__name__}, not a class"
    elif not callable(getattr(cls, "simulate", None)):
        problem = f"class {target} has no simulate(self, params, seed) method"
    elif not isinstance(getattr(cls, "scenarios", {}), Mapping):
        problem = f"{target}.scenarios must be a dict of scenario name -> param patch"
    elif not isinstance(getattr(cls, "config", None) or {}, Mapping):
        problem = f"{target}.config must be a dict of defaults"
    if problem:
        raise ModelTaskError(
            "import_error", f"cannot load model {target!r}: {problem}", error_type="TypeError"
        )


def load_model(target: str) -> LoadedModel:
    """Import `module:Class` and build it once; ModelTaskError(kind=import_error) on failure."""
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # SyntaxError, ImportError, or anything the module raises
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _import_failure(target, f"importing module {module_name!r} failed", exc) from exc
    cls = getattr(module, cls_name, None)
    if cls is None:
        known = sorted(
            n for n, v in vars(module).items() if inspect.isclass(v) and not n.startswith("_")
        )
        raise ModelTaskError(
            "import_error",
            f"cannot load model {target!r}: module {module_name!r} "
            f"({getattr(module, '__file__', '?')}) has no {cls_name!r}; its classes are {known}",
            error_type="AttributeError",
        )
    _check_class(target, cls)
    try:
        instance = cls()
    except Exception as exc:
        raise _import_failure(target, f"{cls_name}() failed", exc) from exc
    return LoadedModel(
        target=target,
        cls=cls,
        instance=instance,
        scenarios=getattr(cls, "scenarios", None) or {},
        base_config=getattr(cls, "config", None),
    )


class ModelCache:
    """Loaded models by `module:Class`, and load failures too, so a bad model is tried once."""

    def __init__(self, import_paths: Sequence[str] = ()) -> None:
        for path in reversed(import_paths):
            if path not in sys.path:
                sys.path.insert(0, path)
        self._models: dict[str, LoadedModel | ModelTaskError] = {}

    def get(self, entrypoint: str) -> tuple[LoadedModel, str | None]:
        """The model and scenario an entrypoint names, or ModelTaskError(kind=import_error)."""
        try:
            parsed = parse_entrypoint(entrypoint)
        except InvalidEntrypoint as exc:
            raise ModelTaskError("import_error", str(exc), error_type="InvalidEntrypoint") from exc
        cached = self._models.get(parsed.target)
        if cached is None:
            try:
                cached = load_model(parsed.target)
            except ModelTaskError as exc:
                cached = exc
            self._models[parsed.target] = cached
        if isinstance(cached, ModelTaskError):
            raise cached
        return cached, parsed.scenario


def run_model(
    model: LoadedModel,
    *,
    scenario: str | None,
    params: Mapping[str, Any],
    seed: int,
    config: Mapping[str, Any] | None = None,
    outputs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Apply the contract around one `simulate` call and return the output tables by name.

    Exceptions raised by `simulate` propagate unchanged (the worker reports them as
    model_error or oom); contract violations raise ModelTaskError.
    """
    if scenario is not None:
        if scenario not in model.scenarios:
            raise ModelTaskError(
                "model_error",
                f"model {model.target!r} has no scenario {scenario!r}; "
                f"known scenarios: {sorted(model.scenarios)}",
                error_type="UnknownScenario",
            )
        params = {**params, **model.scenarios[scenario]}
    else:
        params = dict(params)
    if model.base_config is not None or config:
        model.instance.config = {**(model.base_config or {}), **(config or {})}
    result = model.instance.simulate(params, seed)
    if not isinstance(result, Mapping) or not all(isinstance(k, str) for k in result):
        raise ModelTaskError(
            "bad_output",
            f"{model.target}.simulate() returned {type(result).__name__}; "
            "it must return a dict of output name -> table",
            error_type="BadOutput",
        )
    if outputs:
        missing = [name for name in outputs if name not in result]
        if missing:
            raise ModelTaskError(
                "bad_output",
                f"{model.target}.simulate() did not return requested output(s) {missing}; "
                f"it returned {sorted(result)}",
                error_type="MissingOutput",
            )
        return {name: result[name] for name in outputs}
    return dict(result)
