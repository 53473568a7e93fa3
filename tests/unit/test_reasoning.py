"""A thinking model's reasoning apart from its answer: the splitter on its own (every split point of the
tags), and through the client over the real web-llm backend with the fake engine API."""

import pytest

from app.backends.webllm import WebLLMBackend
from app.client import Client
from app.ir import ChatCompletionChunk
from app.reasoning import ThinkSplitter, split_think
from tests.unit.conftest import run
from tests.unit.fakes import LLAMA, FakeEngineApi

THOUGHT = "<think>\nThe user greets me.\nI should greet back.\n</think>\n\nHello! How can I help?"


def feed_all(pieces):
    splitter = ThinkSplitter()
    reasoning, content = "", ""
    for piece in pieces:
        r, c = splitter.feed(piece)
        reasoning, content = reasoning + r, content + c
    r, c = splitter.end()
    return reasoning + r, content + c


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 1000])
def test_any_split_of_the_stream_gives_the_same_reasoning_and_answer(size):
    pieces = [THOUGHT[i:i + size] for i in range(0, len(THOUGHT), size)]
    assert feed_all(pieces) == ("The user greets me.\nI should greet back.", "Hello! How can I help?")


def test_answers_without_a_leading_think_block_pass_through_untouched():
    for text in ("Hello", "  <b>bold</b>", "Use <think> tags like this: <think>x</think>", "<", "\n\n"):
        assert feed_all([text[i:i + 2] for i in range(0, len(text), 2)]) == ("", text)
    splitter = ThinkSplitter()
    splitter.feed("Hi")
    assert splitter.passthrough  # from then on, nothing is looked at


def test_cut_off_while_thinking_is_all_reasoning_and_empty_thinking_gives_the_answer():
    assert split_think("<think>\nstill thinking about it") == ("still thinking about it", "")
    assert split_think("<think>\n\n</think>\n\nQuick answer") == ("", "Quick answer")  # enable_thinking=false


def test_the_client_streams_reasoning_and_answer_apart_and_never_sends_reasoning_back():
    api = FakeEngineApi(handler=lambda request: THOUGHT)

    async def scenario():
        backend = WebLLMBackend(engine_api=api)
        await backend.load(LLAMA)
        client = Client(backend)
        stream = await client.chat.completions.create(messages=[{"role": "user", "content": "hi"}], stream=True)
        chunks: list[ChatCompletionChunk] = [c async for c in stream]
        whole = await client.chat.completions.create(messages=[{"role": "user", "content": "hi"}])
        return chunks, stream, whole

    chunks, stream, whole = run(scenario())
    thinking = [c.choices[0].delta.reasoning_content for c in chunks if c.choices and c.choices[0].delta.reasoning_content]
    answer = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(thinking) >= 3 and len(answer) >= 3  # both streamed, piece by piece
    assert "".join(thinking) == stream.reasoning == "The user greets me.\nI should greet back."
    assert "".join(answer) == stream.content == "Hello! How can I help?"
    message = stream.completion().choices[0].message
    assert message.reasoning_content == stream.reasoning and "reasoning_content" not in message.to_dict()
    assert message.to_dict() == {"role": "assistant", "content": "Hello! How can I help?"}
    assert whole.choices[0].message.content == "Hello! How can I help?"
    assert whole.choices[0].message.reasoning_content == "The user greets me.\nI should greet back."


def test_reasoning_content_sent_by_a_server_is_kept_as_is():
    chunk = ChatCompletionChunk.from_dict({"id": "x", "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]})
    assert chunk.choices[0].delta.reasoning_content == "hm" and chunk.choices[0].delta.content is None
    other = ChatCompletionChunk.from_dict({"id": "x", "choices": [{"index": 0, "delta": {"reasoning": "also"}}]})
    assert other.choices[0].delta.reasoning_content == "also"
