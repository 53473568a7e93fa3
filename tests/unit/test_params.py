import json

import pytest

from app.errors import InvalidRequest, UsageError
from app.ir import NOT_GIVEN
from app.params import SAMPLING_FIELDS, ChatRequest

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def build(**kwargs):
    kwargs.setdefault("messages", USER)
    return ChatRequest.build(**kwargs)


def rejects(param, **kwargs):
    with pytest.raises(InvalidRequest) as info:
        build(**kwargs)
    assert info.value.param == param, info.value
    return info.value


VALID = {
    "temperature": [0, 0.7, 2], "top_p": [0.01, 1], "max_tokens": [1, 512], "seed": [0, -3, 42],
    "stop": ["###", ["a", "b"]], "frequency_penalty": [-2, 0.5, 2], "presence_penalty": [-2, 2],
    "repetition_penalty": [0.5, 1.1], "logit_bias": [{"50256": -100, 7: 5}], "logprobs": [True, False],
    "n": [1, 16], "ignore_eos": [True, False],
}
INVALID = {
    "temperature": [-0.1, 2.1, "hot", True, float("nan")], "top_p": [0, 1.5, "1"],
    "max_tokens": [0, 1.5, "10", True], "seed": [1.5, "1", False], "stop": ["", [""], ["a"] * 5, [1]],
    "frequency_penalty": [-2.1, 3], "presence_penalty": [2.5, "x"], "repetition_penalty": [0, -1],
    "logit_bias": [[1], {"x": 1}], "logprobs": [1, "yes"], "n": [0, 17, 2.0],
    "ignore_eos": [1], "top_logprobs": [6, -1],
}


def test_every_sampling_field_is_covered():
    assert set(VALID) | {"top_logprobs"} == set(SAMPLING_FIELDS)


@pytest.mark.parametrize("name, value", [(k, v) for k, vs in VALID.items() for v in vs])
def test_valid_sampling_value_reaches_the_engine(name, value):
    sent = build(**{name: value}).to_openai()
    expected = {"stop": [value] if isinstance(value, str) else value,
                "logit_bias": {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
                }.get(name, value)
    assert sent[name] == expected


def test_top_logprobs_passes_with_logprobs():
    assert build(logprobs=True, top_logprobs=3).to_openai()["top_logprobs"] == 3


@pytest.mark.parametrize("name, value", [(k, v) for k, vs in INVALID.items() for v in vs])
def test_bad_sampling_value_names_the_field(name, value):
    kwargs = {name: value}
    if name == "top_logprobs":
        kwargs["logprobs"] = True
    err = rejects(name, **kwargs)
    assert isinstance(err, UsageError) and isinstance(err, ValueError)
    assert str(err).startswith(f"{name}: ")


def test_an_out_of_range_bias_names_its_token():
    assert "<= 100" in str(rejects("logit_bias[7]", logit_bias={"7": 101}))


def test_top_logprobs_needs_logprobs():
    assert "logprobs" in str(rejects("top_logprobs", top_logprobs=2))


def test_fields_not_given_are_not_sent():
    sent = build(temperature=NOT_GIVEN, top_p=None).to_openai()
    assert sent == {"messages": USER}


def test_unknown_field_suggests_a_close_name():
    err = rejects("temprature", temprature=0.5)
    assert "did you mean 'temperature'?" in str(err)
    assert "did you mean" not in str(rejects("zzz", zzz=1))


def test_system_messages_are_merged_at_index_0_with_a_warning():
    req = build(messages=[{"role": "user", "content": "q"}, {"role": "system", "content": "A"},
                          {"role": "system", "content": "B"}, {"role": "user", "content": "q2"}])
    assert [m["role"] for m in req.messages] == ["system", "user", "user"]
    assert req.messages[0]["content"] == "A\n\nB"
    assert req.warnings == (
        "merged 2 system message(s) at positions [1, 2] into one system message at index 0",)


def test_a_single_leading_system_message_is_no_warning():
    req = build(messages=[{"role": "system", "content": "S"}, *USER])
    assert req.warnings == () and req.messages[0] == {"role": "system", "content": "S"}


def test_last_message_must_be_from_user_or_tool():
    err = rejects("messages", messages=[*USER, {"role": "assistant", "content": "x"}])
    assert "last message" in str(err)
    rejects("messages", messages=[{"role": "system", "content": "only a system prompt"}])


def test_a_trailing_system_message_moves_to_the_front():
    req = build(messages=[*USER, {"role": "system", "content": "S"}])
    assert req.messages == ({"role": "system", "content": "S"}, USER[0]) and len(req.warnings) == 1


def test_a_tool_result_may_be_last():
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    msgs = [*USER, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}]
    assert build(messages=msgs).messages[-1] == {"role": "tool", "tool_call_id": "c1", "content": "42"}


