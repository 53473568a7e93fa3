"""Model manager, downloads and storage accounting in real Chromium, against a synthetic model
served on 127.0.0.1 (tests/browser/model_server.py), with web-llm's own cache helpers as the judge."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import PagePython, PyError, open_app
from tests.browser.model_server import ModelServer, SyntheticModel

MODEL_A = SyntheticModel("synth-a", shards=6, shard_bytes=400_000, seed=1)
MODEL_B = SyntheticModel("synth-b", shards=3, shard_bytes=300_000, seed=2)


@pytest.fixture(scope="session")
def models():
    server = ModelServer(MODEL_A, MODEL_B)
    yield server
    server.close()


def start(page, site, server, backend="cache"):
    watch = open_app(page, site, allowed=(server.origin,))
    py = PagePython(page)
    records = [server.record(MODEL_A), server.record(MODEL_B)]
    py(f"""
import json
from app import ffi
from app.models.catalog import Catalog
from app.models.manager import ModelManager
from app.backends.webllm import WebLLMBackend
catalog = await Catalog.load(extra=json.loads({json.dumps(json.dumps(records))}))
backend = WebLLMBackend(app_config=catalog.app_config(), cache_backend={backend!r})
events = []
manager = ModelManager(catalog, backend, cache_backend={backend!r}, emit=events.append)
progress = []
""")
    return py, watch


def has_model_in_cache(page, server, model, backend):
    """web-llm's own answer, from its exported hasModelInCache."""
    config = {"model_list": [server.record(model)], "cacheBackend": backend}
    return page.evaluate("""async ([id, config]) => {
        const w = await import(new URL('static/vendor/web-llm/index.js', document.baseURI).href);
        return await w.hasModelInCache(id, config);
    }""", [model.name, config])


def stored_bytes(model, backend):
    """What the model occupies once stored: the served bytes, except that web-llm's IndexedDB store
    keeps the tensor manifest as a parsed object (measured as compact JSON)."""
    if backend != "indexeddb":
        return model.total_bytes
    manifest = model.files[model.manifest_path]
    return model.total_bytes + len(json.dumps(json.loads(manifest), separators=(",", ":"))) - len(manifest)


def shard_gets(server, model):
    gets = server.body_requests()
    return [gets[model.shard_path(i)] for i in range(model.shards)]


@pytest.mark.parametrize("backend", ["cache", "indexeddb", "opfs"])
def test_download_fills_webllms_store_and_accounting_matches(page, site, server, backend):
    py, watch = start(page, site, server, backend)
    assert has_model_in_cache(page, server, MODEL_A, backend) is False
    assert py("(await manager.status('synth-a')).state") == "not-downloaded"
    size = py("await manager.download_size('synth-a')")
    assert size == MODEL_A.total_bytes  # known before downloading: manifest sizes + HEAD of the rest
    assert shard_gets(server, MODEL_A) == [0] * MODEL_A.shards

    final = py("""
p = await manager.download('synth-a', on_progress=progress.append)
[p.phase, p.bytes_done, p.bytes_total, p.files_done, p.files_total]
""")
    assert final == ["done", MODEL_A.total_bytes, MODEL_A.total_bytes, len(MODEL_A.files), len(MODEL_A.files)]
    seen = py("[(p.phase, p.bytes_done) for p in progress]")
    done = [b for phase, b in seen if phase == "downloading"]
    assert done == sorted(done), "progress went backwards"
    assert [phase for phase, _ in seen][-2:] == ["verifying", "done"]
    assert has_model_in_cache(page, server, MODEL_A, backend) is True
    # Every file fetched exactly once, and the bytes on the wire are the model's bytes.
    assert all(server.body_requests()[p] == 1 for p in MODEL_A.files), server.body_requests()
    assert sum(server.sent[p] for p in MODEL_A.files) == MODEL_A.total_bytes

    usage = py("u = (await manager.storage.report()).models['synth-a']; [u.bytes, u.staged_bytes, len(u.files)]")
    assert usage == [stored_bytes(MODEL_A, backend), 0, len(MODEL_A.files)]
    assert py("(await manager.status('synth-a')).state") == "downloaded"
    assert py("[e['phase'] for e in events if e['event'] == 'app.model.download'][-1]") == "done"

    # A second download finds everything stored and fetches nothing.
    server.reset()
    py("await manager.download('synth-a')")
    assert server.body_requests() == {}
    watch.assert_clean()


