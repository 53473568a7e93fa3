"""WebLLMBackend against a fake engine: versions and caches, loading, capabilities, request targeting."""

import asyncio

import pytest

from app.backends.webllm import WebLLMBackend
from app.errors import (
    DeviceLost,
    EngineCrashed,
    ModelFetchFailed,
    ModelNotFound,
    ModelNotLoaded,
    QuotaExceeded,
    ShaderF16Unsupported,
    UsageError,
)
from app.models.layout import StoreLayout, parse_version
from app.params import ChatRequest
from tests.unit.conftest import run
from tests.unit.fakes import HERMES, LLAMA, PHI_1K, QWEN_F16, FakeEngineApi, within

USER = [{"role": "user", "content": "Hi"}]


def request(**kw):
    return ChatRequest.build(messages=USER, **kw)


# ---------------------------------------------------------------- versions and caches


def test_unknown_cache_backend_is_rejected_at_construction():
    with pytest.raises(UsageError, match="cache backend must be one of"):
        WebLLMBackend(cache_backend="localStorage", engine_api=FakeEngineApi())


@pytest.mark.parametrize("npm, model_version, expected", [
    ("0.2.79", "v0_2_48", {"useIndexedDBCache": True}),
    ("0.2.86", "v0_2_86/base", {"cacheBackend": "indexeddb"}),
])
def test_engine_gets_the_cache_keys_of_the_vendored_npm_version(npm, model_version, expected):
    async def scenario():
        api = FakeEngineApi(version=npm, model_version=model_version)
        backend = WebLLMBackend(cache_backend="indexeddb", engine_api=api)
        await backend.load(LLAMA)
        return api, backend

    api, backend = run(within(scenario()))
    [create] = [c for c in api.calls if c.name == "create_engine"]
    config = create.args[2]
    assert {k: config[k] for k in expected} == expected
    assert not ({"cacheBackend", "useIndexedDBCache"} - set(expected)) & set(config)
    assert backend.version == parse_version(npm)  # the npm version, not modelVersion


def test_opfs_with_an_old_web_llm_fails_before_a_worker_starts():
    async def scenario():
        api = FakeEngineApi(version="0.2.83", model_version="v0_2_80")
        backend = WebLLMBackend(cache_backend="opfs", engine_api=api)
        with pytest.raises(UsageError, match="no OPFS cache"):
            await backend.load(LLAMA)
        return api, backend

    api, backend = run(within(scenario()))
    assert api.names() == ["webllm_exports"]
    assert backend.loaded is None


@pytest.mark.parametrize("release, backend_name, expected", [
    ("0.2.79", "cache", {"useIndexedDBCache": False}),
    ("0.2.86", "opfs", {"cacheBackend": "opfs"}),
])
def test_a_given_layout_makes_the_cache_keys_and_replaces_the_prebuilt_ones(release, backend_name, expected):
    class Api(FakeEngineApi):
        async def engine_set_app_config(self, handle, app_config):
            self._log("engine_set_app_config", handle, app_config)

    async def scenario():
        api = Api(version=release)
        app_config = {"model_list": api.model_list, "cacheBackend": "indexeddb", "useIndexedDBCache": True}
        backend = WebLLMBackend(app_config=app_config, layout=StoreLayout.for_version(release),
                                cache_backend=backend_name, engine_api=api)
        await backend.load(LLAMA)
        await backend.set_app_config(app_config)
        return api

    api = run(within(scenario()))
    [create] = [c for c in api.calls if c.name == "create_engine"]
    [update] = [c for c in api.calls if c.name == "engine_set_app_config"]
    for config in (create.args[2], update.args[1]):
        assert {k: v for k, v in config.items() if k in ("cacheBackend", "useIndexedDBCache")} == expected


def test_a_layout_can_refuse_a_store_before_anything_starts():
    with pytest.raises(UsageError, match="no OPFS cache"):
        WebLLMBackend(layout=StoreLayout.for_version("0.2.79"), cache_backend="opfs",
                      engine_api=FakeEngineApi())


