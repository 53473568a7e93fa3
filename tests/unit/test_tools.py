import copy
import json
from typing import Literal, Optional

import pytest

from app.errors import InvalidRequest, OutputParseError, ToolLoopLimit
from app.ir import ChatCompletion
from app.params import ChatRequest
from app.tools import (
    TOOLS_PROMPT_HEAD,
    ToolCallRecord,
    emulate,
    parse_emulated,
    run_tools,
    tool_call_schema,
    tool_schema,
    tools_prompt,
)
from tests.unit.conftest import run

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "", "parameters": {"type": "object", "properties": {}}}}
QUESTION = {"role": "user", "content": "Weather in Paris?"}


def request(messages=(QUESTION,), **kwargs):
    kwargs.setdefault("tools", [WEATHER])
    return ChatRequest.build(model="Qwen2.5-1.5B-Instruct-q4f16_1-MLC", messages=list(messages), **kwargs)


def schema_of(req):
    return json.loads(req.response_format["schema"])


def example_of(schema):
    """What a grammar-constrained model writes: the first anyOf alternative, required properties only."""
    if "anyOf" in schema:
        return example_of(schema["anyOf"][0])
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        required = schema.get("required", ())
        return {k: example_of(v) for k, v in schema.get("properties", {}).items() if k in required}
    if kind == "array":
        return [example_of(schema["items"])]
    return {"string": "Paris", "integer": 1, "number": 1.5, "boolean": True}[kind]


def completion(content=None, tool_calls=None, finish="stop"):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = [{"id": f"native_{i}", "type": "function",
                                  "function": {"name": n, "arguments": json.dumps(a)}}
                                 for i, (n, a) in enumerate(tool_calls)]
        finish = "tool_calls"
    return ChatCompletion.from_dict({"id": "c", "created": 1, "model": "m",
                                     "choices": [{"index": 0, "message": message, "finish_reason": finish}]})


# --- emulate ---------------------------------------------------------------------------------------

def test_emulated_request_has_no_tools_and_describes_them_in_a_new_system_message():
    out = emulate(request())
    assert out.tools is None and out.tool_choice is None and "tools" not in out.to_openai()
    assert out.messages[0] == {"role": "system", "content": (
        TOOLS_PROMPT_HEAD + "\n- get_weather: Current weather for a city.\n  parameters: "
        '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}')}
    assert out.messages[1:] == (QUESTION,) and out.model == "Qwen2.5-1.5B-Instruct-q4f16_1-MLC"


def test_tool_descriptions_are_appended_to_an_existing_system_message():
    system = {"role": "system", "content": "Answer briefly."}
    out = emulate(request([system, QUESTION], tools=[WEATHER, TIME]))
    assert out.messages[0]["content"] == "Answer briefly.\n\n" + tools_prompt([WEATHER, TIME])
    assert out.messages[0]["content"].endswith(
        '\n- get_time\n  parameters: {"type": "object", "properties": {}}')


def call_schema(tool):
    return {"type": "object", "properties": {"name": {"type": "string", "enum": [tool["function"]["name"]]},
                                             "arguments": tool["function"]["parameters"]},
            "required": ["name", "arguments"]}


def calls_object(items):
    return {"type": "object", "properties": {"tool_calls": {"type": "array", "items": items}},
            "required": ["tool_calls"]}


