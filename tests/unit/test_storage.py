"""Storage accounting when catalog ids share files (issue 11, item 1).

web-llm's prebuilt list has ids that share one model folder and library (``…-MLC`` and its ``…-MLC-1k``
twin): the files belong to each of them, are counted once, and stay while any other stored, loaded or
loading model needs them. Runs over the in-memory fake of the storage bridge.
"""

from __future__ import annotations

import asyncio

import pytest

from app.errors import InsufficientStorage, ModelFetchFailed
from app.models.catalog import Catalog
from app.models.manager import ModelManager
from app.storage import Storage
from tests.browser.model_server import SyntheticModel
from tests.unit.conftest import run
from tests.unit.models.fake_store import FakeStoreApi
from tests.unit.models.test_models_unit import ORIGIN, FakeBackend, record, served

X = SyntheticModel("synth-x", shards=4, shard_bytes=20_000, seed=21)
U = SyntheticModel("synth-u", shards=2, shard_bytes=10_000, seed=22)
TWIN = "synth-x-1k"  # X's folder and library under another id, as web-llm's -1k builds are


class GatedBackend(FakeBackend):
    """A load that reads the model's files only once ``gate`` is set (``reading`` says it started);
    ``missing`` is what it did not find then."""

    def __init__(self, api: FakeStoreApi | None = None) -> None:
        super().__init__()
        self.api = api
        self.gate = asyncio.Event()
        self.reading = asyncio.Event()
        self.missing: set[str] = set()

    async def load(self, model_id, on_progress=None):
        self.reading.set()
        await self.gate.wait()
        if self.api is not None:
            self.missing = {ORIGIN + p for p in X.files} - stored_urls(self.api)
        self.loaded = model_id


def urls(model: SyntheticModel) -> set[str]:
    return {ORIGIN + path for path in model.files}


def stored_urls(api: FakeStoreApi) -> set[str]:
    return {url for store in api.stores.values() for url in store}


def setup(*, twin_downloaded: bool = True):
    """X, its twin and U in the catalog; all three downloaded (through the manager: plans saved);
    U used first, then the twin, then X."""
    api = FakeStoreApi(served(X, U))
    catalog = Catalog([], [record(X), record(X, model_id=TWIN, overrides={"context_window_size": 1024}),
                           record(U)], store=api)
    now = [0.0]

    def clock():
        now[0] += 1
        return now[0]

    manager = ModelManager(catalog, FakeBackend(), api=api, storage=Storage(catalog, api=api, clock=clock))
    ids = ["synth-x", TWIN, "synth-u"] if twin_downloaded else ["synth-x", "synth-u"]
    for model_id in ids:
        run(manager.download(model_id))
    for model_id in ("synth-u", TWIN, "synth-x"):
        run(manager.storage.touch(model_id))
    return api, manager


def test_shared_files_belong_to_both_twins_and_are_counted_once():
    api, manager = setup()
    report = run(manager.storage.report())
    assert report.models["synth-x"].bytes == report.models[TWIN].bytes == X.total_bytes
    assert report.total_bytes == X.total_bytes + U.total_bytes
    assert {f.url for f in report.shared} == urls(X)
    assert all(owners == ("synth-x", TWIN) for owners in report.shared.values())
    assert {f.url for f in report.models[TWIN].shared} == urls(X)
    assert report.models["synth-u"].shared == () and report.models["synth-u"].own_bytes == U.total_bytes


def test_a_plan_claims_its_files_a_twin_without_one_owns_only_what_no_plan_claims():
    api, manager = setup(twin_downloaded=False)
    stray = f"{ORIGIN}/synth/synth-x/resolve/main/ndarray-cache.json"  # another release's manifest name
    api.stores[("cache", "webllm/model")][stray] = 50
    report = run(manager.storage.report())
    assert {f.url for f in report.models["synth-x"].files} == urls(X) | {stray}
    assert [f.url for f in report.models[TWIN].files] == [stray]
    assert report.total_bytes == X.total_bytes + U.total_bytes + 50


