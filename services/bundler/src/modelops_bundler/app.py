"""The bundler as a faststream app: a durable pull consumer of BuildBundle commands and, when
set to build on register, of ModelRegistered events.

`create_app(deps)` wires the consumers; `serve(settings)` opens the deps and runs the app until
asked to stop, so the embedded stack can run it next to other services in one process and
`python -m modelops_bundler` can run it alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from faststream import FastStream

from modelops_contracts import BuildBundle, BundleFailed, Event, ModelRegistered
from modelops_contracts.subjects import (
    COMMANDS_STREAM,
    EVENTS_STREAM,
    KV_BUNDLES,
    KV_MODELS,
    MODEL_EVENTS,
)
from modelops_runtime.consumer_app import Consumers, ConsumerService

from .bootstrap import Deps, open_deps
from .errors import Rejected
from .handlers import SOURCE, build_for_registration, on_build_bundle
from .settings import Settings

__all__ = ["SERVICE", "Settings", "create_app", "serve"]

# Builds mostly wait on the store; a few at once overlap that without flooding it.
_BATCH = 4


def create_app(deps: Deps) -> FastStream:
    """The bundler app on `deps` (see bootstrap.open_deps)."""
    settings = deps.settings
    consumers = Consumers(deps, batch_size=_BATCH)

    async def build(cmd: BuildBundle) -> Sequence[Event]:
        return await on_build_bundle(cmd, models=deps.models, store=deps.store, index=deps.index)

    async def build_registered(event: ModelRegistered) -> Sequence[Event]:
        cmd = build_for_registration(event, repository=settings.auto_repository)
        try:
            return await build(cmd)
        except Rejected as exc:  # an event is never rejected: report the failed build
            failed = BundleFailed(
                id=f"{cmd.id}.failed",
                correlation_id=cmd.correlation_id,
                source=SOURCE,
                project=cmd.project,
                reason=str(exc),
            )
            return [failed]

    consumers.commands(BuildBundle, build, source=SOURCE)
    if settings.build_on_register:
        consumers.events(
            ModelRegistered,
            build_registered,
            subject=f"{MODEL_EVENTS}.{ModelRegistered.kind}",
            durable=f"{settings.durable}-on-register",
        )
    return consumers.app()


SERVICE = ConsumerService(
    name="bundler",
    settings_from_env=Settings.from_env,
    open_deps=open_deps,
    create_app=create_app,
    streams=(COMMANDS_STREAM, EVENTS_STREAM),
    kv=(KV_MODELS, KV_BUNDLES),
    started=lambda s: {
        "nats_url": s.nats_url,
        "store": s.bundle_store,
        "build_on_register": s.build_on_register,
    },
)
serve = SERVICE.serve