def test_dropped_connection_is_typed_and_resume_fetches_only_what_is_missing(page, site, server):
    py, watch = start(page, site, server)
    shard = MODEL_A.shard_path(3)
    # The drop comes once the page has read the first 150 kB (a browser may discard bytes it had
    # not yet handed to the page when a connection breaks).
    server.drop_after[shard] = server.hold_after[shard] = 150_000
    py(f"""
import asyncio
async def outcome(coro):
    try:
        return await coro
    except Exception as exc:
        return exc
task = asyncio.ensure_future(outcome(manager.download('synth-a')))
while 'synth-a' not in manager._jobs or manager._jobs['synth-a'].file_bytes.get({server.url(shard)!r}, 0) < 150_000:
    await asyncio.sleep(0.02)   # poll until the page holds the bytes sent before the drop
""")
    server.release()
    assert py("type(await task).__name__") == "ModelFetchFailed"
    assert "ModelFetchFailed" in py("type((await manager.status('synth-a')).error).__name__")
    # No partial entry in web-llm's store: every stored file is whole.
    stored = py("from app.models.download import stored_sizes; await stored_sizes('cache')")
    for url, n in stored.items():
        assert n == len(server.files[url.removeprefix(server.origin)]), url
    assert server.url(shard) not in stored
    assert has_model_in_cache(page, server, MODEL_A, "cache") is False
    assert py("(await manager.status('synth-a')).state") == "failed"

    py("await manager.download('synth-a')")
    assert has_model_in_cache(page, server, MODEL_A, "cache") is True
    # Over both attempts, each byte of the model crossed the wire once: no refetch of whole files,
    # and the broken shard resumed where it broke.
    assert sum(server.sent[p] for p in MODEL_A.files) == MODEL_A.total_bytes
    assert (shard, 150_000) in server.ranges
    # The one error the page logged is the drop itself.
    assert watch.errors == ["Failed to load resource: net::ERR_CONTENT_LENGTH_MISMATCH"]
    watch.errors.clear()
    watch.assert_clean()


def test_cancel_then_resume(page, site, server):
    py, watch = start(page, site, server)
    shard = MODEL_A.shard_path(1)
    server.hold_after[shard] = 200_000
    assert py("""
import asyncio
task = asyncio.ensure_future(manager.download('synth-a', on_progress=progress.append))
while not progress or progress[-1].bytes_done < 200_000 or progress[-1].files_done < len(manager._plans['synth-a'].artifacts) - 1:
    await asyncio.sleep(0.02)   # poll until all but the held shard are in
manager.cancel('synth-a')
type((await asyncio.gather(task, return_exceptions=True))[0]).__name__
""") == "Aborted"
    server.release()
    assert py("progress[-1].phase") == "cancelled"
    status = py("s = await manager.status('synth-a'); [s.state, s.bytes_stored]")
    assert status[0] == "partial" and status[1] >= MODEL_A.total_bytes - len(MODEL_A.files[shard]) + 200_000
    assert has_model_in_cache(page, server, MODEL_A, "cache") is False

    py("await manager.download('synth-a')")
    assert has_model_in_cache(page, server, MODEL_A, "cache") is True
    assert sum(server.sent[p] for p in MODEL_A.files) == MODEL_A.total_bytes
    assert (shard, 200_000) in server.ranges
    watch.assert_clean()


SEGMENT = 150_000  # the app's Range segment is 8 MiB; these 400 kB shards come in 3 segments each


