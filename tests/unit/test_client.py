"""The public client over WebLLMBackend and a fake engine: what a user of ``client.chat.completions`` sees."""

import asyncio
import gc
import json

import pydantic
import pytest

from app.backends.webllm import WebLLMBackend
from app.client import Client, Stream
from app.errors import InvalidRequest, OutputParseError
from app.ir import ChatCompletion
from tests.unit.conftest import run
from tests.unit.fakes import HERMES, LLAMA, FakeEngineApi, text_of, within


def user(text):
    return [{"role": "user", "content": text}]


async def loaded(model=LLAMA, **fake):
    api = FakeEngineApi(**fake)
    backend = WebLLMBackend(engine_api=api)
    await backend.load(model)
    return api, Client(backend)


async def collect(stream):
    return [chunk async for chunk in stream]


def texts(chunks):
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


# ---------------------------------------------------------------- create


def test_create_returns_the_answer_with_usage_backend_and_merged_system_warning():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"}, {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "How are you?"}]

    async def scenario():
        api, client = await loaded()
        return api, await client.chat.completions.create(messages=messages, temperature=0.2)

    api, reply = run(within(scenario()))
    assert isinstance(reply, ChatCompletion)
    assert reply.choices[0].message.content == "Echo: How are you?"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.backend == "webllm" and reply.model == LLAMA
    assert reply.usage.completion_tokens == 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 4
    assert reply.usage.extra["decode_tokens_per_s"] == 40.0
    [warning] = reply.warnings
    assert "merged 2 system message(s)" in warning and "[0, 3]" in warning
    [sent] = api.sent()
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][0]["content"] == "Be brief.\n\nAnswer in French."
    assert sent["temperature"] == 0.2


def test_max_tokens_cuts_the_answer_with_finish_reason_length():
    async def scenario():
        _, client = await loaded()
        return await client.chat.completions.create(messages=user("one two three four"), max_tokens=2)

    reply = run(within(scenario()))
    assert reply.choices[0].message.content == "Echo: one "
    assert reply.choices[0].finish_reason == "length"


# ---------------------------------------------------------------- streaming


def test_stream_yields_word_chunks_in_order_and_completion_matches():
    async def scenario():
        _, client = await loaded()
        stream = await client.chat.completions.create(messages=user("the quick brown fox"), stream=True,
                                                      stream_options={"include_usage": True})
        async with stream:
            chunks = await collect(stream)
        return stream, chunks

    stream, chunks = run(within(scenario()))
    assert isinstance(stream, Stream)
    assert texts(chunks) == ["Echo: ", "the ", "quick ", "brown ", "fox"]
    final, usage_chunk = chunks[-2], chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    assert usage_chunk.choices == () and usage_chunk.usage.completion_tokens == 5
    assert stream.content == "Echo: the quick brown fox"
    completion = stream.completion()
    assert completion.choices[0].message.content == stream.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage == usage_chunk.usage
    assert completion.backend == "webllm" and completion.model == LLAMA


def test_stream_without_include_usage_has_a_choice_in_every_chunk():
    async def scenario():
        _, client = await loaded()
        stream = await client.chat.completions.create(messages=user("hello"), stream=True)
        # The loop from the client's docstring: it indexes choices[0] of every chunk.
        return "".join([chunk.choices[0].delta.content or "" async for chunk in stream]), stream

    text, stream = run(within(scenario()))
    assert text == "Echo: hello"
    assert stream.completion().usage is None


def test_stop_mid_stream_ends_with_abort_and_the_next_request_works():
    async def scenario():
        api, client = await loaded()
        stream = await client.chat.completions.create(messages=user("one two three four five six"),
                                                      stream=True, stream_options={"include_usage": True})
        first = [await anext(stream), await anext(stream)]
        await stream.stop()
        rest = await collect(stream)
        after = await client.chat.completions.create(messages=user("again"))
        return api, stream, first, rest, after

    api, stream, first, rest, after = run(within(scenario()))
    assert texts(first) == ["Echo: ", "one "]
    assert texts(rest) == []  # nothing more was generated after the stop
    assert rest[0].choices[0].finish_reason == "abort"
    assert rest[-1].usage.completion_tokens == 2
    assert stream.finish_reason == "abort" and stream.content == "Echo: one "
    assert stream.completion().choices[0].finish_reason == "abort"
    assert api.names().count("engine_interrupt") == 1
    assert after.choices[0].message.content == "Echo: again"


