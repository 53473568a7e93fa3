"""The composition root: which routes answer, in which order, through which middleware; the model
manager built with the vendored web-llm's layout; what is kept of the user's choices."""

import asyncio

import pytest

from app.backends.base import Capabilities
from app.config import CloudConfig, PageConfig, RequestLimits, Settings
from app.errors import BackendUnreachable, NoBackendAvailable, ServerError, UsageError
from app.runtime import WebGPUReport
from app.session import Parts, Session, activity_line, open_session
from tests.unit.conftest import run
from tests.unit.test_middleware import FakeBackend, Sleeps

GPU = WebGPUReport.from_probe({"api": True, "adapter": True, "features": [], "limits": {}})
NO_GPU = WebGPUReport.from_probe({"api": True, "adapter": False})
CLOUD = CloudConfig(base_url="http://127.0.0.1:9/v1", model="m", label="test")
USER = [{"role": "user", "content": "hi"}]


class Local(FakeBackend):
    """web-llm as the session sees it: loads through the manager, answers once loaded."""

    def __init__(self, fail_load=False, **kw):
        super().__init__("webllm", **kw)
        self.loaded = None
        self.fail_load = fail_load

    async def load(self, model, on_progress=None):
        on_progress({"progress": 1.0, "text": "done"})
        if self.fail_load:
            raise ServerError("the model could not load")
        self.loaded = model


class Cloud(FakeBackend):
    def capabilities(self, model):
        return Capabilities(tools="native", local=False)


class Chrome(FakeBackend):
    def __init__(self, **kw):
        super().__init__("chrome-ai", **kw)
        self.state = "available"
        self.unavailable = None

    async def availability(self):
        return self.state


class Manager:
    """What the session uses of ModelManager: load through the backend, with an app.model.load event."""

    def __init__(self, catalog, backend, layout, emit):
        self.catalog, self.backend, self.layout, self.emit = catalog, backend, layout, emit

    async def load(self, model_id, on_progress=None):
        def report(raw):
            self.emit({"event": "app.model.load", "gen_ai.request.model": model_id, **raw})
            on_progress(raw)

        await self.backend.load(model_id, on_progress=report)


class Catalog:
    def get(self, model_id):
        if model_id.startswith("unknown"):
            raise UsageError(f"no model {model_id}")

    def all(self):
        from types import SimpleNamespace

        return [SimpleNamespace(id="M", record={}), SimpleNamespace(id="V", record={"model_type": 2}),
                SimpleNamespace(id="A-q4f16_1", record={"model_id": "A-q4f16_1", "model_type": 2})]


def session(config, gpu, *, local=None, cloud=None, chrome=None, version=None, sleeps=None):
    made = {}

    async def catalog(extra):
        return Catalog()

    parts = Parts(webllm=lambda app_config, layout: made.setdefault("webllm", local or Local()),
                  cloud=lambda c: made.setdefault("cloud", cloud or Cloud(c.label)),
                  chrome=lambda: chrome, prompt_api_present=lambda: chrome is not None,
                  catalog=catalog, manager=Manager, layout=lambda v: ("layout", v), log=made.setdefault("log", []).append,
                  watch_online=lambda on_change: None, sleep=Sleeps() if sleeps is None else sleeps)
    s = Session(config, webllm_version=version, parts=parts)
    s.gpu.set(gpu)
    return s, made


async def ask(s):
    client = await s.client()
    return await client.chat.completions.create(messages=USER)


def names(s):
    return [r.backend.name for r in s.router.routes]


def test_webgpu_loads_the_configured_model_once_through_the_manager_and_routes_to_it():
    s, made = session(PageConfig(model="M"), GPU, version="0.2.79")

    async def go():
        first = await s.client()
        assert await s.client() is first
        reply = await ask(s)
        manager = await s.models()
        return reply, manager

    reply, manager = run(go())
    assert made["webllm"].loaded == "M" and names(s) == ["webllm"]
    assert reply.backend == "webllm" and reply.choices[0].message.content == "Hello"
    assert manager.layout == ("layout", "0.2.79")  # the vendored release decides the store layout
    assert s.describe() == "Answers come from M, running on this device."
    assert any(e["event"] == "app.model.load" for e in s.activity.peek())