@pytest.mark.parametrize("backend", ["cache", "indexeddb", "opfs"])
def test_a_download_in_range_segments_fills_each_store_web_llm_reads(page, site, server, backend):
    """Shards in Range segments, assembled from Blobs, land whole in every kind of store: web-llm's
    own hasModelInCache says so, and the bytes stored are the served ones, each sent once."""
    py, watch = start(page, site, server, backend)
    py(f"manager.segment_bytes = {SEGMENT}")
    assert py("(await manager.download('synth-a', on_progress=progress.append)).phase") == "done"
    shard = MODEL_A.shard_path(0)
    assert [r for p, r, _ in server.range_headers if p == shard] == [
        f"bytes={o}-{min(o + SEGMENT, len(MODEL_A.files[shard])) - 1}" for o in range(0, len(MODEL_A.files[shard]), SEGMENT)]
    assert sum(server.sent[p] for p in MODEL_A.files) == MODEL_A.total_bytes
    assert has_model_in_cache(page, server, MODEL_A, backend) is True
    usage = py("u = (await manager.storage.report()).models['synth-a']; [u.bytes, u.staged_bytes, len(u.files)]")
    assert usage == [stored_bytes(MODEL_A, backend), 0, len(MODEL_A.files)]
    done = [b for phase, b in py("[(p.phase, p.bytes_done) for p in progress]") if phase == "downloading"]
    assert done == sorted(done) and done[-1] == MODEL_A.total_bytes
    watch.assert_clean()


def test_a_reload_during_a_segmented_download_resumes_after_the_staged_segments(page, site, server):
    """The segments received are staged while the download runs; after a reload the next download
    asks for the rest only."""
    py, watch = start(page, site, server)
    py(f"manager.segment_bytes = {SEGMENT}")
    shard = MODEL_A.shard_path(2)
    server.hold_after[shard] = 2 * SEGMENT
    url = server.url(shard)
    py(f"""
import asyncio
task = asyncio.ensure_future(manager.download('synth-a', on_progress=progress.append))
while (await ffi.staging_list()).get({url!r}, 0) < {2 * SEGMENT} or progress[-1].files_done < progress[-1].files_total - 1:
    await asyncio.sleep(0.05)   # poll until the rest is in and the held shard's two segments are staged
""")
    page.reload()
    server.release()
    page.wait_for_selector("body[data-state=ready]")
    py, _ = start(page, site, server)
    py(f"manager.segment_bytes = {SEGMENT}")
    assert py("(await manager.status('synth-a')).state") == "partial"
    py("await manager.download('synth-a')")
    assert has_model_in_cache(page, server, MODEL_A, "cache") is True
    assert (shard, f"bytes={2 * SEGMENT}-{min(3 * SEGMENT, len(MODEL_A.files[shard])) - 1}",
            server.etag(shard)) in server.range_headers
    assert server.sent[shard] == len(MODEL_A.files[shard])
    watch.assert_clean()


def test_reload_mid_download_then_resume(page, site, server):
    py, watch = start(page, site, server)
    shard = MODEL_A.shard_path(2)
    server.hold_after[shard] = 250_000
    url = server.url(shard)
    py(f"""
import asyncio
task = asyncio.ensure_future(manager.download('synth-a', on_progress=progress.append))
while (await ffi.staging_list()).get({url!r}, 0) < 250_000 or progress[-1].files_done < progress[-1].files_total - 1:
    await asyncio.sleep(0.05)   # poll until the rest is in and the held shard's first part is staged
""")
    page.reload()
    server.release()
    page.wait_for_selector("body[data-state=ready]")
    py, _ = start(page, site, server)
    assert py("(await manager.status('synth-a')).state") == "partial"
    py("await manager.download('synth-a')")
    assert has_model_in_cache(page, server, MODEL_A, "cache") is True
    assert (shard, 250_000) in server.ranges
    assert server.sent[shard] == len(MODEL_A.files[shard])
    assert all(server.body_requests()[p] == 1 for p in MODEL_A.files if p != shard)
    watch.assert_clean()