def test_stop_before_the_first_chunk_ends_with_abort_and_generates_nothing():
    async def scenario():
        api, client = await loaded()
        stream = await client.chat.completions.create(messages=user("never mind"), stream=True)
        await stream.stop()
        chunks = await collect(stream)
        after = await client.chat.completions.create(messages=user("next"))
        return api, stream, chunks, after

    api, stream, chunks, after = run(within(scenario()))
    assert [c.choices[0].finish_reason for c in chunks] == ["abort"]
    assert stream.content == ""
    assert "ChunkIterator.__anext__" not in api.names()  # the request never reached the engine
    assert after.choices[0].message.content == "Echo: next"


@pytest.mark.parametrize("leave", ["async with", "aclose", "dropped"])
def test_leaving_a_stream_early_interrupts_and_releases_the_engine(leave):
    async def scenario():
        api, client = await loaded()
        stream = await client.chat.completions.create(messages=user("a long answer is coming"), stream=True)
        if leave == "async with":
            async with stream:
                async for _chunk in stream:
                    break
        elif leave == "aclose":
            await anext(stream)
            await stream.aclose()
        else:  # `break` with no `async with` and the stream forgotten: collected, it must not block the engine
            await anext(stream)
            del stream
            gc.collect()
            stream = None
        generating = api.streams[0]
        after = await client.chat.completions.create(messages=user("next"))
        return api, stream, generating, after

    api, stream, generating, after = run(within(scenario()))
    assert "engine_interrupt" in api.names()
    assert api.names().index("engine_interrupt") < api.names().index("engine_chat")
    assert generating.interrupted and generating.closed
    assert stream is None or stream.content == "Echo: "
    assert after.choices[0].message.content == "Echo: next"


def test_cancelling_a_consumer_waiting_for_a_chunk_interrupts_and_releases_the_engine():
    async def scenario():
        api, client = await loaded()
        api.paused = True  # the model is slow to answer
        stream = await client.chat.completions.create(messages=user("slow"), stream=True)
        waiter = asyncio.ensure_future(anext(stream))
        await api.streams[0].waiting.wait()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        api.paused = False
        after = await client.chat.completions.create(messages=user("next"))
        return api, after

    api, after = run(within(scenario()))
    assert "engine_interrupt" in api.names()
    assert after.choices[0].message.content == "Echo: next"


def test_concurrent_requests_are_served_one_at_a_time_in_arrival_order():
    order = []

    async def scenario():
        api, client = await loaded()

        async def streamed():
            stream = await client.chat.completions.create(messages=user("first answer has several words"),
                                                          stream=True)
            async with stream:
                async for chunk in stream:
                    order.append(("chunk", chunk.choices[0].delta.content))
            return stream.content

        async def plain(text):
            order.append(("asked", text))
            reply = await client.chat.completions.create(messages=user(text))
            return reply.choices[0].message.content

        return api, await asyncio.gather(streamed(), plain("second"), plain("third"))

    api, (first, second, third) = run(within(scenario()))
    assert (first, second, third) == ("Echo: first answer has several words", "Echo: second", "Echo: third")
    # The other requests were made while the stream was still producing ...
    last_chunk = max(i for i, o in enumerate(order) if o[0] == "chunk")
    assert order.index(("asked", "second")) < last_chunk and order.index(("asked", "third")) < last_chunk
    # ... and the engine saw them only after the stream had ended, in the order they were made.
    assert [text_of(r["messages"][-1]["content"]) for r in api.sent()] == [
        "first answer has several words", "second", "third"]
    names = api.names()
    last_stream_call = max(i for i, n in enumerate(names) if n.startswith("ChunkIterator"))
    assert names.index("engine_chat") > last_stream_call
    assert api.streams[0].chunks[-1]["choices"][0]["finish_reason"] == "stop"  # not cut short


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("params, param", [
    ({"temperature": 3}, "temperature"),
    ({"temprature": 0.5}, "temprature"),
    ({"top_logprobs": 2}, "top_logprobs"),
    ({"n": 2, "stream": True}, "n"),
])
def test_bad_parameters_are_rejected_before_the_engine_sees_anything(params, param):
    async def scenario():
        api, client = await loaded()
        before = len(api.calls)
        with pytest.raises(InvalidRequest) as caught:
            await client.chat.completions.create(messages=user("hi"), **params)
        return api.names(before), caught.value

    sent, error = run(within(scenario()))
    assert error.param == param
    assert sent == []
    if param == "temprature":
        assert "did you mean 'temperature'" in str(error)


