import json
import subprocess
import sys

import pydantic
import pytest

from app.errors import InvalidRequest, OutputParseError
from app.params import ChatRequest
from app.structured import response_format_for, schema_for
from tests.conftest import ROOT

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name"]}


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_pydantic_model_gives_its_schema_and_a_validating_parser():
    schema, parse = schema_for(Person)
    assert schema == Person.model_json_schema()
    assert parse('{"name": "Ada", "age": 36}') == Person(name="Ada", age=36)


@pytest.mark.parametrize("text", ['{"name": "Ada"}', '{"name": "Ada", "age": "old"}', '{"name": "Ad'])
def test_pydantic_parser_raises_a_typed_error_with_the_raw_text(text):
    _, parse = schema_for(Person)
    with pytest.raises(OutputParseError) as info:
        parse(text)
    assert info.value.text == text and "Person" in str(info.value)


def test_dict_schema_parses_json_and_checks_required_keys():
    schema, parse = schema_for(SCHEMA)
    assert schema is SCHEMA
    assert parse('{"name": "Ada", "extra": 1}') == {"name": "Ada", "extra": 1}  # only top-level keys checked
    with pytest.raises(OutputParseError, match=r"lacks required key\(s\) \['name'\]") as info:
        parse('{"age": 3}')
    assert info.value.text == '{"age": 3}'


@pytest.mark.parametrize("text", ["not json", '{"name": "A"', "[1, 2]", '"Ada"'])
def test_dict_schema_refuses_answers_that_are_not_the_object(text):
    _, parse = schema_for(SCHEMA)
    with pytest.raises(OutputParseError):
        parse(text)


def test_top_level_type_is_checked_and_booleans_are_not_numbers():
    _, parse = schema_for({"type": "array"})
    assert parse("[1]") == [1]
    with pytest.raises(OutputParseError, match="asks for array"):
        parse("{}")
    _, parse = schema_for({"type": "number"})
    assert parse("2.5") == 2.5
    with pytest.raises(OutputParseError):
        parse("true")


def test_wrapped_response_formats_are_unwrapped():
    openai_form = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    webllm_form = {"type": "json_object", "schema": json.dumps(SCHEMA)}
    assert schema_for(openai_form)[0] == SCHEMA and schema_for(webllm_form)[0] == SCHEMA


@pytest.mark.parametrize("bad", [
    None, "schema", Person(name="a", age=1), int, [SCHEMA],
    {"type": "json_object", "schema": "{oops"}, {"type": "json_schema", "json_schema": {}},
])
def test_anything_else_is_an_invalid_request(bad):
    with pytest.raises(InvalidRequest) as info:
        schema_for(bad)
    assert info.value.param == "response_format"


def test_response_format_for_is_accepted_by_chat_request():
    fmt = response_format_for(SCHEMA)
    assert fmt == {"type": "json_object", "schema": SCHEMA}
    req = ChatRequest.build(messages=[{"role": "user", "content": "who?"}], response_format=fmt)
    assert json.loads(req.to_openai()["response_format"]["schema"]) == SCHEMA
    with pytest.raises(InvalidRequest):
        response_format_for("{}")


def test_pydantic_is_imported_only_when_a_model_class_is_used():
    code = ("import sys; from app.structured import schema_for; "
            "schema_for({'type': 'object'})[1]('{}'); print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
