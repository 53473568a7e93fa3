"""web-llm's store layout per release (app/models/layout.py), and plans and downloads built from it.

The facts are the ones read in each release's lib/index.js (cited in the module's docstring); the
browser tests (tests/browser/test_store_layout.py) check them against the real 0.2.79 and 0.2.86.
"""

from __future__ import annotations

import hashlib

import pytest

from app.errors import UsageError
from app.models.catalog import Catalog
from app.models.download import Download, DownloadPlan, make_plan
from app.models.layout import SCOPES, StoreLayout, clean_model_url, parse_version
from app.models.manager import ModelManager
from app.storage import Storage
from tests.browser.model_server import SyntheticModel
from tests.unit.conftest import run
from tests.unit.models.fake_store import FakeStoreApi

ORIGIN = "https://models.test"
OLD, PINNED = StoreLayout.for_version("0.2.79"), StoreLayout()


# ------------------------------------------------------------------ versions


@pytest.mark.parametrize("text, expected", [
    ("0.2.79", (0, 2, 79)), ("0.2.80", (0, 2, 80)), ("0.2.83", (0, 2, 83)), ("0.2.86", (0, 2, 86)),
    ("^0.2.86", (0, 2, 86)),
])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


def test_parse_version_rejects_text_without_a_version():
    with pytest.raises(ValueError, match="not a web-llm version"):
        parse_version("latest")


def test_for_version_takes_text_or_a_tuple_and_the_default_is_the_pinned_release():
    assert StoreLayout.for_version("0.2.79") == StoreLayout.for_version((0, 2, 79)) == OLD
    assert StoreLayout() == StoreLayout.for_version("0.2.86")
    assert OLD.release == "0.2.79"


def test_releases_older_than_supported_are_refused():
    with pytest.raises(UsageError, match="oldest supported"):
        StoreLayout.for_version("0.2.78")


# ------------------------------------------------------------------ per-release facts


@pytest.mark.parametrize("release, manifest", [
    ("0.2.79", "ndarray-cache.json"), ("0.2.80", "tensor-cache.json"),
    ("0.2.83", "tensor-cache.json"), ("0.2.86", "tensor-cache.json"),
])
def test_tensor_manifest_name_follows_the_rename_in_0_2_80(release, manifest):
    layout = StoreLayout.for_version(release)
    assert layout.manifest_name == manifest
    assert layout.other_manifest_names == tuple({"ndarray-cache.json", "tensor-cache.json"} - {manifest})


@pytest.mark.parametrize("release, backend, expected", [
    ("0.2.79", "cache", {"useIndexedDBCache": False}),
    ("0.2.79", "indexeddb", {"useIndexedDBCache": True}),
    ("0.2.82", "indexeddb", {"useIndexedDBCache": True}),
    ("0.2.83", "cache", {"cacheBackend": "cache"}),
    ("0.2.83", "indexeddb", {"cacheBackend": "indexeddb"}),
    ("0.2.84", "opfs", {"cacheBackend": "opfs"}),
    ("0.2.86", "indexeddb", {"cacheBackend": "indexeddb"}),
    ("0.2.86", "opfs", {"cacheBackend": "opfs"}),
])
def test_cache_options_per_release(release, backend, expected):
    assert StoreLayout.for_version(release).app_config_options(backend) == expected


@pytest.mark.parametrize("release", ["0.2.79", "0.2.80", "0.2.83"])
def test_opfs_before_0_2_84_is_a_usage_error(release):
    layout = StoreLayout.for_version(release)
    assert "opfs" not in layout.backends
    with pytest.raises(UsageError, match="no OPFS cache"):
        layout.app_config_options("opfs")


@pytest.mark.parametrize("layout, expected", [
    (OLD, {"useIndexedDBCache": True}), (PINNED, {"cacheBackend": "indexeddb"}),
])
def test_an_app_config_keeps_only_the_releases_store_keys(layout, expected):
    prebuilt = {"model_list": [], "cacheBackend": "cache", "useIndexedDBCache": False}
    assert layout.app_config_with(prebuilt, "indexeddb") == {"model_list": [], **expected}
    assert prebuilt["cacheBackend"] == "cache"  # not changed in place


def test_unknown_store_is_a_usage_error():
    with pytest.raises(UsageError, match="cache backend must be one of"):
        PINNED.app_config_options("localStorage")


