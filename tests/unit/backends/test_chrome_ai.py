"""Chrome's built-in model backend under CPython: stop sequences and budgets, the prompt it sends,
usage, error names, availability before anything runs (with a fake of app.ffi's Prompt API part)."""

from __future__ import annotations

import pytest

from app.backends.chrome_ai import ChromeAIBackend, OutputLimiter, response_constraint, to_prompt, usage_of
from app.client import Client
from app.errors import (
    Aborted,
    BuiltInModelUnavailable,
    ContextWindowExceeded,
    EngineError,
    FeatureUnsupported,
    InvalidRequest,
    ModelFetchFailed,
    ModelNotDownloaded,
    OutputParseError,
    UsageError,
    from_prompt_api,
)
from app.params import ChatRequest
from app.router import Route, Router
from tests.unit.conftest import run

USER = [{"role": "user", "content": "hi"}]


def feed_all(limit: OutputLimiter, pieces: list[str]) -> str:
    return "".join(limit.feed(p) for p in pieces) + limit.finish()


@pytest.mark.parametrize("pieces, stop, expected, reason", [
    (["Hello", " wor", "ld"], ["\n"], "Hello world", None),
    (["one\ntwo"], ["\n"], "one", "stop"),
    (["ab", "c<", "/e", "nd>tail"], ["</end>"], "abc", "stop"),  # split across pieces
    (["ab", "c<", "/x"], ["</end>"], "abc</x", None),  # held back, then released
    (["a<", "/en"], ["</end>"], "a</en", None),  # the answer ends on a partial stop: shown
    (["xAByz"], ["yz", "AB"], "x", "stop"),  # the earliest stop wins
])
def test_stop_sequences_are_applied_as_text_arrives(pieces, stop, expected, reason):
    limit = OutputLimiter(stop=stop)
    assert feed_all(limit, pieces) == expected
    assert limit.finish_reason == reason


def test_token_budget_cuts_at_four_characters_a_token():
    limit = OutputLimiter(max_tokens=2)
    assert limit.feed("1234") == "1234"
    assert limit.feed("56789") == "5678"
    assert limit.finish_reason == "length"
    assert limit.feed("more") == "" and limit.finish() == ""


def test_prompt_is_system_as_initial_prompts_and_the_rest_as_messages():
    request = ChatRequest.build(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a"},
                                          {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}])
    assert to_prompt(request) == ([{"role": "system", "content": "Be brief."}],
                                  [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                   {"role": "user", "content": "c"}])
    tool_turn = ChatRequest.build(messages=[{"role": "user", "content": "x"},
                                            {"role": "tool", "tool_call_id": "c1", "content": "{}"}])
    with pytest.raises(InvalidRequest):
        to_prompt(tool_turn)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert response_constraint(ChatRequest.build(messages=USER, response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})) == schema
    assert response_constraint(ChatRequest.build(messages=USER, response_format={"type": "json_object"})) == {
        "type": "object"}


def test_usage_from_context_usage_or_estimated():
    measured = usage_of(before=3, prompt_tokens=4, after=12, prompt_text="x" * 40, output="y" * 40)
    assert (measured.prompt_tokens, measured.completion_tokens, measured.extra) == (7, 5, {"estimated": False})
    # An aborted prompt leaves the session as it was: the answer's tokens are estimated.
    cut = usage_of(before=3, prompt_tokens=4, after=3, prompt_text="", output="y" * 9)
    assert (cut.prompt_tokens, cut.completion_tokens, cut.extra) == (7, 3, {"estimated": True})
    unknown = usage_of(before=None, prompt_tokens=None, after=None, prompt_text="x" * 8, output="y" * 4)
    assert (unknown.prompt_tokens, unknown.completion_tokens, unknown.total_tokens) == (2, 1, 3)


@pytest.mark.parametrize("name, cls", [
    ("NotSupportedError", FeatureUnsupported), ("QuotaExceededError", ContextWindowExceeded),
    ("AbortError", Aborted), ("NetworkError", ModelFetchFailed), ("NotAllowedError", ModelNotDownloaded),
    ("SyntaxError", OutputParseError), ("UnknownError", EngineError),
])
def test_prompt_api_errors_by_name(name, cls):
    error = from_prompt_api(name, "it failed")
    assert type(error) is cls and error.original == f"{name}: it failed"