def test_a_layout_for_another_release_than_the_vendored_one_is_refused_at_start():
    async def scenario():
        api = FakeEngineApi(version="0.2.86")
        backend = WebLLMBackend(layout=StoreLayout.for_version("0.2.79"), engine_api=api)
        with pytest.raises(UsageError, match="0.2.79.*0.2.86"):
            await backend.load(LLAMA)
        return api

    assert run(within(scenario())).names() == ["webllm_exports"]


# ---------------------------------------------------------------- loading


def test_two_concurrent_loads_of_one_model_send_one_reload_and_both_see_progress():
    async def scenario():
        api = FakeEngineApi()
        backend = WebLLMBackend(engine_api=api)
        first, second = [], []
        await asyncio.gather(backend.load(LLAMA, on_progress=first.append),
                             backend.load(LLAMA, on_progress=second.append))
        return api, backend, first, second

    api, backend, first, second = run(within(scenario()))
    assert api.names().count("engine_reload") == 1
    assert api.names().count("create_engine") == 1
    assert backend.loaded == LLAMA
    assert [r["progress"] for r in first] == [0.0, 1.0] and second == first


def test_loading_the_loaded_model_again_sends_nothing():
    async def scenario():
        api = FakeEngineApi()
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        before = len(api.calls)
        await backend.load(LLAMA)
        return api.names(before)

    assert run(within(scenario())) == []


def test_unknown_model_id_is_model_not_found_and_no_reload_is_sent():
    async def scenario():
        api = FakeEngineApi()
        backend = WebLLMBackend(engine_api=api)
        with pytest.raises(ModelNotFound, match="Llama-9-Typo-MLC"):
            await backend.load("Llama-9-Typo-MLC")
        return api, backend

    api, backend = run(within(scenario()))
    assert "engine_reload" not in api.names()
    assert "probe_webgpu" not in api.names()  # rejected before even asking for the GPU
    assert backend.loaded is None


@pytest.mark.parametrize("failure, error", [
    (ModelFetchFailed("Failed to fetch", original="TypeError: Failed to fetch"), ModelFetchFailed),
    ("QuotaExceededError: Quota exceeded.", QuotaExceeded),  # as the worker reports it
])
def test_failed_reload_leaves_nothing_loaded_and_a_later_load_retries(failure, error):
    async def scenario():
        api = FakeEngineApi(reload_errors={LLAMA: failure})
        backend = WebLLMBackend(engine_api=api)
        with pytest.raises(error):
            await backend.load(LLAMA)
        assert backend.loaded is None
        with pytest.raises(ModelNotLoaded):
            await backend.complete(request())
        del api.reload_errors[LLAMA]  # the network is back
        await backend.load(LLAMA)
        reply = await backend.complete(request())
        return api, backend, reply

    api, backend, reply = run(within(scenario()))
    assert api.names().count("engine_reload") == 2
    assert api.names().count("create_engine") == 1  # the worker is reused
    assert backend.loaded == LLAMA
    assert reply.choices[0].message.content == "Echo: Hi"


def test_a_failed_reload_of_another_model_unloads_the_previous_one():
    async def scenario():
        api = FakeEngineApi(reload_errors={PHI_1K: "NetworkError: Failed to fetch"})
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        with pytest.raises(ModelFetchFailed):
            await backend.load(PHI_1K)
        return backend

    assert run(within(scenario())).loaded is None  # web-llm unloaded LLAMA before fetching PHI


def test_f16_model_on_a_gpu_without_shader_f16_fails_before_downloading():
    async def scenario():
        api = FakeEngineApi(gpu_features=())
        backend = WebLLMBackend(engine_api=api)
        with pytest.raises(ShaderF16Unsupported, match="q4f32"):
            await backend.load(QWEN_F16)
        await backend.load(LLAMA)  # the q4f32 build loads on the same GPU
        return api, backend

    api, backend = run(within(scenario()))
    assert [c.args[1] for c in api.calls if c.name == "engine_reload"] == [LLAMA]
    assert backend.loaded == LLAMA


def test_close_then_load_starts_a_new_worker():
    async def scenario():
        api = FakeEngineApi()
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        backend.close()
        assert backend.loaded is None
        with pytest.raises(ModelNotLoaded):
            await backend.complete(request())
        await backend.load(LLAMA)
        return api, await backend.complete(request())

    api, reply = run(within(scenario()))
    assert api.names().count("create_engine") == 2 and api.handles[0].closed
    assert reply.choices[0].message.content == "Echo: Hi"


