import json

import pytest

from app.backends.openai_compat import PRESETS, OpenAICompatBackend
from app.errors import (
    AuthenticationFailed,
    ContextWindowExceeded,
    EngineRejected,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    ServerError,
    UsageError,
    from_http_status,
)
from app.params import ChatRequest
from tests.unit.conftest import run

KEY = "sk-secret-abc"


class FakeHttp:
    """``app.ffi.http`` (its HttpBridge Protocol), scripted: records requests, answers ``answer``."""

    def __init__(self, answer: dict):
        self.sent = []
        self.answer = answer
        outer = self

        class HttpStream:
            def __init__(self, url, *, method="POST", headers=None, body=None, sse=True):
                outer.sent.append({"url": url, "headers": headers, "body": None if body is None else json.loads(body),
                                   "sse": sse})

            def __aiter__(self):
                return self

            async def __anext__(self):
                return json.dumps(outer.answer)

            async def aclose(self):
                pass

            def cancel(self):
                pass

        self.HttpStream = HttpStream


ANSWER = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


def test_key_goes_only_to_the_endpoint_and_never_into_repr():
    http = FakeHttp(ANSWER)
    b = OpenAICompatBackend(preset="openai", api_key=KEY, model="gpt-x", http=http)
    r = run(b.complete(ChatRequest.build(messages=[{"role": "user", "content": "x"}])))
    assert r.choices[0].message.content == "hi" and r.backend == "openai"
    [sent] = http.sent
    assert sent["url"] == "https://api.openai.com/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(b)


def test_body_drops_webllm_only_fields_and_maps_json_schema():
    http = FakeHttp(ANSWER)
    b = OpenAICompatBackend(base_url="http://127.0.0.1:8080/v1/", model="m", http=http)
    req = ChatRequest.build(messages=[{"role": "user", "content": "x"}], repetition_penalty=1.1, ignore_eos=True,
                            enable_thinking=True, temperature=0.3,
                            response_format={"type": "json_object", "schema": {"type": "object"}})
    run(b.complete(req))
    body = http.sent[0]["body"]
    assert "repetition_penalty" not in body and "ignore_eos" not in body and "extra_body" not in body
    assert body["temperature"] == 0.3 and body["model"] == "m"
    assert body["chat_template_kwargs"] == {"enable_thinking": True}  # as vLLM and llama.cpp take it
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "response", "schema": {"type": "object"}, "strict": False}}
    assert b.on_device and b.capabilities(None).local


def test_presets_and_bad_configuration():
    assert PRESETS["anthropic"].headers["anthropic-dangerous-direct-browser-access"] == "true"
    assert not OpenAICompatBackend(preset="gemini", api_key="k").on_device
    with pytest.raises(UsageError, match="needs an API key"):
        OpenAICompatBackend(preset="openai")
    with pytest.raises(UsageError, match="unknown preset"):
        OpenAICompatBackend(preset="nope")
    with pytest.raises(UsageError, match="http"):
        OpenAICompatBackend(base_url="ftp://x")
    http = FakeHttp(ANSWER)
    with pytest.raises(InvalidRequest) as info:
        run(OpenAICompatBackend(base_url="http://h/v1", http=http).complete(
            ChatRequest.build(messages=[{"role": "user", "content": "x"}])))
    assert info.value.param == "model" and http.sent == []


def test_vision_is_declared_by_the_preset_or_by_the_caller():
    assert OpenAICompatBackend(preset="openai", api_key="k").capabilities("gpt-4o").vision
    assert not OpenAICompatBackend(preset="ollama").capabilities("llama3").vision
    assert OpenAICompatBackend(preset="ollama", vision=True).capabilities("llava").vision
    assert not OpenAICompatBackend(base_url="http://127.0.0.1:8080/v1").capabilities(None).vision


@pytest.mark.parametrize("status, body, cls", [
    (401, '{"error": {"message": "bad key"}}', AuthenticationFailed),
    (403, "forbidden", AuthenticationFailed),
    (404, '{"error": {"message": "model nope does not exist"}}', ModelNotFound),
    (400, '{"error": {"code": "context_length_exceeded", "message": "maximum context length is 8192"}}',
     ContextWindowExceeded),
    (400, '{"error": {"message": "temperature must be <= 2"}}', EngineRejected),
    (503, "overloaded", ServerError),
])
def test_http_errors_are_typed(status, body, cls):
    error = from_http_status(status, body)
    assert type(error) is cls and str(error).startswith(f"HTTP {status}")


def test_rate_limit_carries_retry_after():
    assert from_http_status(429, "{}", retry_after="3").retry_after == 3.0
    assert from_http_status(429, "{}").retry_after is None
    assert from_http_status(429, "{}", retry_after="Wed, 21 Oct 2015 07:28:00 GMT").retry_after == 0.0
    assert isinstance(from_http_status(429, "{}"), RateLimited)


class SlowOrMissingModels:
    """An http API whose GET /models never answers (``hang``) or answers 404."""

    def __init__(self, *, hang: bool):
        outer = self
        self.cancelled = False
        self.sent = []

        class HttpStream:
            def __init__(self, url, *, method, headers, body, sse):
                outer.sent.append((method, url, headers))

            async def __anext__(self):
                if hang:
                    import asyncio

                    await asyncio.Event().wait()
                raise from_http_status(404, '{"error": {"message": "no such route"}}')

            def cancel(self):
                outer.cancelled = True

            async def aclose(self):
                pass

        self.HttpStream = HttpStream


def test_health_probes_the_model_list_with_a_short_timeout():
    from app.errors import BackendUnreachable

    silent = SlowOrMissingModels(hang=True)
    backend = OpenAICompatBackend(preset="openai", api_key=KEY, http=silent)
    with pytest.raises(BackendUnreachable, match="within 0.05s"):
        run(backend.health(timeout=0.05))
    assert silent.cancelled  # the fetch is aborted, not left running
    assert silent.sent == [("GET", "https://api.openai.com/v1/models", {"Authorization": f"Bearer {KEY}"})]
    run(OpenAICompatBackend(base_url="http://127.0.0.1:9/v1", http=SlowOrMissingModels(hang=False)).health())
