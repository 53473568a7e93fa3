"""The model picker's state and words under CPython: a real ModelManager over the fake storage ffi."""

from __future__ import annotations

import asyncio

from app.models.catalog import Catalog
from app.models.download import DownloadProgress
from app.config import PageConfig
from app.models.manager import ModelManager, ModelStatus
from app.runtime import WebGPUReport
from app.session import Parts, Session
from app.ui.models import ModelsState, format_ago, format_duration, progress_line, state_badge, static_badges
from tests.unit.conftest import run
from tests.unit.models.fake_store import FakeStoreApi
from tests.unit.models.test_models_unit import A, B, FakeBackend, record, served

GPU = WebGPUReport.from_probe({"api": True, "adapter": True, "features": [], "limits": {
    "maxBufferSize": 1 << 30, "maxStorageBufferBindingSize": 1 << 30}})


def setup(quota: int = 10**12):
    api = FakeStoreApi(served(A, B), quota=quota)
    big = {"model_id": "big-q4f16_1", "model": "https://models.test/other/big",
           "model_lib": "https://models.test/libs/big.wasm", "vram_required_MB": 9000}
    catalog = Catalog([], [record(A), record(B), big], store=api)
    backend = FakeBackend()

    async def make_catalog(extra):
        return catalog

    parts = Parts(webllm=lambda app_config, layout: backend, catalog=make_catalog,
                  manager=lambda catalog, backend, layout, emit: ModelManager(catalog, backend, api=api, emit=emit))
    session = Session(PageConfig(model=None), parts=parts)
    session.gpu.set(GPU)
    return api, ModelsState(session, run(session.models()))


def test_search_sort_and_badges_follow_the_signals():
    _api, state = setup()
    assert [m.id for m in state.visible.get()] == ["big-q4f16_1", "synth-a", "synth-b"]
    state.sort.set("vram")
    assert state.visible.get()[-1].id == "big-q4f16_1"
    state.query.set("SYNTH b")
    assert [m.id for m in state.visible.get()] == ["synth-b"]
    big = state.catalog.get("big-q4f16_1")
    kinds = {k: t for k, t, _title in static_badges(big, state.fit(big), None)}
    assert kinds == {"vram": "8.8 GiB VRAM", "context": "4k context", "fit-no": "needs shader-f16"}
    a = state.catalog.get("synth-a")
    assert ("fit-ok", "fits this GPU") in [(k, t) for k, t, _ in static_badges(a, state.fit(a), 2048)]


def test_select_sizes_once_download_reports_progress_cancel_leaves_partial_and_resume_completes():
    api, state = setup()

    async def go():
        await state.select("synth-a")
        assert state.sizes.peek()["synth-a"] == A.total_bytes and api.heads  # sized on selection
        heads = sum(api.heads.values())
        await state.select("synth-a")
        assert sum(api.heads.values()) == heads  # not twice
        seen = []
        from app.ui.store import effect

        eff = effect(lambda: seen.append(state_badge(state.status("synth-a").get())))
        shard = f"https://models.test{A.shard_path(2)}"
        api.gate[shard] = asyncio.Event()
        task = asyncio.ensure_future(state.download("synth-a"))
        while state.status("synth-a").peek().bytes_stored < A.total_bytes - len(A.files[A.shard_path(2)]):
            await asyncio.sleep(0)
        assert state.status("synth-a").peek().state == "downloading"
        assert progress_line(state.status("synth-a").peek()).startswith("Downloading · ")
        state.cancel("synth-a")
        api.gate[shard].set()
        assert await task is False
        assert state.status("synth-a").peek().state == "partial"
        assert await state.download("synth-a") is True
        assert state.status("synth-a").peek().state == "downloaded"
        eff.dispose()
        assert any(s.startswith("downloading ") for s in seen) and seen[-1] == "downloaded"
        assert [m[0] for m in state.storage.peek().models] == ["synth-a"]
        assert state.storage.peek().model_bytes == A.total_bytes

    run(go())


def test_use_loads_and_sets_the_chat_model_delete_and_evict_update_storage():
    _api, state = setup()

    async def go():
        await state.download("synth-a")
        await state.download("synth-b")
        assert await state.use("synth-b") is True
        assert state.session.model.peek() == "synth-b"
        assert state.status("synth-b").peek().state == "loaded"
        # The loaded model is never evicted: the least recently used other one goes.
        assert await state.evict_lru() == ["synth-a"]
        assert [m[0] for m in state.storage.peek().models] == ["synth-b"]
        assert await state.delete("synth-b") == B.total_bytes
        assert state.storage.peek().models == ()
        assert state.status("synth-b").peek().state == "not-downloaded"

    run(go())


