"""The registrar as a faststream app: a durable pull consumer of RegisterModel commands.

`create_app(deps)` wires the consumer; `serve(settings)` opens the deps and runs the app until
asked to stop, so the embedded stack can run it next to other services in one process and
`python -m modelops_registrar` can run it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from faststream import FastStream

from modelops_contracts import Event, RegisterModel
from modelops_contracts.subjects import COMMANDS_STREAM, EVENTS_STREAM, KV_MODELS
from modelops_runtime.consumer_app import Consumers, ConsumerService

from .bootstrap import Deps, open_deps
from .handlers import SOURCE, on_register_model
from .settings import Settings

__all__ = ["SERVICE", "Settings", "create_app", "serve"]

# Registrations are small; a few at once keeps KV round trips overlapping without piling up
# compare-and-set conflicts on one project.
_BATCH = 8


def create_app(deps: Deps) -> FastStream:
    """The registrar app on `deps` (see bootstrap.open_deps)."""
    consumers = Consumers(deps, batch_size=_BATCH)

    async def register(cmd: RegisterModel) -> Sequence[Event]:
        return await on_register_model(cmd, store=deps.store, attempts=deps.settings.kv_attempts)

    consumers.commands(RegisterModel, register, source=SOURCE)
    return consumers.app()


SERVICE = ConsumerService(
    name="registrar",
    settings_from_env=Settings.from_env,
    open_deps=open_deps,
    create_app=create_app,
    streams=(COMMANDS_STREAM, EVENTS_STREAM),
    kv=(KV_MODELS,),
    started=lambda s: {"nats_url": s.nats_url, "durable": s.durable},
)
serve = SERVICE.serve
