"""The header's model switcher under CPython: a real Session and ModelManager over the fake storage
ffi; what it shows comes from the session's model events and, once asked, the manager."""

from __future__ import annotations

from app.config import PageConfig
from app.errors import EngineError
from app.models.catalog import Catalog
from app.models.manager import ModelManager
from app.runtime import WebGPUReport
from app.session import Parts, Session
from app.ui.store import effect
from app.ui.switcher import ModelSwitcher, status_words
from tests.unit.conftest import run
from tests.unit.models.fake_store import FakeStoreApi
from tests.unit.models.test_models_unit import A, B, FakeBackend, record, served
from tests.unit.ui.test_models import GPU


class Backend(FakeBackend):
    """Reports two steps of a load, as web-llm does (the last one: progress 1); "synth-b" fails."""

    async def load(self, model_id, on_progress=None):
        if model_id == "synth-b":
            on_progress({"progress": 0.2, "text": "fetching"})
            raise EngineError("the device was lost")
        on_progress({"progress": 0.4, "text": "fetching"})
        on_progress({"progress": 1.0, "text": "Finish loading"})
        self.loaded = model_id


def setup(model="synth-a", gpu=GPU):
    api = FakeStoreApi(served(A, B), quota=10**12)
    catalog = Catalog([], [record(A), record(B)], store=api)
    backend = Backend()
    built = []

    async def make_catalog(extra):
        built.append(True)
        return catalog

    def make_manager(catalog, backend, layout, emit):
        return ModelManager(catalog, backend, api=api, emit=emit)

    parts = Parts(webllm=lambda app_config, layout: backend, catalog=make_catalog, manager=make_manager)
    session = Session(PageConfig(model=model), parts=parts)
    session.gpu.set(gpu)
    return session, ModelSwitcher(session), built


def test_before_the_catalog_it_shows_the_model_and_then_follows_download_and_load_events():
    session, switcher, built = setup()
    shown = []
    eff = effect(lambda: shown.append(switcher.label.get()[1]))
    assert switcher.label.get() == ("synth-a", "not loaded") and built == []  # no catalog asked for

    async def go():
        manager = await session.models()  # e.g. the Models panel opened
        await manager.download("synth-a")
        await session.load_model("synth-a")  # e.g. the chat's first message

    run(go())
    eff.dispose()
    assert shown[0] == "not loaded" and shown[-1] == "ready"
    downloading = [w for w in shown if w.startswith("downloading ")]
    assert downloading and downloading[-1] == "downloading 100%"
    assert shown.index("downloaded") < shown.index("loading 40%") < shown.index("ready")


def test_refresh_lists_the_current_and_the_stored_models_and_switch_uses_the_session_intent():
    session, switcher, _ = setup()

    async def go():
        manager = await session.models()
        await manager.download("synth-b")
        await switcher.refresh()
        assert switcher.choices.get() == ("synth-a", "synth-b")
        shown = [status_words(switcher.status(m)) for m in switcher.choices.get()]
        assert shown == ["not downloaded", "downloaded"]
        await manager.download("synth-a")
        await session.load_model("synth-a")
        assert switcher.label.get() == ("synth-a", "ready")
        # synth-b fails to load: the chat's model changed (as "Use for chat" does), the switcher says why.
        switcher.open.set(True)
        assert await switcher.switch("synth-b") is False
        assert switcher.open.peek() is False
        assert session.model.peek() == "synth-b"
        assert switcher.label.get() == ("synth-b", "failed")
        assert "EngineError: the device was lost" in switcher.notice.peek()
        assert [e["event"] for e in session.activity.peek()][-1] == "app.model.load.failed"
        # Back to synth-a: loaded again, and the failed one is listed with its state.
        assert await switcher.switch("synth-a") is True
        assert switcher.label.get() == ("synth-a", "ready") and switcher.notice.peek() == ""
        assert switcher.choices.get() == ("synth-a", "synth-b")

    run(go())


def test_without_a_model_or_without_webgpu_it_says_so():
    _session, switcher, _ = setup(model=None)
    assert switcher.label.get() == ("No model chosen", "") and switcher.choices.get() == ()
    no_gpu = WebGPUReport.from_probe({"api": False, "adapter": False, "features": [], "limits": {}})
    _session, switcher, _ = setup(gpu=no_gpu)
    assert switcher.label.get() == ("synth-a", "needs WebGPU")


def test_words():
    from app.models.status import ModelStatus

    assert status_words(None) == "not loaded"
    assert status_words(ModelStatus("m", "downloading", 50, 200)) == "downloading 25%"
    assert status_words(ModelStatus("m", "downloading")) == "downloading"
    assert status_words(ModelStatus("m", "loading", load_progress=0.7)) == "loading 70%"
    assert status_words(ModelStatus("m", "loaded")) == "ready"
    assert status_words(ModelStatus("m", "partial", 10)) == "partly downloaded"
