import pytest

from app.ir import NOT_GIVEN, ChatCompletion, ChatCompletionAccumulator, ChatCompletionChunk, NotGiven

# Shapes as web-llm 0.2.x returns them (usage.extra carries its speed figures).
WEBLLM_COMPLETION = {
    "id": "chatcmpl-1", "object": "chat.completion", "created": 1700000000,
    "model": "Qwen2.5-0.5B-Instruct-q4f16_1-MLC",
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Hello!"}}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
              "extra": {"prefill_tokens_per_s": 250.5, "decode_tokens_per_s": 40.1, "e2e_latency_s": 0.4}},
    "system_fingerprint": "ignored",
}
WEBLLM_TOOL_COMPLETION = {
    "id": "chatcmpl-2", "created": 1, "model": "Hermes-3-Llama-3.1-8B-q4f16_1-MLC",
    "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [
            {"id": "0", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"type": "function", "function": {"name": "get_time"}}]}}],
}


def chunk(content=None, *, role=None, finish=None, tools=None, usage=None, choices=True):
    delta = {k: v for k, v in {"content": content, "role": role, "tool_calls": tools}.items()
             if v is not None}
    return ChatCompletionChunk.from_dict({
        "id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 5, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else [],
        **({"usage": usage} if usage else {}),
    })


def test_completion_reads_web_llm_shape():
    c = ChatCompletion.from_dict(WEBLLM_COMPLETION, warnings=("merged",), backend="webllm")
    assert c.choices[0].message.content == "Hello!" and c.choices[0].finish_reason == "stop"
    assert (c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.total_tokens) == (12, 3, 15)
    assert c.usage.extra["decode_tokens_per_s"] == 40.1
    assert c.model == "Qwen2.5-0.5B-Instruct-q4f16_1-MLC"
    assert c.warnings == ("merged",) and c.backend == "webllm"


def test_missing_total_tokens_is_the_sum_and_no_usage_is_none():
    c = ChatCompletion.from_dict({**WEBLLM_COMPLETION, "usage": {"prompt_tokens": 2, "completion_tokens": 5}})
    assert c.usage.total_tokens == 7 and c.usage.extra == {}
    assert ChatCompletion.from_dict({**WEBLLM_COMPLETION, "usage": None}).usage is None


def test_tool_calls_are_read_and_round_trip_as_a_request_message():
    message = ChatCompletion.from_dict(WEBLLM_TOOL_COMPLETION).choices[0].message
    first, second = message.tool_calls
    assert (first.id, first.function.name, first.function.arguments) == (
        "0", "get_weather", '{"city": "Paris"}')
    assert (second.id, second.function.arguments) == ("call_1", "{}")  # missing id/arguments get defaults
    assert message.to_dict() == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "0", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]}


def test_plain_message_to_dict_has_no_tool_calls_key():
    message = ChatCompletion.from_dict(WEBLLM_COMPLETION).choices[0].message
    assert message.to_dict() == {"role": "assistant", "content": "Hello!"}


def test_chunk_reads_delta_and_usage_only_chunk():
    c = chunk("Hel", role="assistant")
    assert c.choices[0].delta.content == "Hel" and c.choices[0].delta.role == "assistant" and c.usage is None
    last = chunk(choices=False,
                 usage={"prompt_tokens": 4, "completion_tokens": 2, "extra": {"e2e_latency_s": 1}})
    assert last.choices == () and last.usage.total_tokens == 6 and last.usage.extra == {"e2e_latency_s": 1}


def test_accumulator_folds_text_finish_reason_and_usage():
    acc = ChatCompletionAccumulator()
    for c in [chunk("", role="assistant"), chunk("Hel"), chunk("lo"), chunk(finish="stop"),
              chunk(choices=False, usage={"prompt_tokens": 4, "completion_tokens": 2})]:
        acc.add(c)
    assert acc.content() == "Hello" and acc.finish_reason() == "stop"
    done = acc.completion(backend="webllm")
    assert done.choices[0].message.content == "Hello" and done.choices[0].message.tool_calls is None
    assert done.usage.total_tokens == 6 and done.id == "chatcmpl-9" and done.backend == "webllm"


def test_accumulator_joins_tool_call_deltas_by_index():
    acc = ChatCompletionAccumulator()
    acc.add(chunk(tools=[{"index": 0, "id": "call_a", "function": {"name": "get_", "arguments": ""}}]))
    acc.add(chunk(tools=[{"index": 0, "function": {"name": "weather", "arguments": '{"city": '}}]))
    acc.add(chunk(tools=[{"index": 1, "id": "call_b", "function": {"name": "now"}}]))
    acc.add(chunk(tools=[{"index": 0, "function": {"arguments": '"Oslo"}'}}]))
    acc.add(chunk(finish="tool_calls"))
    choice = acc.completion().choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [(t.id, t.function.name, t.function.arguments) for t in choice.message.tool_calls] == [
        ("call_a", "get_weather", '{"city": "Oslo"}'), ("call_b", "now", "{}")]


def test_accumulator_of_an_empty_stream_is_empty():
    assert ChatCompletionAccumulator().completion().choices == ()


def test_not_given_is_a_falsy_singleton_distinct_from_none():
    assert NotGiven() is NOT_GIVEN and not NOT_GIVEN and NOT_GIVEN is not None
    assert repr(NOT_GIVEN) == "NOT_GIVEN"


def test_ir_is_frozen():
    c = ChatCompletion.from_dict(WEBLLM_COMPLETION)
    with pytest.raises(AttributeError):
        c.model = "other"


@pytest.mark.parametrize("delta", [{"content": "a", "role": "assistant"}, {"content": ""},
                                   {"content": "x", "reasoning_content": "why"}])
def test_a_chunk_rebuilt_from_its_text_equals_the_chunk_read_whole(delta):
    from app.ir import content_chunk

    def raw(d):
        return {"id": "c1", "object": "chat.completion.chunk", "created": 7, "model": "m",
                "choices": [{"index": 0, "delta": d, "finish_reason": None, "logprobs": None}]}

    before = ChatCompletionChunk.from_dict(raw(delta))
    assert content_chunk(before, "next ") == ChatCompletionChunk.from_dict(raw({**delta, "content": "next "}))
