"""Storage faults in real Chromium: catalog ids that share one model folder (web-llm's ``…-MLC`` and
``…-MLC-1k`` twins) must not take each other's files, or the loaded model's.

The synthetic model server (tests/browser/model_server.py) serves the files, which the page downloads
for real into web-llm's Cache API store; the full model is loaded through web-llm's real worker with
the engine double (it fakes only model execution and fetches nothing); web-llm's own
``hasModelInCache`` judges what is still stored.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import PagePython, open_app
from tests.browser.double import OVERLAY
from tests.browser.model_server import ModelServer, SyntheticModel

FULL = SyntheticModel("synth-x", shards=4, shard_bytes=300_000, seed=31)
TWIN = "synth-x-1k"  # FULL's folder and library under another id
OTHER = SyntheticModel("synth-u", shards=2, shard_bytes=200_000, seed=32)


@pytest.fixture(scope="module")
def models():
    server = ModelServer(FULL, OTHER)
    yield server
    server.close()


def in_cache(page, record: dict) -> bool:
    """web-llm's own answer (its exported hasModelInCache) for the Cache API store."""
    config = {"model_list": [record], "cacheBackend": "cache"}
    return page.evaluate("""async ([id, config]) => {
        const w = await import(new URL('static/vendor/web-llm/index.js', document.baseURI).href);
        return await w.hasModelInCache(id, config);
    }""", [record["model_id"], config])


def test_twin_model_ids_evicted_and_deleted_keep_the_loaded_models_files(page, serve, server):
    site = serve("/", overlay=OVERLAY)
    watch = open_app(page, site, allowed=(server.origin,))
    full = server.record(FULL)
    twin = server.record(FULL, model_id=TWIN, overrides={"context_window_size": 1024})
    other = server.record(OTHER)
    py = PagePython(page)
    py(f"""
import itertools, json
from app.models.catalog import Catalog
from app.models.manager import ModelManager
from app.backends.webllm import WebLLMBackend
from app.storage import Storage
catalog = await Catalog.load(extra=json.loads({json.dumps(json.dumps([full, twin, other]))}))
manager = ModelManager(catalog, WebLLMBackend(app_config=catalog.app_config()),
                       storage=Storage(catalog, clock=itertools.count(1).__next__))
for model_id in ('synth-x', 'synth-x-1k', 'synth-u'):
    await manager.download(model_id)
await manager.storage.touch('synth-u')
await manager.storage.touch('synth-x-1k')   # the twin is more recent than the unrelated model
await manager.load('synth-x')               # through web-llm's worker (engine double)
""")
    assert py("(await manager.status('synth-x')).state") == "loaded"
    # The report lists the shared files under both ids, says they are shared, and counts them once.
    report = py("""
r = await manager.storage.report()
[r.total_bytes, {m: u.bytes for m, u in r.models.items()}, sorted(f.url for f in r.shared),
 sorted({tuple(o) for o in r.shared.values()})]
""")
    assert report[0] == FULL.total_bytes + OTHER.total_bytes
    assert report[1] == {"synth-x": FULL.total_bytes, TWIN: FULL.total_bytes, "synth-u": OTHER.total_bytes}
    assert report[2] == sorted(server.url(p) for p in FULL.files)
    assert report[3] == [["synth-x", TWIN]]

    # Down to what the loaded model takes: the unrelated model goes, the twin needs no eviction.
    assert py(f"[str(m) for m in await manager.evict({FULL.total_bytes})]") == ["synth-u"]
    assert in_cache(page, other) is False
    assert in_cache(page, full) is True

    # Deleting the twin frees nothing (every file is the loaded model's too): it is only forgotten.
    assert py(f"await manager.delete({TWIN!r})") == 0
    assert in_cache(page, full) is True
    stored = py("[f.url for f in await manager.storage.files()]")
    assert sorted(stored) == sorted(server.url(p) for p in FULL.files)
    assert py("(await manager.status('synth-x')).state") == "loaded"
    assert py(f"(await manager.status({TWIN!r})).state") == "not-downloaded"
    assert py("r = await manager.storage.report(); [r.total_bytes, list(r.models), len(r.shared)]") == [
        FULL.total_bytes, ["synth-x"], 0]

    # Evicting everything still never touches the loaded model.
    assert py("await manager.evict(0)") == []
    assert in_cache(page, full) is True
    watch.assert_clean()
