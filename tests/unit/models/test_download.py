"""Download integrity and waiting under CPython: checksums from the tensor manifest, a file another
download holds (another tab, a twin id), and plans saved before checksums were kept."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from app.errors import Aborted, ChecksumMismatch, ModelFetchFailed
from app.ffi.storage import _storage_error
from app.models.catalog import Catalog
from app.models.download import PLAN_FORMAT, Download, DownloadPlan, make_plan
from app.storage import SIZES_STORE
from tests.browser.model_server import SyntheticModel
from tests.unit.conftest import run
from tests.unit.models.fake_store import FakeStoreApi
from tests.unit.models.test_models_unit import ORIGIN, A, record, setup

STORE = ("cache", "webllm/model")


def test_the_plan_carries_each_shards_md5_from_the_manifest_and_the_download_spec_passes_it_on():
    api, catalog, _, _ = setup()
    plan = run(make_plan(catalog.get("synth-a"), api=api))
    shards = [a for a in plan.artifacts if a.kind == "shard"]
    assert [a.md5 for a in shards] == [hashlib.md5(api.files[a.url]).hexdigest() for a in shards]
    assert all(a.md5 is None for a in plan.artifacts if a.kind != "shard")
    assert DownloadPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
    run(Download(plan, "cache", api=api).run())
    assert {s["url"]: s["md5"] for s in api.specs} == {a.url: a.md5 for a in plan.artifacts
                                                        if a.url not in plan.texts}


@pytest.mark.parametrize("md5sum", [None, "not-a-digest", 12])
def test_a_manifest_without_a_usable_md5sum_gives_sizes_only(md5sum):
    model = SyntheticModel("synth-n", shards=2, shard_bytes=5_000, seed=5, md5=False)
    manifest = json.loads(model.files[model.manifest_path])
    for r in manifest["records"]:
        if md5sum is not None:
            r["md5sum"] = md5sum
    model.files[model.manifest_path] = json.dumps(manifest).encode()
    api = FakeStoreApi({ORIGIN + p: d for p, d in model.files.items()})
    info = Catalog([], [record(model)], store=api).get(model.name)
    plan = run(make_plan(info, api=api))
    assert [a.md5 for a in plan.artifacts if a.kind == "shard"] == [None, None]
    run(Download(plan, "cache", api=api).run())  # checked by size only, and stored
    assert all(a.url in api.stores[STORE] for a in plan.artifacts if a.kind == "shard")


def test_a_checksum_mismatch_fails_typed_naming_the_file_and_stores_nothing_of_it():
    api, _, manager, _ = setup()
    shard = ORIGIN + A.shard_path(1)
    api.files[shard] = bytes(len(api.files[shard]))  # the same size, other bytes
    with pytest.raises(ChecksumMismatch) as info:
        run(manager.download("synth-a"))
    assert isinstance(info.value, ModelFetchFailed)
    assert shard in str(info.value) and "md5" in str(info.value)
    assert shard not in api.stores[STORE] and shard not in api.staged
    status = run(manager.status("synth-a"))
    assert status.state == "failed" and isinstance(status.error, ChecksumMismatch)


def test_the_bridge_maps_a_checksum_rejection_to_its_typed_error():
    class JsError(Exception):
        pass

    exc = JsError()
    exc.js_error = type("E", (), {"name": "ChecksumMismatch", "message": "u: md5 differs"})()
    error = _storage_error(exc)
    assert type(error) is ChecksumMismatch and str(error) == "u: md5 differs"


def test_a_file_another_download_holds_says_waiting_then_is_found_stored_and_not_fetched():
    api, catalog, _, _ = setup()
    plan = run(make_plan(catalog.get("synth-a"), api=api))
    shard = ORIGIN + A.shard_path(0)

    async def go():
        other = asyncio.Event()
        api.busy[shard] = other
        seen = []
        job = Download(plan, "cache", on_progress=seen.append, api=api)
        task = asyncio.ensure_future(job.run())
        while not seen or seen[-1].phase != "waiting":
            await asyncio.sleep(0)
        waiting = seen[-1]
        api.stores.setdefault(STORE, {})[shard] = len(api.files[shard])  # the other tab commits it
        other.set()
        return waiting, await task, seen

    waiting, final, seen = run(go())
    assert (waiting.waiting, waiting.files_done, waiting.eta) == (1, len(A.files) - 1, None)
    assert final.phase == "done" and final.waiting == 0 and final.bytes_done == A.total_bytes
    assert api.gets[shard] == 0
    phases = [p.phase for p in seen]
    assert phases.index("waiting") < len(phases) - 2 and phases[-2:] == ["verifying", "done"]


def test_a_file_waited_for_only_while_others_stream_is_downloading_not_waiting():
    api, catalog, _, _ = setup()
    plan = run(make_plan(catalog.get("synth-a"), api=api))
    busy, held = ORIGIN + A.shard_path(0), ORIGIN + A.shard_path(1)

    async def go():
        other, gate = asyncio.Event(), asyncio.Event()
        api.busy[busy], api.gate[held] = other, gate
        seen = []
        task = asyncio.ensure_future(Download(plan, "cache", on_progress=seen.append, api=api).run())
        while not seen or seen[-1].waiting != 1 or seen[-1].files_done < len(A.files) - 2:
            await asyncio.sleep(0)
        snapshot = seen[-1]
        other.set()
        gate.set()
        await task
        return snapshot

    assert run(go()).phase == "downloading"


def test_cancel_while_waiting_for_another_download_ends_at_once():
    api, catalog, _, _ = setup()
    plan = run(make_plan(catalog.get("synth-a"), api=api))

    async def go():
        api.busy[ORIGIN + A.shard_path(0)] = asyncio.Event()  # never set: the other tab never ends
        seen = []
        job = Download(plan, "cache", on_progress=seen.append, api=api)
        task = asyncio.ensure_future(job.run())
        while not seen or seen[-1].phase != "waiting":
            await asyncio.sleep(0)
        job.cancel()
        with pytest.raises(Aborted):
            await task
        return seen[-1]

    assert run(go()).phase == "cancelled"


def test_a_plan_saved_without_checksums_is_made_again():
    api, catalog, manager, _ = setup()
    plan = run(make_plan(catalog.get("synth-a"), api=api))
    old = plan.to_json()
    del old["format"]
    for a in old["artifacts"]:
        del a["md5"]
    api.kv[SIZES_STORE] = {"synth-a": old}
    manifest = ORIGIN + A.manifest_path
    before = api.gets[manifest]
    fresh = run(manager.plan("synth-a"))
    assert api.gets[manifest] == before + 1
    assert all(a.md5 for a in fresh.artifacts if a.kind == "shard")
    assert api.kv[SIZES_STORE]["synth-a"]["format"] == PLAN_FORMAT
    # A plan saved in this format is used as it is.
    manager._plans.clear()
    assert run(manager.plan("synth-a")) == fresh and api.gets[manifest] == before + 1