CONTENT = {"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]}


def test_auto_lets_the_model_call_a_tool_or_answer():
    assert schema_of(emulate(request())) == {"anyOf": [calls_object(call_schema(WEATHER)), CONTENT]}
    assert schema_of(emulate(request(tool_choice="auto"))) == schema_of(emulate(request()))


def test_required_forces_a_call_to_one_of_the_tools():
    out = emulate(request(tools=[WEATHER, TIME], tool_choice="required"))
    assert schema_of(out) == calls_object({"anyOf": [call_schema(WEATHER), call_schema(TIME)]})


def test_a_named_tool_choice_forces_that_tool_but_still_describes_all():
    named = {"type": "function", "function": {"name": "get_time"}}
    out = emulate(request(tools=[WEATHER, TIME], tool_choice=named))
    assert schema_of(out) == calls_object(call_schema(TIME))
    assert "- get_weather:" in out.messages[0]["content"]


def test_tool_choice_none_describes_no_tools_and_constrains_nothing():
    out = emulate(request(tool_choice="none"))
    assert out.messages == (QUESTION,) and out.response_format is None
    assert tool_call_schema([WEATHER], "none") is None


def test_the_schema_uses_only_portable_keywords():
    allowed = {"type", "properties", "required", "enum", "items", "anyOf"}

    def keywords(node):
        if isinstance(node, dict):
            yield from node
            for key, value in node.items():
                yield from (keywords(value) if key != "properties" else
                            (k for v in value.values() for k in keywords(v)))
        elif isinstance(node, list):
            for value in node:
                yield from keywords(value)
    assert set(keywords(tool_call_schema([WEATHER, TIME]))) <= allowed


TURN_1 = [QUESTION]
CALLED = {"role": "assistant", "content": None, "tool_calls": [
    {"id": f"call_{i}", "type": "function", "function": {"name": "get_weather", "arguments": args}}
    for i, args in enumerate(['{"city": "Paris"}', '{"city": "Lyon"}'])]}
RESULTS = [{"role": "tool", "tool_call_id": "call_0", "content": '{"temp": 21}'},
           {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 24}'}]
TURN_2 = [QUESTION, CALLED, *RESULTS]


def test_past_calls_and_results_become_plain_turns():
    out = emulate(request(TURN_2))
    assert out.messages[2] == {"role": "assistant", "content": (
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
        '{"name": "get_weather", "arguments": {"city": "Lyon"}}]}')}
    assert out.messages[3] == {"role": "user", "content": (
        'Tool result (call_id=call_0, name=get_weather):\n{"temp": 21}\n\n'
        'Tool result (call_id=call_1, name=get_weather):\n{"temp": 24}')}
    assert len(out.messages) == 4 and all(m["role"] != "tool" for m in out.messages)


def test_after_tool_results_the_answer_is_free_text():
    assert emulate(request(TURN_2)).response_format is None
    schema = {"type": "object", "properties": {"temp": {"type": "number"}}}
    own = emulate(request(TURN_2, response_format={"type": "json_object", "schema": schema}))
    assert schema_of(own) == schema  # the caller's own format applies to the answer


def test_emulation_is_deterministic_and_each_turn_extends_the_last():
    first, again = emulate(request(TURN_2)), emulate(request(copy.deepcopy(TURN_2)))
    assert first == again
    turn_1 = emulate(request(TURN_1)).messages
    turn_3 = emulate(request([*TURN_2, {"role": "assistant", "content": "21 and 24."},
                              {"role": "user", "content": "And Nice?"}])).messages
    # web-llm reuses its KV cache when everything before the newest message is what it saw before.
    assert first.messages[:len(turn_1)] == turn_1 and turn_3[:len(first.messages)] == first.messages


def test_tool_history_is_rendered_even_without_tools_now():
    out = emulate(request(TURN_2, tools=None))
    assert out.messages[0] == QUESTION and out.response_format is None
    assert out.messages[-1]["content"].startswith("Tool result (call_id=call_0, name=get_weather)")


# --- parse_emulated --------------------------------------------------------------------------------

def test_a_tool_call_answer_becomes_openai_tool_calls():
    req = request(tools=[WEATHER, TIME])
    answer = ('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, '
              '{"name": "get_time", "arguments": {}}]}')
    choice = parse_emulated(completion(answer), req).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert [(t.id, t.function.name, json.loads(t.function.arguments)) for t in choice.message.tool_calls] == [
        ("call_0", "get_weather", {"city": "Paris"}), ("call_1", "get_time", {})]


def test_a_content_answer_becomes_plain_content():
    choice = parse_emulated(completion('{"content": "No tool needed: hello!"}'), request()).choices[0]
    assert choice.message.content == "No tool needed: hello!" and choice.message.tool_calls is None
    assert choice.finish_reason == "stop"


def test_free_text_after_tool_results_passes_through_unchanged():
    done = completion("It is 21 degrees in Paris.")
    assert parse_emulated(done, request(TURN_2)) == done
    assert parse_emulated(done) == done


@pytest.mark.parametrize("answer", [
    '{"tool_calls": [{"name": "get_weather", "argu', "Sure! Let me check.", '{"tool_calls": []}',
    '{"tool_calls": [{"name": "rm_rf", "arguments": {}}]}',
])
def test_a_required_tool_call_that_does_not_parse_is_a_typed_error(answer):
    with pytest.raises(OutputParseError) as info:
        parse_emulated(completion(answer), request(tool_choice="required"))
    assert info.value.text == answer


def test_the_error_says_when_the_answer_was_cut_short():
    with pytest.raises(OutputParseError, match="finish_reason=length"):
        parse_emulated(completion('{"tool_calls": [', finish="length"), request())


def test_a_native_tool_call_is_left_alone():
    native = completion(tool_calls=[("get_weather", {"city": "Oslo"})])
    assert parse_emulated(native, request()) == native


@pytest.mark.parametrize("tool_choice", [
    "auto", "required", {"type": "function", "function": {"name": "get_weather"}}])
def test_what_a_constrained_model_writes_parses_back_into_a_call(tool_choice):
    req = request(tools=[WEATHER, TIME], tool_choice=tool_choice)
    written = json.dumps(example_of(schema_of(emulate(req))))
    call = parse_emulated(completion(written), req).choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


# --- tool_schema -----------------------------------------------------------------------------------

def get_weather(city: str, unit: Literal["C", "F"] = "C", days: Optional[int] = None,
                tags: list[str] | None = None, detailed: bool = False, lat: float = 0.0,
                extra: dict = {}) -> dict:  # noqa: B006 (never mutated)
    """Current weather for a city.

    Longer notes the model does not need.
    """
    return {"city": city, "temp": 21, "unit": unit}


def test_a_function_schema_comes_from_signature_hints_and_docstring():
    assert tool_schema(get_weather) == {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "required": ["city"], "properties": {
            "city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]},
            "days": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}},
            "detailed": {"type": "boolean"}, "lat": {"type": "number"}, "extra": {"type": "object"}}}}}