# ---------------------------------------------------------------- capabilities


def test_capabilities_follow_web_llms_function_calling_list_and_model_record():
    async def scenario():
        backend = WebLLMBackend(engine_api=FakeEngineApi())
        await backend.load(LLAMA)
        return backend

    backend = run(within(scenario()))
    assert backend.capabilities(HERMES).tools == "native"
    assert backend.capabilities(LLAMA).tools == "emulated"
    assert backend.capabilities("Hermes-3-Llama-3.1-8B-q4f16_1-MLC").tools == "emulated"  # not in the fake's list
    assert backend.capabilities(PHI_1K).max_context == 1024
    assert backend.capabilities(None).max_context == 4096  # the loaded model's record
    assert backend.capabilities(None).local


# ---------------------------------------------------------------- requests


def test_requests_before_any_load_are_model_not_loaded_and_nothing_is_sent():
    api = FakeEngineApi()
    backend = WebLLMBackend(engine_api=api)

    async def scenario():
        with pytest.raises(ModelNotLoaded, match="call load"):
            await backend.complete(request())
        with pytest.raises(ModelNotLoaded):
            backend.stream(request(stream=True))

    run(within(scenario()))
    assert api.calls == []


@pytest.mark.parametrize("stream", [False, True])
def test_request_naming_a_model_that_is_not_loaded_is_rejected_before_sending(stream):
    async def scenario():
        api = FakeEngineApi()
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        before = len(api.calls)
        with pytest.raises(ModelNotLoaded, match=PHI_1K):
            if stream:
                await backend.stream(request(model=PHI_1K, stream=True)).start()
            else:
                await backend.complete(request(model=PHI_1K))
        return api.names(before)

    assert run(within(scenario())) == []


def test_request_without_model_is_sent_to_the_loaded_model():
    async def scenario():
        api = FakeEngineApi()
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        reply = await backend.complete(request())
        return api, reply

    api, reply = run(within(scenario()))
    assert api.sent()[-1]["model"] == LLAMA
    assert reply.model == LLAMA and reply.backend == "webllm"


def device_lost(req):
    """An engine handler whose GPU device is lost at the first request (web-llm's DeviceLostError)."""
    raise DeviceLost("The WebGPU device was lost", original="DeviceLostError: The WebGPU device was lost")


def test_device_lost_mid_request_means_the_model_must_be_loaded_again():
    async def scenario():
        api = FakeEngineApi(handler=device_lost)
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        with pytest.raises(DeviceLost):
            await backend.complete(request())
        assert backend.loaded is None
        before = len(api.calls)
        with pytest.raises(ModelNotLoaded):
            await backend.complete(request())
        return api.names(before)

    assert run(within(scenario())) == []


# ---------------------------------------------------------------- a dead worker


async def _two_chunks_then(api, backend, fault):
    """Stream an answer, take two chunks, apply ``fault`` and read on: the error, what arrived."""
    stream = backend.stream(request())
    got = []
    async for chunk in stream:
        got.append(chunk.choices[0].delta.content)
        if len(got) == 2:
            fault()
    return got


def test_a_worker_that_dies_mid_answer_fails_the_answer_at_once_and_the_next_load_starts_a_new_one():
    async def scenario():
        api = FakeEngineApi(handler=lambda req: "one two three four five six")
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        first = api.handles[-1]
        with pytest.raises(EngineCrashed, match="worker stopped"):
            await _two_chunks_then(api, backend, lambda: api.crash(first))
        assert backend.loaded is None and backend.lost == "worker crashed"
        assert first.closed  # terminated: it holds no GPU memory any more
        with pytest.raises(ModelNotLoaded, match="worker crashed"):
            backend.stream(request())
        before = len(api.calls)
        await backend.load(LLAMA)
        assert api.names(before) == ["webllm_exports", "create_engine", "engine_reload"]
        assert api.handles[-1] is not first and backend.lost is None
        reply = await backend.complete(request())
        return reply.choices[0].message.content

    assert run(within(scenario())) == "one two three four five six"


