"""A model of the user's own: the form's fields to a record, and the checks before it is stored
(files readable, sized, fits the GPU), over the in-memory store and synthetic model files."""

import pytest

from app.errors import InvalidRequest, ModelFetchFailed, UsageError
from app.models.catalog import Catalog
from app.models.custom import build_record, default_id, model_url_from
from app.models.manager import ModelManager
from app.runtime import WebGPUReport
from tests.browser.model_server import SyntheticModel
from tests.unit.conftest import run
from tests.unit.models.fake_store import FakeStoreApi
from tests.unit.models.test_models_unit import ORIGIN, FakeBackend, record, served

MINE = SyntheticModel("my-own-model", shards=3, shard_bytes=30_000, seed=5)
GPU = WebGPUReport(True, limits={"maxBufferSize": 1 << 30, "maxStorageBufferBindingSize": 1 << 30})
SMALL_GPU = WebGPUReport(True, limits={"maxBufferSize": 1 << 10, "maxStorageBufferBindingSize": 1 << 10})


def test_sources_resolve_to_a_model_folder_and_an_id():
    assert model_url_from("mlc-ai/Qwen3-0.6B-q4f16_1-MLC") == "https://huggingface.co/mlc-ai/Qwen3-0.6B-q4f16_1-MLC"
    assert model_url_from(" https://host.test/org/name/ ") == "https://host.test/org/name"
    assert default_id("https://huggingface.co/org/Name-MLC/resolve/main/") == "Name-MLC"
    rec = build_record("org/Name-MLC", "https://libs.test/name.wasm", context_window="2048", vram_mb="900")
    assert rec == {"model_id": "Name-MLC", "model": "https://huggingface.co/org/Name-MLC",
                   "model_lib": "https://libs.test/name.wasm", "overrides": {"context_window_size": 2048},
                   "vram_required_MB": 900.0}


@pytest.mark.parametrize("source, lib, extra, param", [
    ("", "https://l.test/x.wasm", {}, "model"),
    ("ftp://host/m", "https://l.test/x.wasm", {}, "model"),
    ("https://user:pw@host/m", "https://l.test/x.wasm", {}, "model"),
    ("https://host/m?x=1", "https://l.test/x.wasm", {}, "model"),
    ("org/name", "", {}, "model_lib"),
    ("org/name", "javascript:alert(1)", {}, "model_lib"),
    ("org/name", "https://l.test/x.wasm", {"context_window": "lots"}, "overrides.context_window_size"),
    ("org/name", "https://l.test/x.wasm", {"context_window": "0"}, "overrides.context_window_size"),
    ("org/name", "https://l.test/x.wasm", {"vram_mb": "-5"}, "vram_required_MB"),
    ("org/name", "https://l.test/x.wasm", {"model_id": "bad id\n"}, "model_id"),
])
def test_bad_fields_are_refused_naming_the_field(source, lib, extra, param):
    with pytest.raises(InvalidRequest) as info:
        build_record(source, lib, **extra)
    assert info.value.param == param


def setup():
    api = FakeStoreApi(served(MINE))
    catalog = Catalog([{**record(MINE, model_id="prebuilt-one")}], store=api)
    return api, catalog, ModelManager(catalog, FakeBackend(), api=api)


def test_a_model_is_added_only_after_its_files_were_read_sized_and_found_to_fit():
    api, catalog, manager = setup()
    rec = build_record(f"{ORIGIN}/{MINE.org}/{MINE.name}", f"{ORIGIN}/libs/{MINE.name}-webgpu.wasm")
    info, plan = run(manager.add_model(rec, GPU))
    assert info.id == "my-own-model" and info.source == "user" and plan.total_bytes == MINE.total_bytes
    assert api.kv["models"]["my-own-model"]["model"] == rec["model"]  # kept for the next visit
    assert run(manager.download_size("my-own-model")) == MINE.total_bytes  # sized once, remembered
    assert not any("params_shard" in url for url in api.gets)  # no weight fetched to check it
    # Removed again: files and record go.
    run(manager.download("my-own-model"))
    assert run(manager.remove_model("my-own-model")) == MINE.total_bytes
    assert "my-own-model" not in catalog and "my-own-model" not in api.kv["models"]
    with pytest.raises(UsageError):
        run(manager.remove_model("prebuilt-one"))


def test_nothing_is_stored_when_a_check_fails():
    api, catalog, manager = setup()
    unreachable = build_record(f"{ORIGIN}/nobody/missing", f"{ORIGIN}/libs/x.wasm")
    with pytest.raises(ModelFetchFailed, match="could not read missing's files.*CORS"):
        run(manager.add_model(unreachable, GPU))
    too_big = build_record(f"{ORIGIN}/{MINE.org}/{MINE.name}", f"{ORIGIN}/libs/{MINE.name}-webgpu.wasm")
    with pytest.raises(InvalidRequest, match="cannot run here.*buffer limit"):
        run(manager.add_model(too_big, SMALL_GPU))
    taken = build_record(f"{ORIGIN}/{MINE.org}/{MINE.name}", f"{ORIGIN}/libs/x.wasm", model_id="prebuilt-one")
    with pytest.raises(InvalidRequest, match="already in the list"):
        run(manager.add_model(taken, GPU))
    assert [m.id for m in catalog.all()] == ["prebuilt-one"] and not api.kv.get("models")