# Chromium enforces a quota set through the DevTools protocol, but navigator.storage.estimate() keeps
# reporting its usual figure (it does not reveal real quotas to pages). So the refusal up front is
# tested with estimate() reporting the enforced quota (a stand-in for a browser that tells the truth,
# e.g. a nearly full disk); the enforcement itself is tested with the real, unreported quota.
REPORT_ENFORCED_QUOTA = """
const QUOTA = %d;
const real = StorageManager.prototype.estimate;
StorageManager.prototype.estimate = async function () {
  const e = await real.call(this);
  return {usage: e.usage, quota: QUOTA};
};
"""


def limit_quota(page, site, quota):
    cdp = page.context.new_cdp_session(page)
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": site.origin, "quotaSize": quota})
    assert cdp.send("Storage.getUsageAndQuota", {"origin": site.origin})["overrideActive"]


def test_quota_too_small_is_refused_before_any_byte_is_written(page, site, server):
    page.add_init_script(REPORT_ENFORCED_QUOTA % 1_500_000)
    py, watch = start(page, site, server)
    limit_quota(page, site, 1_500_000)
    py("await manager.download('synth-b')")  # a small model that fits is stored
    server.reset()
    with pytest.raises(PyError) as info:
        py("await manager.download('synth-a')")
    assert info.value.type == "InsufficientStorage"
    assert "QuotaExceeded" in info.value.mro
    needed, available, evictable = py("e = (await manager.status('synth-a')).error; [e.needed, e.available, e.evictable]")
    assert needed == MODEL_A.total_bytes and available < needed and evictable == ["synth-b"]
    assert shard_gets(server, MODEL_A) == [0] * MODEL_A.shards
    assert not any("synth-a" in f for f in py("[f.url for f in await manager.storage.files()]"))
    assert py("await ffi.staging_list()") == {}
    assert has_model_in_cache(page, server, MODEL_B, "cache") is True  # nothing stored was lost
    watch.assert_clean()


def test_quota_hit_mid_download_is_typed_and_leaves_nothing_behind(page, site, server):
    py, watch = start(page, site, server)
    limit_quota(page, site, 1_500_000)  # enforced, not reported: the refusal comes from the write
    py("await manager.download('synth-b')")
    with pytest.raises(PyError) as info:
        py("await manager.download('synth-a')")
    assert info.value.type == "QuotaExceeded"
    assert not any("synth-a" in f for f in py("[f.url for f in await manager.storage.files()]"))
    assert py("await ffi.staging_list()") == {}
    assert has_model_in_cache(page, server, MODEL_B, "cache") is True
    watch.assert_clean()


@pytest.mark.parametrize("backend", ["cache", "indexeddb", "opfs"])
def test_delete_removes_every_entry(page, site, server, backend):
    py, watch = start(page, site, server, backend)
    py("await manager.download('synth-a'); await manager.download('synth-b')")
    freed = py("await manager.delete('synth-a')")
    assert freed == stored_bytes(MODEL_A, backend)
    urls = py("[f.url for f in await manager.storage.files()]")
    assert not any("synth-a" in u for u in urls), urls  # config, lib, tokenizer, manifest, shards
    assert has_model_in_cache(page, server, MODEL_A, backend) is False
    assert has_model_in_cache(page, server, MODEL_B, backend) is True
    assert py("'synth-a' in (await manager.storage.report()).models") is False
    assert py("(await manager.status('synth-a')).state") == "not-downloaded"
    watch.assert_clean()


def test_lru_eviction_removes_least_recently_used_first(page, site, server):
    py, watch = start(page, site, server)
    py("""
import itertools
from app.storage import Storage
# A clock that always moves on: two touches within one millisecond must still be ordered.
manager.storage = Storage(catalog, clock=itertools.count(1).__next__)
await manager.download('synth-a'); await manager.download('synth-b')
await manager.storage.touch('synth-b')
await manager.storage.touch('synth-a')   # a is the most recent
""")
    assert py("await manager.evict(1)") == ["synth-b", "synth-a"]
    py("await manager.download('synth-a'); await manager.download('synth-b')")
    py("await manager.storage.touch('synth-a'); await manager.storage.touch('synth-b')")
    # Down to what one model takes: the least recently used (a) goes, b stays.
    assert py(f"await manager.evict({MODEL_B.total_bytes})") == ["synth-a"]
    assert has_model_in_cache(page, server, MODEL_B, "cache") is True
    # Clear all: every file web-llm stored goes, staged parts too.
    assert py("await manager.storage.clear()") == MODEL_B.total_bytes
    assert py("await manager.storage.files()") == []
    assert has_model_in_cache(page, server, MODEL_B, "cache") is False
    watch.assert_clean()