def test_evicting_with_the_full_model_loaded_takes_the_unrelated_model_and_keeps_the_loaded_ones_files():
    api, manager = setup()
    run(manager.load("synth-x"))
    gone = run(manager.evict(X.total_bytes))  # U is the least recently used; the twin is not needed
    assert gone == ["synth-u"]
    assert urls(X) <= stored_urls(api) and not urls(U) & stored_urls(api)
    assert run(manager.status("synth-x")).state == "loaded"


def test_evicting_the_loaded_models_twin_frees_nothing_and_says_it_was_forgotten():
    api, manager = setup()
    run(manager.load("synth-x"))
    run(manager.storage.touch("synth-u"))  # now the twin is the least recently used
    gone = run(manager.evict(X.total_bytes))
    assert gone == [TWIN, "synth-u"]
    twin = gone[0]
    assert (twin.freed, twin.forgotten) == (0, True)
    assert set(twin.kept) == urls(X) and all(by == ("synth-x",) for by in twin.kept.values())
    assert "forgotten" in twin.note and "synth-x" in twin.note
    assert gone[1].freed == U.total_bytes and not gone[1].forgotten
    assert urls(X) <= stored_urls(api)
    report = run(manager.storage.report())
    assert set(report.models) == {"synth-x"} and report.shared == {}
    assert run(manager.status(TWIN)).state == "not-downloaded"


def test_evict_never_deletes_what_a_loading_model_needs():
    api, manager = setup(twin_downloaded=False)
    run(manager.delete("synth-u"))
    # X's files as web-llm itself stored them (no plan claims them): the prefix rule names them.
    api.kv["sizes"].pop("synth-x")
    manager._plans.clear()
    backend = manager.backend = GatedBackend(api)

    async def unknown(model_id):  # and none can be made before the load (offline): it goes ahead
        raise ModelFetchFailed("offline")

    manager.plan = unknown

    async def go():
        load = asyncio.ensure_future(manager.load("synth-x"))
        await backend.reading.wait()
        gone = await manager.evict(0)
        backend.gate.set()
        await load
        return gone

    gone = run(go())
    assert gone == [TWIN] and gone[0].forgotten
    assert backend.missing == set() and urls(X) <= stored_urls(api)


def test_deleting_the_twin_keeps_files_the_other_stored_twin_needs_then_the_last_one_frees_them():
    api, manager = setup()
    assert run(manager.delete(TWIN)) == 0
    assert urls(X) <= stored_urls(api)
    assert run(manager.status("synth-x")).state == "downloaded"
    assert run(manager.delete("synth-x")) == X.total_bytes
    assert not urls(X) & stored_urls(api)


def test_an_unrelated_model_sharing_only_a_library_keeps_it():
    shared = f"{ORIGIN}/libs/shared.wasm"
    api = FakeStoreApi({**served(X, U), shared: b"lib" * 100})
    catalog = Catalog([], [record(X, model_lib=shared), record(U, model_lib=shared)], store=api)
    manager = ModelManager(catalog, FakeBackend(), api=api)
    run(manager.download("synth-x"))
    run(manager.download("synth-u"))
    report = run(manager.storage.report())
    assert [f.url for f in report.shared] == [shared]
    assert run(manager.delete("synth-x")) == X.total_bytes - len(X.files[f"/libs/{X.name}-webgpu.wasm"])
    assert shared in stored_urls(api)


def test_not_enough_space_names_only_models_whose_deletion_frees_something():
    big = SyntheticModel("synth-big", shards=2, shard_bytes=200_000, seed=23)
    api, manager = setup()
    api.files.update(served(big))
    run(manager.catalog.add(record(big)))  # a user model, not downloaded
    run(manager.load("synth-x"))
    api.quota = run(manager.storage.quota()).usage + 100_000  # less than big needs
    with pytest.raises(InsufficientStorage) as info:
        run(manager.download("synth-big"))
    # The twin shares every file with the loaded model: deleting it would free nothing.
    assert info.value.evictable == ("synth-u",) and TWIN not in str(info.value)