@pytest.mark.parametrize("release, config_storetype", [
    ("0.2.79", "json"), ("0.2.82", "json"), ("0.2.83", "arraybuffer"), ("0.2.86", "arraybuffer"),
])
def test_storetypes_the_config_moved_to_bytes_in_0_2_83(release, config_storetype):
    layout = StoreLayout.for_version(release)
    assert layout.storetype("config") == config_storetype
    assert layout.storetype("manifest") == "json"
    assert {layout.storetype(k) for k in ("tokenizer", "lib", "shard")} == {"arraybuffer"}


@pytest.mark.parametrize("layout", [OLD, PINNED])
def test_scopes_and_keys_are_the_same_in_both_releases(layout):
    base = layout.base_url("https://hf.co/org/m")
    assert base == "https://hf.co/org/m/resolve/main/"
    config = (base + "mlc-chat-config.json", "webllm/config", layout.storetype("config"))
    assert layout.artifact("config", layout.config_url(base)) == config
    assert layout.artifact("lib", "https://libs/m.wasm")[1] == "webllm/wasm"
    assert {layout.scope(k) for k in ("manifest", "tokenizer", "shard")} == {"webllm/model"}
    assert layout.shard_url(base, "params_shard_0.bin") == base + "params_shard_0.bin"
    assert layout.tokenizer_url(base, ["tokenizer.model", "tokenizer.json"]) == base + "tokenizer.json"
    assert layout.tokenizer_url(base, ["tokenizer.model"]) == base + "tokenizer.model"
    assert layout.tokenizer_url(base, []) is None


def test_clean_model_url_matches_webllms_rule():
    assert clean_model_url("https://hf.co/org/m") == "https://hf.co/org/m/resolve/main/"
    assert clean_model_url("https://hf.co/org/m/") == "https://hf.co/org/m/resolve/main/"
    assert clean_model_url("https://hf.co/org/m/resolve/v2/") == "https://hf.co/org/m/resolve/v2/"


@pytest.mark.parametrize("url, cached", [
    ("https://host/libs/m.wasm", True), ("http://127.0.0.1:8000/m.wasm", True),
    ("http://localhost:8000/m.wasm", False), ("libs/m.wasm", False),
])
@pytest.mark.parametrize("layout", [OLD, PINNED])
def test_which_model_libraries_web_llm_caches(layout, url, cached):
    assert layout.lib_is_cached(url) is cached


def test_only_0_2_86_knows_model_package_manifests():
    assert PINNED.model_manifest and not OLD.model_manifest


# ------------------------------------------------------------------ stores, as specs for static/storage.js


@pytest.mark.parametrize("layout", [OLD, PINNED])
def test_cache_and_indexeddb_stores_are_named_after_the_scope(layout):
    assert layout.store("cache", "webllm/wasm") == {"type": "cache", "name": "webllm/wasm"}
    assert layout.store("indexeddb", "webllm/model") == {
        "type": "indexeddb", "database": "webllm/model", "version": 1, "objectStore": "urls",
        "keyPath": "url", "valueField": "data"}


@pytest.mark.parametrize("release, record_suffix, size_field", [
    ("0.2.84", ".meta.json", None), ("0.2.85", ".record.json", "nbytes"),
    ("0.2.86", ".record.json", "nbytes"),
])
def test_opfs_paths_and_records_per_release(release, record_suffix, size_field):
    layout = StoreLayout.for_version(release)
    spec = layout.store("opfs", "webllm/model")
    assert spec["directory"] == ["tvmjs-opfs-store", "webllm", "model"]
    files = (spec["payloadSuffix"], spec["recordSuffix"], spec["sizeField"])
    assert files == (".bin", record_suffix, size_field)
    url = "https://hf.co/org/m/resolve/main/params_shard_0.bin"
    entry = layout.entry("opfs", url)
    assert entry["file"] == hashlib.sha256(url.encode()).hexdigest()
    assert entry["record"] == {"url": url}


def test_a_store_the_release_lacks_or_an_unknown_scope_is_refused():
    with pytest.raises(UsageError):
        OLD.store("opfs", "webllm/model")
    with pytest.raises(ValueError):
        PINNED.store("cache", "tvmjs")


def test_only_indexeddb_json_entries_differ_in_size_from_the_served_file():
    assert not PINNED.keeps_served_bytes("indexeddb", "json")
    assert PINNED.keeps_served_bytes("indexeddb", "arraybuffer")
    assert PINNED.keeps_served_bytes("cache", "json") and PINNED.keeps_served_bytes("opfs", "json")


# ------------------------------------------------------------------ plans and downloads per release