@pytest.mark.parametrize("messages, param", [
    ([], "messages"), ("hi", "messages"), (["hi"], "messages[0]"),
    ([{"role": "bot", "content": "x"}], "messages[0].role"),
    ([{"role": "tool", "content": "x"}], "messages[0].tool_call_id"),
    ([{"role": "assistant", "content": None}, *USER], "messages[0].content"),
    ([{"role": "user", "content": [{"type": "video"}]}], "messages[0].content[0]"),
])
def test_malformed_messages_name_the_message(messages, param):
    rejects(param, messages=messages)


def test_n_above_one_is_refused_when_streaming():
    assert build(n=3).params["n"] == 3
    assert "streaming" in str(rejects("n", n=2, stream=True))


def test_stream_options_need_stream():
    rejects("stream_options", stream_options={"include_usage": True})
    sent = build(stream=True, stream_options={"include_usage": True}).to_openai()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    rejects("stream_options", stream=True, stream_options={"other": 1})


def test_json_schema_response_format_becomes_web_llm_schema_string():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    req = build(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert req.response_format["type"] == "json_object"
    assert json.loads(req.response_format["schema"]) == schema
    webllm_form = build(response_format={"type": "json_object", "schema": schema})
    assert webllm_form.response_format == req.response_format


def test_plain_json_and_text_response_formats():
    sent = build(response_format={"type": "json_object"}).to_openai()
    assert sent["response_format"] == {"type": "json_object"}
    assert "response_format" not in build(response_format={"type": "text"}).to_openai()


@pytest.mark.parametrize("fmt", [
    {"type": "xml"}, "json", {"type": "json_schema"},
    {"type": "json_object", "schema": "{not json"}, {"type": "json_object", "schema": 3},
])
def test_bad_response_format_is_refused(fmt):
    rejects("response_format", response_format=fmt)


def test_tools_are_validated_and_sent():
    sent = build(tools=[TOOL], tool_choice="auto").to_openai()
    assert sent["tools"] == [TOOL] and sent["tool_choice"] == "auto"
    named = build(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert named.tool_choice == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize("tools, param", [
    ([], "tools"), ([{"type": "function"}], "tools[0]"),
    ([{"function": {"name": "bad name"}}], "tools[0].function.name"),
    ([TOOL, TOOL], "tools[1].function.name"),
    ([{"function": {"name": "f", "parameters": "x"}}], "tools[0].function.parameters"),
])
def test_bad_tools_name_the_tool(tools, param):
    rejects(param, tools=tools)


def test_tool_choice_must_name_a_known_tool():
    rejects("tool_choice", tools=[TOOL], tool_choice={"type": "function", "function": {"name": "other"}})
    rejects("tool_choice", tools=[TOOL], tool_choice="sometimes")


def test_text_content_parts_become_a_string_and_images_are_kept():
    texts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    req = build(messages=[{"role": "user", "content": texts}])
    assert req.messages[0]["content"] == "a\nb"
    image = {"type": "image_url", "image_url": {"url": PNG}}
    parts = [{"type": "text", "text": "what is"}, image, {"type": "text", "text": "this"}]
    req = build(messages=[{"role": "user", "content": parts}])
    # web-llm takes one text part per message: the images first, then the text joined
    assert req.messages[0]["content"] == [image, {"type": "text", "text": "what is\nthis"}]
    assert req.images == 1 and build(messages=[{"role": "user", "content": "x"}]).images == 0


PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="


def _with(url, role="user", **extra):
    return [{"role": role, "content": [{"type": "image_url", "image_url": {"url": url, **extra}},
                                       {"type": "text", "text": "look"}]}, {"role": "user", "content": "ok"}]


@pytest.mark.parametrize(("url", "role", "extra", "says"), [
    ("data:image/bmp;base64,Qk0=", "user", {}, "with type image/png"),
    ("data:image/png,rawbytes", "user", {}, "with type image/png"),
    ("data:image/png;base64,!!notbase64!!", "user", {}, "not valid base64"),
    ("data:image/jpeg;base64,iVBORw0KGgoAAAANSUhEUg==", "user", {}, "not a image/jpeg image"),
    ("http://example.com/cat.png", "user", {}, "an https URL"),
    ("file:///etc/passwd", "user", {}, "an https URL"),
    (PNG, "system", {}, "only allowed in user messages"),
    (PNG, "user", {"detail": "ultra"}, "'auto', 'low' or 'high'"),
    ("data:image/png;base64," + "A" * (28 * 1024 * 1024), "user", {}, "at most 20 MiB"),
])
def test_bad_images_are_refused_with_a_clear_message(url, role, extra, says):
    with pytest.raises(InvalidRequest, match=says):
        build(messages=_with(url, role, **extra))


def test_image_urls_that_are_accepted_and_the_count_limit():
    for url in (PNG, "https://example.com/cat.png", "http://127.0.0.1:8000/static/cat.png"):
        assert build(messages=_with(url)).images == 1
    assert build(messages=_with(PNG, detail="low")).messages[0]["content"][0] == {
        "type": "image_url", "image_url": {"url": PNG}}  # web-llm refuses detail: dropped
    many = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}] * 9}]
    with pytest.raises(InvalidRequest, match="9 images; at most 8"):
        build(messages=many)