def test_prefer_local_order_is_webllm_then_built_in_then_endpoint():
    s, _made = session(PageConfig(model="M", cloud=CLOUD), GPU, chrome=Chrome())
    run(s.probe_builtin())
    run(s.client())
    assert names(s) == ["webllm", "chrome-ai", "test"]
    plan, _skipped = s.router.plan(__import__("app.params", fromlist=["ChatRequest"]).ChatRequest.build(messages=USER))
    assert [route.backend.name for route, _why in plan] == ["webllm", "chrome-ai", "test"]
    assert s.describe() == "Answers come from M, running on this device, or when it cannot, Chrome's built-in model then test (m)."


def test_without_webgpu_the_built_in_model_answers_and_without_anything_a_typed_error():
    s, _made = session(PageConfig(model="M"), NO_GPU, chrome=Chrome())
    assert run(ask(s)).backend == "chrome-ai"
    assert names(s) == ["chrome-ai"]
    bare, _ = session(PageConfig(model="M"), NO_GPU)
    with pytest.raises(NoBackendAvailable, match="no WebGPU"):
        run(bare.client())
    off, _ = session(PageConfig(model="M", builtin=False), NO_GPU, chrome=Chrome())
    with pytest.raises(NoBackendAvailable):
        run(off.client())


def test_a_failed_load_falls_back_to_the_endpoint_and_says_so():
    s, _made = session(PageConfig(model="M", cloud=CLOUD), GPU, local=Local(fail_load=True))
    reply = run(ask(s))
    assert reply.backend == "test"
    assert "could not load" in s.status.peek()


def test_every_request_is_observed_logged_and_an_endpoint_retried():
    cloud = Cloud("test", script=[ServerError("busy", status=503)])
    sleeps = Sleeps()
    s, made = session(PageConfig(model=None, cloud=CLOUD), NO_GPU, cloud=cloud, sleeps=sleeps)
    reply = run(ask(s))
    assert reply.backend == "test" and len(cloud.calls) == 2 and len(sleeps) == 1
    events = [e["event"] for e in s.activity.peek() if e["event"] != "app.health"]
    assert events == ["gen_ai.request.start", "app.request.retry", "gen_ai.request.end"]
    assert any(line.startswith("chat ") and " end: backend=test" in line for line in made["log"])
    retry = next(e for e in s.activity.peek() if e["event"] == "app.request.retry")
    assert "retry #1 of test after ServerError" in activity_line(retry)


def test_a_hung_endpoint_is_cut_by_the_first_token_timeout_with_a_typed_error():
    limits = RequestLimits(first_token_s=0.05, attempts=1)
    cloud = Cloud("test", hang=True)
    s, _made = session(PageConfig(model=None, cloud=CLOUD, limits=limits), NO_GPU, cloud=cloud)

    async def go():
        client = await s.client()
        stream = await client.chat.completions.create(messages=USER, stream=True)
        return [c async for c in stream]

    with pytest.raises(NoBackendAvailable, match="BackendUnreachable") as caught:
        run(asyncio.wait_for(go(), 5))
    assert isinstance(caught.value, NoBackendAvailable)
    assert cloud.streams[0].closed  # the hung request was released, not left running
    error = [e for e in s.activity.peek() if e["event"] == "gen_ai.request.error"]
    assert error and error[0]["error.type"] == "NoBackendAvailable"
    assert BackendUnreachable  # the timeout's own type is what the router reports per route


def test_the_client_is_rebuilt_only_when_what_answers_changes():
    s, _made = session(PageConfig(model=None), NO_GPU, chrome=Chrome())
    first = run(s.client())
    assert run(s.client()) is first
    s.set_cloud(CLOUD)
    second = run(s.client())
    assert second is not first and names(s) == ["chrome-ai", "test"]