def test_optional_without_default_is_required_and_may_be_null():
    def f(x: int | None, *args, **kwargs):
        pass
    params = tool_schema(f)["function"]["parameters"]
    assert params == {"type": "object", "required": ["x"],
                      "properties": {"x": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}
    assert tool_schema(f)["function"]["description"] == ""


@pytest.mark.parametrize("fn", [lambda x: x, lambda x, /: x])
def test_parameters_the_model_cannot_fill_are_refused(fn):
    with pytest.raises(InvalidRequest) as info:
        tool_schema(fn)
    assert info.value.param == "tools"


def test_a_type_without_json_schema_is_refused_with_a_way_out():
    def f(when: complex):
        pass
    with pytest.raises(InvalidRequest, match=r"f\(when\).*pass \(fn, schema\)"):
        tool_schema(f)


# --- run_tools -------------------------------------------------------------------------------------

class ScriptedModel:
    """A fake ``create`` that answers from a script and records every request it gets."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests = []

    async def __call__(self, **kwargs):
        self.requests.append(copy.deepcopy(kwargs))
        return self.answers.pop(0)


def test_run_tools_calls_the_tool_and_returns_the_final_answer():
    seen = []

    def weather(city: str, unit: str = "C") -> dict:
        """Current weather for a city."""
        seen.append((city, unit))
        return {"city": city, "temp": 21}

    model = ScriptedModel(completion(tool_calls=[("weather", {"city": "Paris"})]),
                          completion("It is 21 degrees in Paris."))
    result = run(run_tools(model, messages=[QUESTION], tools=[weather], model="m", temperature=0))

    assert seen == [("Paris", "C")]
    assert result.completion.choices[0].message.content == "It is 21 degrees in Paris."
    assert result.steps == 2
    assert result.calls == [ToolCallRecord("weather", {"city": "Paris"}, {"city": "Paris", "temp": 21})]
    first, second = model.requests
    assert first["messages"] == [QUESTION] and first["tools"] == [tool_schema(weather)]
    assert first["model"] == "m" and first["temperature"] == 0
    assert second["messages"][1]["tool_calls"][0]["function"]["name"] == "weather"
    assert second["messages"][2] == {"role": "tool", "tool_call_id": "native_0",
                                     "content": json.dumps({"city": "Paris", "temp": 21})}
    final = {"role": "assistant", "content": "It is 21 degrees in Paris."}
    assert result.messages == [*second["messages"], final]


def test_async_tools_and_explicit_schemas_work():
    async def lookup(q):
        return f"found {q}"

    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    model = ScriptedModel(completion(tool_calls=[("lookup", {"q": "pyodide"})]), completion("done"))
    result = run(run_tools(model, messages=[QUESTION], tools=[(lookup, schema)]))
    assert result.calls[0].result == "found pyodide"
    assert model.requests[0]["tools"][0]["function"]["parameters"] == schema


@pytest.mark.parametrize("call, error", [
    (("add", {"a": 1}), "bad arguments for add: missing a required argument: 'b'"),
    (("add", {"a": 1, "b": 2, "c": 3}), "bad arguments for add"),
    (("mul", {"a": 1}), "unknown tool 'mul'; the tools are add"),
    (("add", {"a": 1, "b": 0}), "ZeroDivisionError: division by zero"),
])
def test_a_failed_call_goes_back_to_the_model_as_an_error_result(call, error):
    def add(a: int, b: int) -> float:
        """Add."""
        return a / b if b == 0 else a + b

    model = ScriptedModel(completion(tool_calls=[call]), completion("sorry"))
    result = run(run_tools(model, messages=[QUESTION], tools=[add]))
    sent = json.loads(model.requests[1]["messages"][-1]["content"])
    assert error in sent["error"] and result.calls[0].result == sent
    assert result.completion.choices[0].message.content == "sorry"


def test_arguments_that_are_not_a_json_object_are_an_error_result():
    call = {"id": "x", "function": {"name": "add", "arguments": "{a: 1"}}
    broken = ChatCompletion.from_dict({"choices": [{"finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [call]}}]})

    def add(a: int) -> int:
        return a

    model = ScriptedModel(broken, completion("ok"))
    run(run_tools(model, messages=[QUESTION], tools=[add]))
    assert "not valid JSON" in json.loads(model.requests[1]["messages"][-1]["content"])["error"]


def test_max_steps_bounds_the_loop():
    def ping() -> str:
        return "pong"

    model = ScriptedModel(*[completion(tool_calls=[("ping", {})]) for _ in range(3)])
    with pytest.raises(ToolLoopLimit) as info:
        run(run_tools(model, messages=[QUESTION], tools=[ping], max_steps=3))
    assert len(model.requests) == 3 and info.value.steps == 3 and len(info.value.calls) == 3
    assert info.value.messages[-1] == {"role": "tool", "tool_call_id": "native_0", "content": '"pong"'}


def test_a_forcing_tool_choice_applies_to_the_first_call_only():
    def ping() -> str:
        return "pong"

    model = ScriptedModel(completion(tool_calls=[("ping", {})]), completion("done"))
    run(run_tools(model, messages=[QUESTION], tools=[ping], tool_choice="required"))
    assert [r["tool_choice"] for r in model.requests] == ["required", "auto"]


@pytest.mark.parametrize("kwargs, param", [
    ({"max_steps": 0}, "max_steps"), ({"max_steps": True}, "max_steps"), ({"tools": []}, "tools"),
    ({"tools": ["get_weather"]}, "tools"), ({"tools": [(print, "schema")]}, "tools"),
    ({"stream": True}, "stream"), ({"messages": []}, "messages"),
    ({"tools": [get_weather, get_weather]}, "tools[1].function.name"),
])
def test_bad_inputs_are_refused_before_the_model_is_asked(kwargs, param):
    model = ScriptedModel()
    kwargs = {"messages": [QUESTION], "tools": [get_weather], **kwargs}
    with pytest.raises(InvalidRequest) as info:
        run(run_tools(model, **kwargs))
    assert info.value.param == param and model.requests == []


def test_run_tools_over_emulation_end_to_end():
    """A model without native tools: requests are emulated, answers parsed back, the loop still works."""
    async def create(**kwargs):
        original = ChatRequest.build(**kwargs)
        sent = emulate(original)
        if sent.response_format:  # constrained: the grammar makes it write the schema's first alternative
            text = json.dumps(example_of(json.loads(sent.response_format["schema"])))
        else:
            text = "It is 21 degrees in " + json.loads(sent.messages[-1]["content"].split("\n", 1)[1])["city"]
        return parse_emulated(completion(text), original)

    result = run(run_tools(create, messages=[QUESTION], tools=[get_weather],
                           model="Qwen2.5-1.5B-Instruct-q4f16_1-MLC"))
    assert result.calls[0][:2] == ("get_weather", {"city": "Paris"})
    assert result.completion.choices[0].message.content == "It is 21 degrees in Paris"
