"""Structured output: a JSON Schema to constrain the model, and a parser for what comes back.

    schema, parse = schema_for(Person)              # a pydantic model class ...
    schema, parse = schema_for({"type": "object", "properties": {...}, "required": [...]})  # ... or a schema
    completion = await client.chat.completions.create(
        messages=messages, response_format=response_format_for(schema))
    person = parse(completion.choices[0].message.content)   # raises OutputParseError if it does not fit

web-llm compiles the schema into a grammar (xgrammar), so a finished answer nearly always fits; the
parser still checks, because an answer cut short by ``max_tokens`` or a stop string does not.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from app.errors import InvalidRequest, OutputParseError

# JSON Schema "type" -> the Python types json.loads produces for it.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "null": (type(None),),
    "integer": (int,), "number": (int, float),
}


def schema_for(response_format: Any) -> tuple[dict[str, Any], Callable[[str], Any]]:
    """The JSON Schema for ``response_format`` and a function that parses an answer against it.

    ``response_format`` is a pydantic model class (the parser returns a model instance, validated by
    pydantic) or a JSON Schema dict (the parser returns what ``json.loads`` gives). OpenAI's wrapped
    forms ``{"type": "json_schema", "json_schema": {"schema": ...}}`` and web-llm's
    ``{"type": "json_object", "schema": ...}`` are unwrapped.

    A dict schema is checked lightly: the answer must be JSON, of the schema's top-level ``type`` if
    it names one, with the top-level ``required`` keys present. Nested parts are not validated, since
    no JSON Schema validator ships in the page; give a pydantic model when that matters.

        schema, parse = schema_for({"type": "object", "required": ["name"]})
        parse('{"name": "Ada"}')      # {'name': 'Ada'}
        parse('{"age": 36}')          # raises OutputParseError; .text is the answer
    """
    if isinstance(response_format, type) and hasattr(response_format, "model_json_schema") \
            and hasattr(response_format, "model_validate_json"):
        return response_format.model_json_schema(), _pydantic_parser(response_format)
    if isinstance(response_format, dict):
        schema = _unwrap(response_format)
        return schema, _dict_parser(schema)
    raise InvalidRequest("response_format: must be a pydantic model class or a JSON Schema dict, got "
                         f"{type(response_format).__name__}", param="response_format")


def response_format_for(schema: dict[str, Any]) -> dict[str, Any]:
    """The ``response_format`` that asks the engine for JSON fitting ``schema``.

        ChatRequest.build(messages=msgs, response_format=response_format_for(schema))
    """
    if not isinstance(schema, dict):
        raise InvalidRequest("response_format: the schema must be a JSON Schema dict",
                             param="response_format")
    return {"type": "json_object", "schema": schema}


def _unwrap(value: dict[str, Any]) -> dict[str, Any]:
    schema: Any = value
    if value.get("type") == "json_schema" and isinstance(value.get("json_schema"), dict):
        schema = value["json_schema"].get("schema")
    elif value.get("type") == "json_object" and "schema" in value:
        schema = value["schema"]
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"response_format: schema is not valid JSON: {exc}",
                                     param="response_format") from None
    if not isinstance(schema, dict):
        raise InvalidRequest("response_format: the schema must be a JSON Schema dict",
                             param="response_format")
    return schema


def _pydantic_parser(model: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        import pydantic  # lazily: only callers who handed us a pydantic class pay for the import

        try:
            return model.model_validate_json(text)
        except pydantic.ValidationError as exc:
            raise OutputParseError(f"the answer does not fit {model.__name__}: {exc}", text=text) from exc

    return parse


def _dict_parser(schema: dict[str, Any]) -> Callable[[str], Any]:
    expected = schema.get("type")
    required = schema.get("required") or ()

    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise OutputParseError(f"the answer is not valid JSON: {exc}", text=text) from exc
        if isinstance(expected, str) and expected in _JSON_TYPES:
            ok = isinstance(value, _JSON_TYPES[expected])
            if isinstance(value, bool) and expected in ("integer", "number"):
                ok = False  # json's true/false are Python ints, not JSON numbers
            if not ok:
                raise OutputParseError(f"the answer is JSON {type(value).__name__}, the schema asks for "
                                       f"{expected}", text=text)
        if required and not isinstance(value, dict):
            raise OutputParseError("the answer is not a JSON object with the required keys", text=text)
        if required:
            missing = [k for k in required if k not in value]
            if missing:
                raise OutputParseError(f"the answer lacks required key(s) {missing}", text=text)
        return value

    return parse
