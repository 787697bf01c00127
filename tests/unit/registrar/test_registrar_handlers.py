"""Registrar decisions with an in-memory compare-and-set store: no servers."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from modelops_contracts import ModelEntry, RegisterModel, TrackedFile
from modelops_registrar.errors import Rejected, Transient
from modelops_registrar.handlers import on_register_model

from .fakes import MemoryModelsStore


def tracked(path: str, content: bytes) -> TrackedFile:
    return TrackedFile(
        path=path, digest="sha256:" + hashlib.sha256(content).hexdigest(), size=len(content)
    )


def entry(
    mid: str, *, data: bytes = b"1,2\n", module: str = "model", cls: str = "SIR"
) -> ModelEntry:
    return ModelEntry(
        id=mid,
        entrypoint=f"{module}:{cls}",
        path=f"src/{module}.py",
        code=[tracked(f"src/{module}.py", f"class {cls}: pass  # {mid}".encode())],
        data=[tracked("data/shared.csv", data)],
    )


def command(model: ModelEntry, project: str = "sir") -> RegisterModel:
    return RegisterModel(correlation_id="corr-1", project=project, model=model)


async def test_first_registration_creates_the_project_registry() -> None:
    store = MemoryModelsStore()
    model = entry("a")

    [event] = await on_register_model(command(model), store=store)

    assert event.project == "sir"
    assert event.model == model
    assert event.model_digest == model.digest
    assert event.revision == 1
    assert event.correlation_id == "corr-1"
    assert store.registry("sir").models == {"a": model}


async def test_a_second_model_joins_the_first() -> None:
    store = MemoryModelsStore()
    await on_register_model(command(entry("a", module="m1")), store=store)

    [event] = await on_register_model(command(entry("b", module="m2")), store=store)

    assert event.revision == 2
    assert sorted(store.registry("sir").models) == ["a", "b"]


async def test_same_content_again_writes_nothing_and_answers_with_the_same_ids() -> None:
    store = MemoryModelsStore()
    cmd = command(entry("a"))
    [first] = await on_register_model(cmd, store=store)

    [again] = await on_register_model(cmd, store=store)  # e.g. a redelivery

    assert store.writes == 1
    assert again.revision == first.revision
    assert again.id == first.id  # JetStream deduplicates the republished answer


async def test_lost_compare_and_set_is_retried() -> None:
    store = MemoryModelsStore()
    await on_register_model(command(entry("a", module="m1")), store=store)
    store.conflicts = 3

    [event] = await on_register_model(command(entry("b", module="m2")), store=store)

    assert sorted(store.registry("sir").models) == ["a", "b"]
    assert event.revision == 2


async def test_concurrent_registrations_in_one_project_lose_nothing() -> None:
    store = MemoryModelsStore()
    models = [entry(f"m{i}", module=f"mod{i}") for i in range(8)]

    await asyncio.gather(*(on_register_model(command(m), store=store) for m in models))

    assert sorted(store.registry("sir").models) == sorted(m.id for m in models)
    assert store.lost > 0  # they really raced


async def test_too_much_contention_is_transient() -> None:
    store = MemoryModelsStore()
    store.conflicts = 5

    with pytest.raises(Transient, match="changed 3 times"):
        await on_register_model(command(entry("a")), store=store, attempts=3)


async def test_store_down_is_transient() -> None:
    store = MemoryModelsStore()
    store.down = True

    with pytest.raises(Transient):
        await on_register_model(command(entry("a")), store=store)


async def test_a_changed_shared_file_moves_the_other_models_digests_too() -> None:
    store = MemoryModelsStore()
    await on_register_model(command(entry("a", module="m1", data=b"old")), store=store)
    await on_register_model(command(entry("b", module="m2", data=b"old")), store=store)

    events = await on_register_model(command(entry("a", module="m1", data=b"new")), store=store)

    registry = store.registry("sir")
    assert [e.model.id for e in events] == ["a", "b"]
    assert (
        registry.models["b"].data
        == registry.models["a"].data
        == [tracked("data/shared.csv", b"new")]
    )
    assert events[1].model_digest == registry.models["b"].digest
    assert len({e.id for e in events}) == 2


async def test_scenario_in_the_entrypoint_is_rejected() -> None:
    model = entry("a", cls="SIR")
    bad = ModelEntry(
        id="a", entrypoint="model:SIR/lockdown", path=model.path, code=model.code, data=model.data
    )

    with pytest.raises(Rejected) as caught:
        await on_register_model(command(bad), store=MemoryModelsStore())

    assert caught.value.field == "model.entrypoint"


@pytest.mark.parametrize("project", ["a b", ".hidden", "x..y", "trailing.", "x" * 129, "a:b"])
async def test_project_names_that_cannot_be_keys_are_rejected(project: str) -> None:
    with pytest.raises(Rejected) as caught:
        await on_register_model(command(entry("a"), project=project), store=MemoryModelsStore())

    assert caught.value.field == "project"
