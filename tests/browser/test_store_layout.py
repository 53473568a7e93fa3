"""Downloads land where the vendored web-llm release reads, for the oldest supported release and the
pinned one: a site built with ``--web-llm 0.2.79`` (dist_of) and dist/ (0.2.86), each given a model
served in its release's layout (ndarray-cache.json / tensor-cache.json). The judge is that release's
own ``hasModelInCache``, from the module the page vendors; the model server says which manifest
names were asked for.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import PagePython, open_app
from tests.browser.model_server import ModelServer, SyntheticModel
from tests.browser.ui_helpers import open_sheet

MANIFESTS = ("ndarray-cache.json", "tensor-cache.json")
# What each release reads (see app/models/layout.py): written out here, not taken from the layout,
# so the test judges it.
RELEASES = {
    "0.2.79": {"manifest": "ndarray-cache.json", "config_in_indexeddb": "object",
               "app_config": {"cache": {"useIndexedDBCache": False},
                              "indexeddb": {"useIndexedDBCache": True}}},
    "0.2.86": {"manifest": "tensor-cache.json", "config_in_indexeddb": "ArrayBuffer",
               "app_config": {"cache": {"cacheBackend": "cache"}, "indexeddb": {"cacheBackend": "indexeddb"},
                              "opfs": {"cacheBackend": "opfs"}}},
}
MODELS = {release: SyntheticModel(f"synth-{release.replace('.', '')}", shards=3, shard_bytes=200_000, seed=7,
                                  manifest=facts["manifest"]) for release, facts in RELEASES.items()}


@pytest.fixture(scope="session")
def models():
    server = ModelServer(*MODELS.values())
    yield server
    server.close()


def open_release(page, serve, dist_of, server, release):
    """The app as built for ``release``, with PagePython ready and the catalog holding its model."""
    site = serve("/", root=dist_of(release))
    watch = open_app(page, site, allowed=(server.origin,))
    py = PagePython(page)
    py(f"""
import json
from app import ffi
from app.models.catalog import Catalog
versions = await ffi.fetch_json("static/vendor/VERSIONS.json")
catalog = await Catalog.load(extra=json.loads({json.dumps(json.dumps([server.record(MODELS[release])]))}))
""")
    return py, watch


def download_in_page(py, model_id: str, backend: str) -> list:
    """Download as the composition root will wire it: the layout of the page's vendored release,
    given to the manager and the backend. (Through the Models panel: click Download instead.)"""
    return py(f"""
from app.backends.webllm import WebLLMBackend
from app.models.layout import StoreLayout
from app.models.manager import ModelManager
layout = StoreLayout.for_version(versions["@mlc-ai/web-llm"])
backend = WebLLMBackend(app_config=catalog.app_config(), layout=layout, cache_backend={backend!r})
manager = ModelManager(catalog, backend, layout=layout, cache_backend={backend!r})
p = await manager.download({model_id!r})
[layout.release, p.phase, p.files_done, p.files_total, (await manager.status({model_id!r})).state]
""")


def has_model_in_cache(page, server, model, app_config) -> bool:
    """The vendored web-llm's own answer."""
    config = {"model_list": [server.record(model)], **app_config}
    return page.evaluate("""async ([id, config]) => {
        const w = await import(new URL('static/vendor/web-llm/index.js', document.baseURI).href);
        return await w.hasModelInCache(id, config);
    }""", [model.name, config])


def config_in_indexeddb(page, server, model) -> str:
    """How the config sits in web-llm's IndexedDB store: parsed ("object": 0.2.79 reads it as json)
    or bytes ("ArrayBuffer": 0.2.83+ read it as arraybuffer)."""
    return page.evaluate("""(url) => new Promise((resolve, reject) => {
        const open = indexedDB.open('webllm/config', 1);
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
            const get = open.result.transaction('urls').objectStore('urls').get(url);
            get.onsuccess = () => { const d = get.result.data; open.result.close();
                                    resolve(d instanceof ArrayBuffer ? 'ArrayBuffer' : typeof d); };
            get.onerror = () => reject(get.error);
        };
    })""", server.url(model.base_path + "mlc-chat-config.json"))


@pytest.mark.parametrize("release, backend", [
    ("0.2.79", "cache"), ("0.2.79", "indexeddb"),
    ("0.2.86", "cache"), ("0.2.86", "indexeddb"), ("0.2.86", "opfs"),
])
def test_download_is_in_the_vendored_releases_store(page, serve, dist_of, server, release, backend):
    model, facts = MODELS[release], RELEASES[release]
    app_config = facts["app_config"][backend]
    py, watch = open_release(page, serve, dist_of, server, release)
    assert py('versions["@mlc-ai/web-llm"]') == release
    assert has_model_in_cache(page, server, model, app_config) is False

    done = download_in_page(py, model.name, backend)
    assert done == [release, "done", len(model.files), len(model.files), "downloaded"]
    assert has_model_in_cache(page, server, model, app_config) is True
    asked = {path.rsplit("/", 1)[-1] for path in server.requests}
    assert facts["manifest"] in asked
    assert not asked & (set(MANIFESTS) - {facts["manifest"]}), server.requests
    # Every file was fetched once: the manifest and config were committed as read while planning.
    assert all(server.body_requests()[p] == 1 for p in model.files), server.body_requests()
    if backend == "indexeddb":
        assert config_in_indexeddb(page, server, model) == facts["config_in_indexeddb"]
    watch.assert_clean()


@pytest.mark.parametrize("release", ["0.2.79", "0.2.86"])
def test_the_models_panel_downloads_into_the_vendored_releases_store(page, serve, dist_of, server, release,
                                                                      tmp_path_factory):
    """The page's own wiring (app/session.py reads VERSIONS.json): the user clicks Download."""
    model, facts = MODELS[release], RELEASES[release]
    config = tmp_path_factory.mktemp(f"panel-{release}") / "chat-config.json"
    config.write_text(json.dumps({"model": None, "app_config": {"model_list": [server.record(model)]}}))
    site = serve("/", root=dist_of(release), overlay={"static/chat-config.json": config})
    watch = open_app(page, site, allowed=(server.origin,))
    page.wait_for_selector("#chat[data-state=ready]")
    open_sheet(page, "models")
    page.wait_for_selector("#models[data-state=ready]")
    page.fill("#model-search", model.name)
    page.locator(f"#model-list li[data-id='{model.name}'] button.pick").click()
    page.wait_for_selector(f"#model-detail[data-id='{model.name}']")
    page.click("#model-download")
    page.wait_for_selector("#model-detail[data-state=downloaded]", timeout=60_000)
    assert has_model_in_cache(page, server, model, facts["app_config"]["cache"]) is True
    asked = {path.rsplit("/", 1)[-1] for path in server.requests}
    assert facts["manifest"] in asked and not asked & (set(MANIFESTS) - {facts["manifest"]}), server.requests
    watch.assert_clean()