def test_the_same_history_normalises_identically_and_inputs_are_not_changed():
    history = [{"role": "user", "content": [{"type": "text", "text": "q"}]},
               {"role": "system", "content": "S"}, {"role": "assistant", "content": "a"},
               {"role": "user", "content": "q2"}]
    before = json.dumps(history)
    first, second = build(messages=history), build(messages=history)
    assert first.to_openai() == second.to_openai()
    assert json.dumps(history) == before


@pytest.mark.parametrize("kwargs, param", [
    ({"model": ""}, "model"), ({"stream": "yes"}, "stream"), ({"enable_thinking": 1}, "enable_thinking"),
])
def test_other_fields_are_checked(kwargs, param):
    rejects(param, **kwargs)


def test_model_and_thinking_reach_the_engine():
    sent = build(model="Qwen3-0.6B-q4f16_1-MLC", enable_thinking=False).to_openai()
    assert sent["model"] == "Qwen3-0.6B-q4f16_1-MLC" and sent["extra_body"] == {"enable_thinking": False}


def test_newer_openai_names_are_accepted():
    r = ChatRequest.build(messages=[{"role": "developer", "content": "be terse"}, {"role": "user", "content": "hi"}],
                          max_completion_tokens=12, parallel_tool_calls=False)
    assert r.messages[0] == {"role": "system", "content": "be terse"}
    assert r.to_openai()["max_tokens"] == 12 and "parallel_tool_calls" not in r.to_openai()
    with pytest.raises(InvalidRequest) as info:
        ChatRequest.build(messages=[{"role": "user", "content": "hi"}], max_tokens=1, max_completion_tokens=2)
    assert info.value.param == "max_completion_tokens"


def test_malformed_tool_calls_and_usage_flag_are_typed_errors():
    with pytest.raises(InvalidRequest) as info:
        ChatRequest.build(messages=[{"role": "assistant", "content": None, "tool_calls": ["x"]},
                                    {"role": "user", "content": "hi"}])
    assert info.value.param == "messages[0].tool_calls"
    with pytest.raises(InvalidRequest) as info:
        ChatRequest.build(messages=[{"role": "user", "content": "hi"}], stream=True,
                          stream_options={"include_usage": "yes"})
    assert info.value.param == "stream_options"