class FakeSession:
    def __init__(self, api, options):
        self.api, self.options = api, options
        self.destroyed = False

    def usage(self):
        return {"used": 0, "window": self.api.window}

    async def measure(self, prompt, options=None):
        return float(sum(len(m["content"].split()) + 1 for m in prompt))

    async def prompt(self, prompt, options=None):
        self.api.prompts.append((prompt, options))
        return self.api.answer

    def destroy(self):
        self.destroyed = True


class FakePromptStream:
    """The answer's words as pieces; ``cancel()`` makes the next read fail with Aborted."""

    def __init__(self, api, session, prompt, options=None):
        api.prompts.append((prompt, options))
        self._pieces = [w + " " for w in api.answer.split()]
        self._cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._cancelled:
            raise from_prompt_api("AbortError", "the prompt was cancelled")
        if not self._pieces:
            raise StopAsyncIteration
        return self._pieces.pop(0)

    async def aclose(self):
        self._pieces = []

    def cancel(self):
        self._cancelled = True


class FakePromptApi:
    """app.ffi.prompt_api (its PromptApiBridge Protocol), scripted: ``state`` for availability,
    ``answer`` for prompts."""

    def __init__(self, state="available", present=True, answer="Hello there", window=100):
        self.state, self.present, self.answer, self.window = state, present, answer, window
        self.created: list[FakeSession] = []
        self.prompts: list = []

    def prompt_api_present(self):
        return self.present

    async def prompt_api_availability(self, options):
        return self.state

    async def prompt_api_create(self, options, on_progress=None):
        if on_progress is not None:
            on_progress(0.0)
            on_progress(1.0)
        session = FakeSession(self, options)
        self.created.append(session)
        return session

    def PromptStream(self, session, prompt, options=None):  # noqa: N802 (the bridge's class name)
        return FakePromptStream(self, session, prompt, options)


def test_unavailable_is_a_typed_error_before_anything_is_created():
    for api in (FakePromptApi(present=False), FakePromptApi(state="unavailable")):
        backend = ChromeAIBackend(api=api)
        with pytest.raises(BuiltInModelUnavailable):
            run(Client(backend).chat.completions.create(messages=USER))
        assert api.created == [] and backend.unavailable


def test_router_skips_it_once_known_unavailable_and_falls_back_before():
    from tests.unit.test_router import Fake

    api = FakePromptApi(state="unavailable")
    chrome, cloud = ChromeAIBackend(api=api), Fake("cloud")
    router = Router([Route(chrome), Route(cloud, priority=1)])
    first = run(Client(router).chat.completions.create(messages=USER))
    assert (first.backend, first.route) == ("cloud", "policy priority, fallback #1")  # tried: said unavailable
    _, skipped = router.plan(ChatRequest.build(messages=USER))
    assert skipped == ["chrome-ai: the built-in model is unavailable here for languages en"]


def test_answer_with_stop_sequence_usage_and_the_session_destroyed():
    api = FakePromptApi(answer="one two. three")
    progress = []
    backend = ChromeAIBackend(api=api, on_progress=lambda r: progress.append(r["progress"]))
    reply = run(Client(backend).chat.completions.create(messages=USER, stop=["."], temperature=0.5))
    assert reply.choices[0].message.content == "one two"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 2 and reply.backend == "chrome-ai"
    assert progress == [0.0, 1.0] and backend.loaded == "chrome-built-in" and backend.context_window == 100
    assert "temperature" not in api.created[0].options  # only with top_k (see the module docstring)
    assert all(s.destroyed for s in api.created)
    with_k = ChromeAIBackend(api=api, top_k=3)
    run(Client(with_k).chat.completions.create(messages=USER, temperature=0.5))
    assert (api.created[-1].options["temperature"], api.created[-1].options["topK"]) == (0.5, 3)


def test_a_prompt_longer_than_the_window_fails_before_the_model_runs():
    api = FakePromptApi(window=3)
    with pytest.raises(ContextWindowExceeded):
        run(Client(ChromeAIBackend(api=api)).chat.completions.create(messages=[{"role": "user", "content": "a b c d"}]))
    assert api.prompts == [] and api.created[0].destroyed


@pytest.mark.parametrize("params", [{"logprobs": True}, {"n": 2}, {"logit_bias": {"1": 2}}])
def test_what_it_cannot_honour_is_refused_before_anything_runs(params):
    api = FakePromptApi()
    with pytest.raises(InvalidRequest):
        run(Client(ChromeAIBackend(api=api)).chat.completions.create(messages=USER, **params))
    assert api.created == []


def test_bad_configuration():
    with pytest.raises(UsageError):
        ChromeAIBackend(languages=())
    with pytest.raises(UsageError):
        ChromeAIBackend(top_k=0)