# ---------------------------------------------------------------- structured output


class CalendarEvent(pydantic.BaseModel):
    name: str
    date: str
    participants: list[str]


def test_parse_returns_an_instance_of_the_pydantic_model():
    answer = '{"name": "Science fair", "date": "Friday", "participants": ["Alice", "Bob"]}'

    async def scenario():
        api, client = await loaded(handler=lambda req: answer if req.get("response_format") else "no schema!")
        reply = await client.chat.completions.parse(messages=user("Alice and Bob go to the fair on Friday"),
                                                    response_format=CalendarEvent)
        return api, reply

    api, reply = run(within(scenario()))
    event = reply.choices[0].message.parsed
    assert event == CalendarEvent(name="Science fair", date="Friday", participants=["Alice", "Bob"])
    assert reply.choices[0].message.content == answer
    response_format = api.sent()[-1]["response_format"]
    assert response_format["type"] == "json_object"
    assert json.loads(response_format["schema"]) == CalendarEvent.model_json_schema()


def test_parse_raises_output_parse_error_with_the_text_when_the_answer_is_not_the_json():
    answer = '{"name": "Science fair", "date": "Friday"'  # cut short

    async def scenario():
        _, client = await loaded(handler=lambda req: answer)
        with pytest.raises(OutputParseError) as caught:
            await client.chat.completions.parse(messages=user("the fair"), response_format=CalendarEvent)
        return caught.value

    error = run(within(scenario()))
    assert error.text == answer
    assert "CalendarEvent" in str(error)


# ---------------------------------------------------------------- tools


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


calls_made = []


def get_weather(city: str, unit: str = "C") -> dict:
    """Current weather for a city."""
    calls_made.append({"city": city, "unit": unit})
    return {"city": city, "temp": 21, "unit": unit}


def emulated_handler(request):
    """A model without native tools: calls get_weather when asked for JSON, answers after the result."""
    last = text_of(request["messages"][-1]["content"])
    if last.startswith("Tool result"):
        result = json.loads(last.split("\n", 1)[1])
        return f"It is {result['temp']} degrees in {result['city']}."
    if request.get("response_format", {}).get("schema"):
        return json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]})
    return "I can only talk about the weather."


@pytest.fixture
def weather_calls():
    calls_made.clear()
    yield calls_made
    calls_made.clear()


def test_run_tools_with_emulated_tools_calls_the_function_and_returns_the_final_answer(weather_calls):
    async def scenario():
        api, client = await loaded(handler=emulated_handler)
        result = await client.chat.completions.run_tools(messages=user("Weather in Paris?"), tools=[get_weather],
                                                         model=LLAMA)
        return api, result

    api, result = run(within(scenario()))
    assert weather_calls == [{"city": "Paris", "unit": "C"}]
    assert result.completion.choices[0].message.content == "It is 21 degrees in Paris."
    assert result.steps == 2
    assert [(c.name, c.arguments, c.result) for c in result.calls] == [
        ("get_weather", {"city": "Paris"}, {"city": "Paris", "temp": 21, "unit": "C"})]
    first, second = api.sent()
    assert "tools" not in first and "tools" not in second  # web-llm would refuse tools for this model
    assert "get_weather" in first["messages"][0]["content"]  # described in the system message
    assert json.loads(first["response_format"]["schema"])  # the answer was constrained to a tool call
    assert "response_format" not in second  # free to answer in words after the result
    result_turn = second["messages"][-1]
    assert result_turn["role"] == "user" and result_turn["content"].startswith("Tool result (call_id=call_0")
    assert json.loads(result_turn["content"].split("\n", 1)[1]) == {"city": "Paris", "temp": 21, "unit": "C"}
    assert [m["role"] for m in result.messages] == ["user", "assistant", "tool", "assistant"]