def test_a_download_that_does_not_fit_offers_what_to_delete():
    _api, state = setup(quota=A.total_bytes + 1000)

    async def go():
        await state.download("synth-b")
        assert await state.download("synth-a") is False
        short = state.shortfall.peek()
        assert short is not None and short.evictable == ("synth-b",)
        assert "synth-a needs" in state.notice.peek()
        await state.delete("synth-b")
        assert state.shortfall.peek() is None
        assert await state.download("synth-a") is True

    run(go())


def test_words():
    assert format_duration(0.2) == "<1 s" and format_duration(75) == "1 min 15 s" and format_duration(7300) == "2 h 1 min"
    assert format_ago(None, 10) == "never used" and format_ago(100, 130) == "used just now"
    assert format_ago(0, 7200) == "used 2 h ago"
    p = DownloadProgress("m", "downloading", 512 * 1024, 2 * 1024 * 1024, 3, 10, rate=1024 * 1024, eta=1.5)
    assert progress_line(ModelStatus("m", "downloading", progress=p)) == \
        "Downloading · 25% · 512 KiB of 2 MiB · 1 MiB/s · 2 s left · 3/10 files"
    waiting = DownloadProgress("m", "waiting", 512 * 1024, 2 * 1024 * 1024, 9, 10, waiting=1)
    assert progress_line(ModelStatus("m", "downloading", progress=waiting)) == \
        "Waiting for another tab · 25% · 512 KiB of 2 MiB · 9/10 files"
    assert progress_line(ModelStatus("m", "loading", load_progress=0.4, load_text="shards")) == "Loading · 40% · shards"
    assert state_badge(ModelStatus("m", "loading", load_progress=0.4)) == "loading 40%"
    assert state_badge(ModelStatus("m", "not-downloaded")) == ""


def test_twin_ids_of_one_folder_are_counted_once_and_removing_the_loaded_ones_twin_only_forgets_it():
    api = FakeStoreApi(served(A, B))
    catalog = Catalog([], [record(A), record(A, model_id="synth-a-1k"), record(B)], store=api)
    backend = FakeBackend()

    async def make_catalog(extra):
        return catalog

    def make_manager(catalog, backend, layout, emit):
        return ModelManager(catalog, backend, api=api, emit=emit)

    parts = Parts(webllm=lambda app_config, layout: backend, catalog=make_catalog, manager=make_manager)
    session = Session(PageConfig(model=None), parts=parts)
    session.gpu.set(GPU)
    state = ModelsState(session, run(session.models()))

    async def go():
        for model_id in ("synth-a", "synth-a-1k", "synth-b"):
            await state.download(model_id)
        assert state.storage.peek().model_bytes == A.total_bytes + B.total_bytes
        assert await state.use("synth-a") is True
        await state.manager.storage.touch("synth-b")  # the twin is now the least recently used
        await state.refresh()
        assert await state.evict_lru() == ["synth-a-1k"]
        assert "forgotten" in state.notice.peek()
        assert [m[0] for m in state.storage.peek().models] == ["synth-a", "synth-b"]
        assert state.storage.peek().model_bytes == A.total_bytes + B.total_bytes
        assert state.status("synth-a").peek().state == "loaded"

    run(go())


def test_an_embedding_model_is_listed_for_files_and_cannot_become_the_chat_model():
    api = FakeStoreApi(served(A, B))
    embed = {"model_id": "snowflake-arctic-embed-s-q0f32-MLC-b4", "model": "https://models.test/e/embed",
             "model_lib": "https://models.test/libs/embed.wasm", "model_type": 1}
    catalog = Catalog([], [record(A), embed], store=api)
    backend = FakeBackend()

    async def make_catalog(extra):
        return catalog

    parts = Parts(webllm=lambda app_config, layout: backend, catalog=make_catalog,
                  manager=lambda catalog, backend, layout, emit: ModelManager(catalog, backend, api=api, emit=emit))
    session = Session(PageConfig(model="synth-a"), parts=parts)
    state = ModelsState(session, run(session.models()))
    info = state.catalog.get(embed["model_id"])
    assert info.embedding and not state.catalog.get("synth-a").embedding
    assert ("embedding", "for Files") in [(k, t) for k, t, _ in static_badges(info, None, None)]
    assert run(state.use(embed["model_id"])) is False
    assert "embedding model" in state.notice.peek() and "cannot chat" in state.notice.peek()
    assert session.model.peek() == "synth-a" and backend.loaded is None  # nothing changed, nothing loaded