def test_use_model_checks_the_id_then_loads_and_keeps_the_choice():
    kept = {}

    class Kv:
        async def put(self, key, value):
            kept[key] = value

    s, made = session(PageConfig(model="M"), GPU)
    s._kv = Kv()
    with pytest.raises(UsageError):
        run(s.use_model("unknown-1"))
    assert s.model.peek() == "M" and kept == {}
    run(s.use_model("N"))
    assert s.model.peek() == "N" and made["webllm"].loaded == "N" and kept == {"model": "N"}
    run(s.save_settings(Settings(system_prompt="be brief"), CloudConfig("https://x.test/v1", "m", "sk-secret", "x")))
    assert kept["chat"] == {"settings": {"system_prompt": "be brief", "temperature": 0.7, "max_tokens": 1024,
                                         "context_policy": "drop-oldest"},
                            "cloud": {"base_url": "https://x.test/v1", "model": "m", "label": "x"}}


def test_open_session_reads_config_versions_and_saved_choices_and_embed_overrides_keep_nothing():
    files = {"static/chat-config.json": {"model": "A", "policy": "priority", "limits": {"attempts": 1}},
             "static/vendor/VERSIONS.json": {"@mlc-ai/web-llm": "0.2.79"}}

    async def fetch_json(url):
        return files[url]

    class Kv:
        def __init__(self):
            self.data = {"model": "B", "chat": {"settings": {"system_prompt": "hi"},
                                                "cloud": {"base_url": "https://e.test/v1", "model": "m"}}}

        async def get(self, key):
            return self.data.get(key)

    kv = Kv()
    s = run(open_session(kv=kv, fetch_json=fetch_json, parts=Parts(layout=lambda v: v)))
    assert (s.model.peek(), s.config.policy, s.webllm_version) == ("B", "priority", "0.2.79")
    assert s.cloud.peek().base_url == "https://e.test/v1" and s.settings.peek().system_prompt == "hi"
    assert s.config.limits.attempts == 1
    embedded = run(open_session(kv=kv, overrides={"model": "C"}, fetch_json=fetch_json, parts=Parts(layout=lambda v: v)))
    assert embedded.model.peek() == "C" and embedded.cloud.peek() is None and embedded._kv is None


def test_health_is_checked_when_asked_and_reported():
    class Probed(Cloud):
        async def health(self):
            raise ServerError("down", status=503)

    s, _made = session(PageConfig(model=None, cloud=CLOUD), NO_GPU, cloud=Probed("test"))
    assert run(s.check_health()) == {"test": "ServerError: down"}
    assert [e["event"] for e in s.activity.peek()] == ["app.health"]  # nothing probes on its own
    assert s.router.routes[0].breaker.failures == 1


def test_a_choice_the_browser_refuses_to_keep_still_applies_and_is_said():
    from app.errors import QuotaExceeded

    class FullKv:
        async def put(self, key, value):
            raise QuotaExceeded("the browser refused to store more")

    s, made = session(PageConfig(model="M"), GPU)
    s._kv = FullKv()
    run(s.use_model("N"))
    assert s.model.peek() == "N" and made["webllm"].loaded == "N"
    assert [e["what"] for e in s.activity.peek() if e["event"] == "app.storage.refused"] == ["model"]


def test_a_model_lost_with_its_worker_is_loaded_again_by_the_next_request_with_a_notice():
    local = Local()
    s, made = session(PageConfig(model="M"), GPU, local=local)
    seen = []
    load = local.load

    async def watched_load(model, on_progress=None):
        seen.append(s.status.peek())
        await load(model, on_progress=on_progress)
        local.lost = None

    local.load = watched_load

    async def go():
        await ask(s)
        local.loaded, local.lost = None, "worker crashed"  # what WebLLMBackend does when its worker dies
        return await ask(s)

    reply = run(go())
    assert seen == ["Loading M", "The model stopped (worker crashed); reloading M…"]
    assert reply.backend == "webllm" and local.loaded == "M" and s.status.peek() == ""


def test_the_context_window_is_the_chosen_models_before_it_loads_and_follows_the_choice():
    from app.ui.store import Computed

    class Windowed(Local):
        def capabilities(self, model):
            return Capabilities(tools="native", local=True, max_context={"M": 4096, "N": 8192}.get(model))

    s, _made = session(PageConfig(model="M", cloud=CLOUD), GPU, local=Windowed(), chrome=Chrome())
    window = Computed(s.context_window)
    assert window.get() == 4096  # nothing loaded; the endpoint and Chrome's model state no window
    s.model.set("N")
    assert window.get() == 8192
    nothing, _ = session(PageConfig(model=None), NO_GPU)
    assert nothing.context_window() is None  # nothing answers yet


