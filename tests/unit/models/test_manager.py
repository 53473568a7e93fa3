"""ModelManager.delete against loads: never remove files a load is reading, never the loaded model's."""

from __future__ import annotations

import asyncio

from tests.unit.conftest import run
from tests.unit.test_storage import TWIN, X, GatedBackend, setup, stored_urls, urls


def test_delete_while_the_same_model_loads_waits_for_the_load_then_removes_everything():
    api, manager = setup(twin_downloaded=False)
    backend = manager.backend = GatedBackend(api)

    async def go():
        load = asyncio.ensure_future(manager.load("synth-x"))
        await backend.reading.wait()
        delete = asyncio.ensure_future(manager.delete("synth-x"))
        for _ in range(20):  # let the delete run as far as it can while the load reads
            await asyncio.sleep(0)
        intact = urls(X) <= stored_urls(api)
        backend.gate.set()
        await load
        return intact, await delete

    intact, freed = run(go())
    assert intact, "files were removed while the load was reading them"
    assert backend.missing == set()
    assert freed == X.total_bytes and not urls(X) & stored_urls(api)
    assert backend.loaded is None and "synth-x" not in run(manager.storage.last_used())
    assert run(manager.status("synth-x")).state == "not-downloaded"


def test_delete_of_the_twin_while_the_full_model_loads_keeps_its_files():
    api, manager = setup()
    backend = manager.backend = GatedBackend(api)

    async def go():
        load = asyncio.ensure_future(manager.load("synth-x"))
        await backend.reading.wait()
        delete = asyncio.ensure_future(manager.delete(TWIN))
        for _ in range(20):
            await asyncio.sleep(0)
        backend.gate.set()
        await load
        return await delete

    assert run(go()) == 0
    assert backend.missing == set() and urls(X) <= stored_urls(api)
    assert run(manager.status("synth-x")).state == "loaded"
    assert run(manager.status(TWIN)).state == "not-downloaded"


def test_deleting_the_loaded_models_twin_keeps_the_loaded_models_files():
    api, manager = setup()
    run(manager.load("synth-x"))
    assert run(manager.delete(TWIN)) == 0
    assert urls(X) <= stored_urls(api)
    assert run(manager.status("synth-x")).state == "loaded"
    report = run(manager.storage.report())
    assert TWIN not in report.models and report.models["synth-x"].bytes == X.total_bytes