def served_model(layout: StoreLayout, name: str = "synth-a") -> tuple[FakeStoreApi, Catalog]:
    model = SyntheticModel(name, shards=3, shard_bytes=5_000, manifest=layout.manifest_name)
    api = FakeStoreApi({ORIGIN + p: d for p, d in model.files.items()})
    record = {"model": f"{ORIGIN}/{model.org}/{name}", "model_id": name,
              "model_lib": f"{ORIGIN}/libs/{name}-webgpu.wasm", "vram_required_MB": 300}
    return api, Catalog([], [record], store=api)


@pytest.mark.parametrize("layout", [OLD, PINNED])
def test_a_plan_names_the_releases_manifest_and_storetypes(layout):
    api, catalog = served_model(layout)
    plan = run(make_plan(catalog.get("synth-a"), layout=layout, api=api))
    base = f"{ORIGIN}/synth/synth-a/resolve/main/"
    by_kind = {a.kind: a for a in plan.artifacts}
    assert by_kind["manifest"].url == base + layout.manifest_name
    assert (by_kind["manifest"].scope, by_kind["manifest"].storetype) == ("webllm/model", "json")
    assert by_kind["config"].storetype == layout.storetype("config")
    assert plan.release == layout.release
    assert not any(name in url for url in api.gets for name in layout.other_manifest_names)
    assert DownloadPlan.from_json(plan.to_json()) == plan


def test_a_plan_for_the_other_release_asks_for_a_manifest_that_is_not_there():
    api, catalog = served_model(OLD)  # served in 0.2.79's layout
    from app.errors import ModelFetchFailed

    with pytest.raises(ModelFetchFailed, match="404"):
        run(make_plan(catalog.get("synth-a"), layout=PINNED, api=api))


@pytest.mark.parametrize("layout", [OLD, PINNED])
@pytest.mark.parametrize("backend", ["cache", "indexeddb"])
def test_a_download_writes_where_the_release_reads(layout, backend):
    api, catalog = served_model(layout)
    plan = run(make_plan(catalog.get("synth-a"), layout=layout, api=api))
    run(Download(plan, backend, layout=layout, api=api).run())
    every = [*api.specs, *({"store": s, "entry": e} for s, e in api.put_texts)]
    for spec in every:
        artifact = next(a for a in plan.artifacts if a.url == spec["entry"]["key"])
        assert spec["store"] == layout.store(backend, artifact.scope)
        assert spec["entry"]["storetype"] == layout.storetype(artifact.kind)
    assert len(every) == len(plan.artifacts)
    stored = {k for (t, _), entries in api.stores.items() if t == backend for k in entries}
    assert stored == {a.url for a in plan.artifacts}


def test_the_manager_takes_a_layout_and_refuses_a_store_its_release_lacks():
    api, catalog = served_model(OLD)
    with pytest.raises(UsageError, match="no OPFS cache"):
        ModelManager(catalog, object(), layout=OLD, cache_backend="opfs", api=api)
    manager = ModelManager(catalog, type("B", (), {"loaded": None})(), layout=OLD, api=api)
    assert manager.storage.layout == OLD
    run(manager.download("synth-a"))
    assert run(manager.status("synth-a")).state == "downloaded"
    assert (api.stores.keys() >= {("cache", s) for s in SCOPES})


def test_a_plan_remembered_for_another_release_is_made_again():
    api, catalog = served_model(OLD)
    run(ModelManager(catalog, object(), layout=OLD, api=api).plan("synth-a"))
    gets = sum(api.gets.values())
    # The same model id, now served in the pinned release's layout, under a pinned build.
    pinned_api, _ = served_model(PINNED)
    api.files = pinned_api.files
    plan = run(ModelManager(catalog, object(), layout=PINNED, api=api).plan("synth-a"))
    assert plan.release == "0.2.86" and sum(api.gets.values()) > gets
    assert any(a.url.endswith("tensor-cache.json") for a in plan.artifacts)


def test_storage_lists_every_store_of_the_release_by_default():
    _, catalog = served_model(OLD)
    seen = []

    class Api(FakeStoreApi):
        async def store_list(self, store):
            seen.append(store)
            return []

    run(Storage(catalog, layout=OLD, api=Api({})).files())
    assert {s["type"] for s in seen} == {"cache", "indexeddb"}
    seen.clear()
    run(Storage(catalog, layout=PINNED, api=Api({})).files())
    assert {s["type"] for s in seen} == {"cache", "indexeddb", "opfs"}