def test_user_model_is_listed_and_survives_a_reload(page, site, server):
    py, watch = start(page, site, server)
    record = server.record(MODEL_B, model_id="my-own-model")
    py(f"await catalog.add(json.loads({json.dumps(json.dumps(record))}))")
    with pytest.raises(PyError) as info:
        py("await catalog.add({'model_id': 'bad', 'model': 'not a url', 'model_lib': 'x'})")
    assert info.value.type == "InvalidRequest"
    page.reload()
    page.wait_for_selector("body[data-state=ready]")
    py = PagePython(page)
    info = py("""
from app import ffi
from app.models.catalog import Catalog
catalog = await Catalog.load()
m = catalog.get('my-own-model')
[m.source, m.model_url, 'bad' in catalog]
""")
    assert info == ["user", record["model"], False]
    assert py("len(catalog) > 100")  # web-llm's prebuilt list is there too
    # What fits this GPU, judged from the real adapter (SwiftShader here: no shader-f16).
    fits = py("""
from app.runtime import WebGPUReport
gpu = WebGPUReport.from_probe(await ffi.probe_webgpu())
[catalog.fit(catalog.get(i), gpu).ok for i in ('Llama-3.2-1B-Instruct-q4f16_1-MLC', 'Llama-3.2-1B-Instruct-q4f32_1-MLC')]
""")
    assert fits == [False, True]
    watch.assert_clean()


def test_load_unload_and_a_model_added_at_run_time_through_the_engine(page, serve):
    """Loading goes through web-llm's worker engine (the double: only model execution is faked)."""
    from tests.browser.double import CHAT_MODEL, FAIL_NETWORK_MODEL, OVERLAY, app_config

    site = serve("/", overlay=OVERLAY)
    watch = open_app(page, site)
    py = PagePython(page)
    config = app_config(site.origin)
    added = dict(next(m for m in config["model_list"] if m["model_id"] == CHAT_MODEL), model_id="Added-q4f32_1-MLC")
    py(f"""
import json
from app.models.catalog import Catalog
from app.models.manager import ModelManager
from app.backends.webllm import WebLLMBackend
catalog = await Catalog.load(extra=json.loads({json.dumps(json.dumps(config["model_list"]))}))
manager = ModelManager(catalog, WebLLMBackend(app_config=catalog.app_config()), emit=(events := []).append)
await manager.load({CHAT_MODEL!r})
""")
    assert py(f"(await manager.status({CHAT_MODEL!r})).state") == "loaded"
    loads = py("[e['progress'] for e in events if e['event'] == 'app.model.load']")
    assert loads and loads[-1] == 1
    assert py(f"{CHAT_MODEL!r} in await manager.storage.last_used()")

    with pytest.raises(PyError) as info:
        py(f"await manager.load({FAIL_NETWORK_MODEL!r})")
    assert info.value.type == "ModelFetchFailed"
    assert py(f"(await manager.status({FAIL_NETWORK_MODEL!r})).state") == "failed"

    # A model added after the engine started reaches the worker before it is loaded.
    py(f"await catalog.add(json.loads({json.dumps(json.dumps(added))})); await manager.load('Added-q4f32_1-MLC')")
    assert py("(await manager.status('Added-q4f32_1-MLC')).state") == "loaded"
    py("await manager.unload()")
    assert py("(await manager.status('Added-q4f32_1-MLC')).state") != "loaded"
    watch.assert_clean()