def test_a_title_is_asked_only_of_the_on_device_backend_that_answered():
    s, made = session(PageConfig(model="M", cloud=CLOUD), GPU)
    off, _ = session(PageConfig(model="M", auto_title=False), GPU)
    exchange = [*USER, {"role": "assistant", "content": "Hello"}]

    async def go():
        await s.client()
        await off.client()
        return (await s.title("webllm", exchange), await s.title("test", exchange),
                await off.title("webllm", exchange))

    local, cloud, disabled = run(go())
    assert local == "Hello"  # what the model wrote, cleaned
    assert cloud is None and disabled is None  # an endpoint never pays for a title; a page may say no
    kind, request = made["webllm"].calls[-1]
    assert kind == "stream" and request.messages[-1]["content"].startswith("Write a title")
    assert request.params["max_tokens"] <= 32 and made["cloud"].calls == []


def test_opening_a_conversation_brings_back_its_model_only_when_it_is_on_this_device():
    s, made = session(PageConfig(model="M"), GPU)
    states = {"Stored": "downloaded", "Gone": "not-downloaded"}

    async def status(model_id):
        if model_id not in states:
            raise UsageError(f"no model {model_id}")
        return type("Status", (), {"state": states[model_id]})()

    async def go():
        manager = await s.models()
        manager.status = status
        return [await s.follow_model(m) for m in ("Gone", "unknown-x", "Stored")]

    assert run(go()) == [False, False, True]
    assert s.model.peek() == "Stored"  # chosen, not loaded: the next message loads it
    assert made["webllm"].loaded is None


def test_a_benchmark_loads_the_downloaded_model_runs_the_prompts_and_keeps_the_result_per_device():
    from app.benchmark import BenchPrompt

    kv = {}

    class Kv:
        async def put(self, key, value):
            kv[key] = value

        async def items(self):
            return dict(kv)

    gpu = WebGPUReport.from_probe({"api": True, "adapter": True, "info": {"description": "Test GPU"}})
    s, made = session(PageConfig(model="M"), gpu)
    s._kv = Kv()
    states = {"M": "downloaded", "B": "downloaded", "Gone": "not-downloaded"}

    async def status(model_id):
        return type("Status", (), {"state": states[model_id]})()

    async def unload():
        made["webllm"].loaded = None

    async def go():
        await s.client()  # the chat's model is loaded
        manager = await s.models()
        manager.status, manager.unload = status, unload
        with pytest.raises(UsageError, match="not downloaded"):
            await s.benchmark("Gone")
        result = await s.benchmark("B", prompts=[BenchPrompt("one", "count", 8)])
        fresh, _ = session(PageConfig(model="M"), gpu)
        fresh._kv = Kv()
        return result, await fresh.load_benchmarks()

    result, kept = run(go())
    assert made["webllm"].loaded == "B" and result.model == "B" and result.device == "Test GPU"
    assert result.load_s is not None and [p.name for p in result.prompts] == ["one"]
    assert kept == {("Test GPU", "B"): result}  # the next visit shows it
    assert s.model.peek() == "M"  # the chat's choice is unchanged: its next message loads M again


def test_images_are_seen_by_a_vlm_record_or_an_endpoint_that_declares_vision():
    class SeeingCloud(Cloud):
        def capabilities(self, model):
            return Capabilities(tools="native", local=False, vision=True)

    s, _ = session(PageConfig(model="M"), GPU)  # a GPU without shader-f16: the f32 model is offered first
    assert run(s.image_support()) == {"sees": False, "by": None, "vision_models": ["V", "A-q4f16_1"]}
    s.model.set("V")
    assert run(s.image_support())["sees"] and run(s.image_support())["by"] == "V"
    s, _ = session(PageConfig(model="M", cloud=CloudConfig("https://x.test/v1", "gpt", "k", "x")), GPU,
                   cloud=SeeingCloud("openai"))
    assert run(s.image_support())["by"] == "openai"