def test_stream_with_emulated_tools_gives_one_chunk_with_the_tool_calls(weather_calls):
    async def scenario():
        api, client = await loaded(handler=emulated_handler)
        stream = await client.chat.completions.create(messages=user("Weather in Paris?"),
                                                      tools=[WEATHER_TOOL], model=LLAMA, stream=True)
        async with stream:
            chunks = [chunk async for chunk in stream]
        return api, stream, chunks

    api, stream, chunks = run(within(scenario()))
    [chunk] = chunks
    [call] = chunk.choices[0].delta.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert chunk.choices[0].finish_reason == "tool_calls"
    assert stream.finish_reason == "tool_calls"
    [tool_call] = stream.completion().choices[0].message.tool_calls
    assert tool_call.function.name == "get_weather"
    assert api.names().count("engine_chat") == 1 and "ChunkIterator" not in api.names()
    assert weather_calls == []  # create() only reports the call; it runs nothing


def test_stream_with_emulated_tools_adds_the_usage_chunk_when_asked():
    async def scenario():
        _, client = await loaded(handler=emulated_handler)
        stream = await client.chat.completions.create(messages=user("Weather in Paris?"), tools=[WEATHER_TOOL],
                                                      stream=True, stream_options={"include_usage": True})
        return stream, [chunk async for chunk in stream]

    stream, (calls_chunk, usage_chunk) = run(within(scenario()))
    assert calls_chunk.choices[0].finish_reason == "tool_calls"
    assert usage_chunk.choices == () and usage_chunk.usage.total_tokens > 0
    assert stream.completion().usage == usage_chunk.usage


def test_native_tool_call_turn_goes_back_to_web_llm_as_text():
    def hermes(request):
        if request["messages"][-1]["role"] == "tool":
            return "Sunny, 21 degrees."
        return json.dumps([{"name": "get_weather", "arguments": {"city": "Oslo"}}])

    async def scenario():
        api, client = await loaded(model=HERMES, handler=hermes)
        messages = user("Weather in Oslo?")
        first = await client.chat.completions.create(messages=messages, tools=[WEATHER_TOOL])
        message = first.choices[0].message
        messages += [message.to_dict(),
                     {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": '{"temp": 21}'}]
        second = await client.chat.completions.create(messages=messages)
        return api, first, second

    api, first, second = run(within(scenario()))
    [call] = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}
    assert first.choices[0].finish_reason == "tool_calls" and first.choices[0].message.content is None
    sent_first, sent_second = api.sent()
    assert sent_first["tools"][0]["function"]["name"] == "get_weather"  # web-llm handles them itself
    assistant = sent_second["messages"][1]  # web-llm refuses an assistant turn without text
    assert json.loads(assistant["content"]) == [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    assert second.choices[0].message.content == "Sunny, 21 degrees."


def test_run_tools_with_native_tools_ends_with_the_answer_in_words(weather_calls):
    def hermes(request):
        if request["messages"][-1]["role"] == "tool":
            return "Sunny, 21 degrees."
        return json.dumps([{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "F"}}])

    async def scenario():
        _, client = await loaded(model=HERMES, handler=hermes)
        return await client.chat.completions.run_tools(messages=user("Weather in Oslo?"), tools=[get_weather])

    result = run(within(scenario()))
    assert weather_calls == [{"city": "Oslo", "unit": "F"}]
    assert result.completion.choices[0].message.content == "Sunny, 21 degrees."