def test_a_worker_that_died_while_idle_is_noticed_before_the_next_request():
    async def scenario():
        api = FakeEngineApi()
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        api.crash()
        assert backend.loaded is None and backend.lost == "worker crashed"
        before = len(api.calls)
        with pytest.raises(ModelNotLoaded):
            await backend.complete(request())
        assert api.names(before) == []  # nothing was sent to a dead worker
        await backend.load(LLAMA)
        return (await backend.complete(request())).choices[0].message.content, len(api.handles)

    assert run(within(scenario())) == ("Echo: Hi", 2)


def test_a_request_queued_behind_one_whose_worker_dies_fails_fast_instead_of_waiting_forever():
    async def scenario():
        api = FakeEngineApi(handler=lambda req: "one two three four")
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        first = backend.stream(request())
        second = backend.stream(request())  # targeted now; waits for the engine's turn
        waiting = asyncio.ensure_future(second.__anext__())
        await first.__anext__()
        api.crash()
        with pytest.raises(EngineCrashed):
            await first.__anext__()
        with pytest.raises(ModelNotLoaded):
            await waiting

    run(within(scenario()))


def test_device_lost_mid_answer_restarts_the_worker_on_the_next_load():
    async def scenario():
        api = FakeEngineApi(handler=device_lost)
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        with pytest.raises(DeviceLost):
            await backend.stream(request()).__anext__()
        assert backend.loaded is None and backend.lost == "GPU device lost" and api.handles[0].closed
        api.handler = lambda req: "back"
        await backend.load(LLAMA)
        return len(api.handles), (await backend.complete(request())).choices[0].message.content

    assert run(within(scenario())) == (2, "back")


def test_an_engine_that_does_not_stop_when_its_caller_gives_up_is_restarted():
    """A caller that gives up (a timeout, Stop before the first token) interrupts the engine; one that
    does not end the stream within stop_grace_s is stuck, and is restarted instead of waited for."""

    async def scenario():
        api = FakeEngineApi()
        backend = WebLLMBackend(engine_api=api, stop_grace_s=0.05)
        await backend.load(LLAMA)
        stream = backend.stream(request())
        await stream.start()
        stream._chunks.aclose = lambda: asyncio.Event().wait()  # web-llm never ends the stream
        api.paused = True
        stream._chunks.gate.clear()
        reading = asyncio.ensure_future(stream.__anext__())
        await stream._chunks.waiting.wait()
        stream._chunks.gate = asyncio.Event()  # the interrupt does not reach the stuck generation
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert backend.loaded is None and backend.lost == "engine stopped responding"
        await backend.load(LLAMA)  # the engine's turn was released, a new worker answers
        return (await backend.complete(request())).choices[0].message.content

    assert run(within(scenario())) == "Echo: Hi"


def test_a_worker_that_died_before_any_model_loaded_is_replaced_by_the_load():
    async def scenario():
        api = FakeEngineApi(reload_errors={LLAMA: "NetworkError: Failed to fetch"})
        backend = WebLLMBackend(engine_api=api)
        with pytest.raises(ModelFetchFailed):
            await backend.load(LLAMA)
        api.crash()
        api.reload_errors.clear()
        await backend.load(LLAMA)
        return len(api.handles), api.handles[0].closed, backend.loaded

    assert run(within(scenario())) == (2, True, LLAMA)


def test_a_load_waiting_behind_an_answer_whose_worker_dies_loads_into_a_new_worker():
    async def scenario():
        api = FakeEngineApi(handler=lambda req: "one two three four")
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        stream = backend.stream(request())
        await stream.__anext__()  # the answer holds the engine's turn
        loading = asyncio.ensure_future(backend.load(PHI_1K))
        for _ in range(5):
            await asyncio.sleep(0)  # the load found the engine alive and waits for the turn
        api.crash(api.handles[0])
        with pytest.raises(EngineCrashed):
            await stream.__anext__()
        await loading
        return len(api.handles), backend.loaded, api.handles[1].loaded

    assert run(within(scenario())) == (2, PHI_1K, PHI_1K)
