"""Catalog, download, storage and manager logic under CPython, over a fake of the storage ffi."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import Aborted, InsufficientStorage, InvalidRequest, ModelFetchFailed, ModelNotFound, QuotaExceeded
from app.models.catalog import Catalog, ModelInfo, validate_record
from app.models.download import Download, RateMeter, make_plan
from app.models.manager import ModelManager
from app.runtime import WebGPUReport
from app.storage import Storage
from tests.browser.model_server import SyntheticModel
from tests.unit.conftest import run
from tests.unit.models.fake_store import FakeStoreApi

ORIGIN = "https://models.test"
A = SyntheticModel("synth-a", shards=5, shard_bytes=20_000, seed=1)
B = SyntheticModel("synth-b", shards=2, shard_bytes=10_000, seed=2)


def record(model: SyntheticModel, **extra) -> dict:
    return {"model": f"{ORIGIN}/{model.org}/{model.name}", "model_id": model.name,
            "model_lib": f"{ORIGIN}/libs/{model.name}-webgpu.wasm", "vram_required_MB": 300, **extra}


def served(*models: SyntheticModel) -> dict[str, bytes]:
    return {ORIGIN + path: data for m in models for path, data in m.files.items()}


class FakeBackend:
    """What the manager uses of WebLLMBackend."""

    def __init__(self) -> None:
        self.loaded = None
        self.configs = []

    async def set_app_config(self, config):
        self.configs.append(config)

    async def load(self, model_id, on_progress=None):
        on_progress({"progress": 0.5, "text": "half"})
        self.loaded = model_id

    async def unload(self):
        self.loaded = None


def setup(quota: int = 10**12):
    api = FakeStoreApi(served(A, B), quota=quota)
    catalog = Catalog([], [record(A), record(B)], store=api)
    events = []
    manager = ModelManager(catalog, FakeBackend(), api=api, emit=events.append)
    return api, catalog, manager, events


# ------------------------------------------------------------------ catalog


@pytest.mark.parametrize("bad, param", [
    ({"model": "https://x/m", "model_lib": "https://x/l.wasm"}, "model_id"),
    ({"model_id": "has space", "model": "https://x/m", "model_lib": "https://x/l.wasm"}, "model_id"),
    ({"model_id": "m", "model": "/relative", "model_lib": "https://x/l.wasm"}, "model"),
    ({"model_id": "m", "model": "https://x/m", "model_lib": "ftp://x/l.wasm"}, "model_lib"),
    ({"model_id": "m", "model": "https://x/m", "model_lib": "https://x/l", "vram_required_MB": -1}, "vram_required_MB"),
    ({"model_id": "m", "model": "https://x/m", "model_lib": "https://x/l", "vram_required_MB": True}, "vram_required_MB"),
    ({"model_id": "m", "model": "https://x/m", "model_lib": "https://x/l", "required_features": "f16"}, "required_features"),
    ({"model_id": "m", "model": "https://x/m", "model_lib": "https://x/l",
      "overrides": {"context_window_size": 0}}, "overrides.context_window_size"),
])
def test_bad_user_models_are_refused_naming_the_field(bad, param):
    with pytest.raises(InvalidRequest) as info:
        validate_record(bad)
    assert info.value.param == param


def test_add_persists_and_refuses_prebuilt_ids_without_touching_the_store():
    api = FakeStoreApi({}, prebuilt=[record(A)])
    catalog = run(Catalog.load(api=api))
    with pytest.raises(InvalidRequest):
        run(catalog.add(record(A)))
    assert api.kv == {}
    run(catalog.add(record(B, model_id="mine")))
    again = run(Catalog.load(api=api))
    assert again.get("mine").source == "user" and again.get("synth-a").source == "prebuilt"
    run(again.remove("mine"))
    assert "mine" not in run(Catalog.load(api=api))
    with pytest.raises(ModelNotFound):
        again.get("mine")


def test_search_and_sort():
    catalog = Catalog([record(A, vram_required_MB=900, overrides={"context_window_size": 1024}),
                       record(B, vram_required_MB=100)], [])
    assert [m.id for m in catalog.search("synth", sort="vram")] == ["synth-b", "synth-a"]
    assert [m.id for m in catalog.search("SYNTH A")] == ["synth-a"]  # case-insensitive, every word
    assert [m.id for m in catalog.search("synth q")] == []
    assert [m.id for m in catalog.search("synth-a")] == ["synth-a"]
    assert [m.id for m in catalog.search(sort="context")] == ["synth-b", "synth-a"]


def test_fit_names_what_is_missing():
    f16 = ModelInfo.from_record(record(A, model_id="m-q4f16_1-MLC"), "user")
    f32 = ModelInfo.from_record(record(A, model_id="m-q4f32_1-MLC"), "user")
    gpu = WebGPUReport(available=True, limits={"maxBufferSize": 1 << 30, "maxStorageBufferBindingSize": 1 << 27},
                       features=frozenset({"subgroups"}))
    catalog = Catalog([], [])
    assert catalog.fit(f16, gpu).reasons == ("needs shader-f16, which this GPU/browser does not offer",)
    assert catalog.fit(f32, gpu).ok
    assert not catalog.fit(f32, gpu, largest_tensor=1 << 28).ok
    assert not catalog.fit(f32, WebGPUReport(available=False, reason="no-api")).ok


# ------------------------------------------------------------------ download


def test_plan_sizes_everything_without_storing_anything():
    api, catalog, _, _ = setup()
    plan = run(make_plan(catalog.get("synth-a"), api=api))
    assert plan.total_bytes == A.total_bytes
    assert plan.shards == A.shards
    assert api.stores == {} and api.staged == {}


def test_rate_meter_smooths_and_eta_follows():
    now = [0.0]
    meter = RateMeter(tau=1.0, clock=lambda: now[0])
    assert meter.update(0) is None
    for _ in range(20):
        now[0] += 0.5
        meter.update(int(now[0] * 1000))
    assert meter.rate == pytest.approx(1000, rel=0.01)
    now[0] += 0.5  # a stall pulls the rate down, not to zero at once
    assert 0 < meter.update(int((now[0] - 0.5) * 1000)) < 1000


def test_download_progress_is_monotonic_and_ends_at_the_total():
    api, catalog, _, _ = setup()
    plan = run(make_plan(catalog.get("synth-a"), api=api))
    seen = []
    final = run(Download(plan, "cache", on_progress=seen.append, api=api).run())
    assert (final.phase, final.bytes_done, final.files_done) == ("done", A.total_bytes, len(A.files))
    done = [p.bytes_done for p in seen if p.phase == "downloading"]
    assert done == sorted(done)
    assert [p.phase for p in seen][-2:] == ["verifying", "done"]
    assert sum(api.sent.values()) == A.total_bytes


def test_a_cut_file_fails_typed_others_finish_and_resume_fetches_the_rest_once():
    api, catalog, _, _ = setup()
    plan = run(make_plan(catalog.get("synth-a"), api=api))
    shard = ORIGIN + A.shard_path(2)
    api.cut[shard] = 5000
    with pytest.raises(ModelFetchFailed):
        run(Download(plan, "cache", api=api).run())
    assert api.staged == {shard: 5000}
    assert shard not in api.stores[("cache", "webllm/model")]

    async def resume():
        stored = {u: n for s in api.stores.values() for u, n in s.items()}
        return await Download(plan, "cache", stored=stored, staged=dict(api.staged), api=api).run()

    assert run(resume()).bytes_done == A.total_bytes
    assert sum(api.sent.values()) == A.total_bytes  # nothing fetched twice


def test_cancel_stages_and_reports_cancelled():
    api, catalog, _, _ = setup()
    plan = run(make_plan(catalog.get("synth-a"), api=api))

    async def go():
        gate = asyncio.Event()
        api.gate[ORIGIN + A.shard_path(0)] = gate
        seen = []
        job = Download(plan, "cache", on_progress=seen.append, api=api, concurrency=1)
        task = asyncio.ensure_future(job.run())
        while not seen or seen[-1].files_done < 2:
            await asyncio.sleep(0)
        job.cancel()
        gate.set()
        with pytest.raises(Aborted):
            await task
        return seen[-1]

    last = run(go())
    assert last.phase == "cancelled"
    assert not any("params_shard_1" in u for u in api.stores[("cache", "webllm/model")])


# ------------------------------------------------------------------ storage


def test_accounting_attributes_entries_and_keeps_a_shared_library():
    shared = f"{ORIGIN}/libs/shared.wasm"
    api = FakeStoreApi({**served(A, B), shared: b"lib" * 100})
    catalog = Catalog([], [record(A, model_lib=shared), record(B, model_lib=shared)], store=api)
    manager = ModelManager(catalog, FakeBackend(), api=api)
    run(manager.download("synth-a"))
    run(manager.download("synth-b"))
    api.stores[("cache", "webllm/model")][f"{ORIGIN}/elsewhere/file"] = 7
    report = run(manager.storage.report())
    assert report.models["synth-a"].bytes == A.total_bytes - len(A.files[f"/libs/{A.name}-webgpu.wasm"]) + 300
    assert [f.url for f in report.orphans] == [f"{ORIGIN}/elsewhere/file"]
    run(manager.delete("synth-a"))
    assert shared in api.stores[("cache", "webllm/wasm")]  # b still needs it
    run(manager.delete("synth-b"))
    assert shared not in api.stores[("cache", "webllm/wasm")]


def test_evict_goes_least_recently_used_first_and_keeps_the_loaded_model():
    api, catalog, manager, _ = setup()
    now = [100.0]
    manager.storage = Storage(catalog, api=api, clock=lambda: now[0])
    run(manager.download("synth-a"))
    run(manager.download("synth-b"))
    run(manager.storage.touch("synth-b"))
    now[0] = 200.0
    run(manager.storage.touch("synth-a"))
    assert run(manager.evict(A.total_bytes)) == ["synth-b"]
    manager.backend.loaded = "synth-a"
    assert run(manager.evict(0)) == []
    with pytest.raises(ValueError):
        run(manager.evict(-1))


# ------------------------------------------------------------------ manager


def test_states_through_a_download_and_a_load():
    api, _, manager, events = setup()
    assert run(manager.status("synth-a")).state == "not-downloaded"
    api.cut[ORIGIN + A.shard_path(1)] = 100
    with pytest.raises(ModelFetchFailed):
        run(manager.download("synth-a"))
    status = run(manager.status("synth-a"))
    assert status.state == "failed" and isinstance(status.error, ModelFetchFailed)
    assert 0 < status.bytes_stored < A.total_bytes
    run(manager.download("synth-a"))
    assert run(manager.status("synth-a")).state == "downloaded"
    run(manager.load("synth-a"))
    assert run(manager.status("synth-a")).state == "loaded"
    # The backend's report, then the end of the load (1.0) it did not report itself.
    assert [e["progress"] for e in events if e["event"] == "app.model.load"] == [0.5, 1.0]
    assert manager.backend.configs and "synth-a" in run(manager.storage.last_used())
    run(manager.delete("synth-a"))
    assert (run(manager.status("synth-a")).state, manager.backend.loaded) == ("not-downloaded", None)


def test_two_downloads_of_one_model_share_one():
    api, _, manager, _ = setup()

    async def both():
        return await asyncio.gather(manager.download("synth-a"), manager.download("synth-a"))

    first, second = run(both())
    assert first == second
    assert all(n == 1 for n in api.gets.values())


def test_not_enough_quota_is_refused_before_anything_is_written():
    api, _, manager, _ = setup(quota=B.total_bytes + 100)
    run(manager.download("synth-b"))
    before = {k: dict(v) for k, v in api.stores.items()}
    with pytest.raises(InsufficientStorage) as info:
        run(manager.download("synth-a"))
    assert info.value.needed == A.total_bytes and info.value.evictable == ("synth-b",)
    assert api.stores == before and api.staged == {}
    assert not any("synth-a/resolve/main/params_shard" in u for u in api.gets)


def test_a_load_that_would_download_more_than_fits_is_refused_before_anything_is_fetched():
    # The chat (or an embedded chat, which has no Models panel) loads a model web-llm would download.
    api, _, manager, _ = setup(quota=B.total_bytes + 100)
    run(manager.download("synth-b"))
    before = {k: dict(v) for k, v in api.stores.items()}
    with pytest.raises(InsufficientStorage) as info:
        run(manager.load("synth-a"))
    assert info.value.needed == A.total_bytes and "synth-a needs" in str(info.value)
    assert manager.backend.loaded is None and api.stores == before
    assert not any("params_shard" in u and "synth-a" in u for u in api.gets)
    assert run(manager.status("synth-a")).error == info.value
    # A model whose files are all stored loads whatever the quota says.
    run(manager.load("synth-b"))
    assert manager.backend.loaded == "synth-b"


def test_quota_hit_while_writing_removes_what_the_download_wrote():
    api, _, manager, _ = setup()
    run(manager.download("synth-b"))
    before = {k: dict(v) for k, v in api.stores.items()}
    api.quota = api.usage() + A.total_bytes // 2  # estimate says it fits; the writes say otherwise
    manager.storage.quota = lambda: _quota(10**12)
    with pytest.raises(QuotaExceeded):
        run(manager.download("synth-a"))
    assert api.stores == before and api.staged == {}


async def _quota(n):
    from app.storage import Quota

    return Quota(0, n, False)


def test_unknown_model_is_a_typed_error_before_anything_runs():
    api, _, manager, _ = setup()
    with pytest.raises(ModelNotFound):
        run(manager.download("nope"))
    assert api.gets == {}


def test_a_refused_bookkeeping_write_does_not_fail_a_plan_or_a_load():
    api, _, manager, events = setup()
    run(manager.download("synth-a"))
    manager._plans.clear()
    api.kv.clear()

    async def refuse(store, key, value):
        raise QuotaExceeded("the browser refused to store more: QuotaExceededError")

    api.kv_put = refuse
    assert run(manager.plan("synth-a")).model_id == "synth-a"  # kept in memory, not stored
    run(manager.load("synth-a"))
    assert run(manager.status("synth-a")).state == "loaded"
    refused = [(e["what"], e["gen_ai.request.model"]) for e in events if e["event"] == "app.storage.refused"]
    assert refused == [("sizes", "synth-a"), ("last used", "synth-a")]
