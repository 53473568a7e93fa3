"""Tool calling for every model: native where web-llm has it, emulated with a JSON schema elsewhere.

web-llm calls tools itself only for the Hermes-2-Pro / Hermes-3 models (its ``functionCallingModelIds``);
it rejects ``tools`` for any other model, and the other models' chat templates have no ``tool`` role.
For those, :func:`emulate` rewrites the request (tools described in the system message, past calls and
results as plain turns, the answer constrained by a JSON schema) and :func:`parse_emulated` turns the
JSON answer back into OpenAI-shaped ``tool_calls``. The caller sees the same shapes either way.

:func:`run_tools` runs the whole loop with Python functions as tools::

    def get_weather(city: str, unit: str = "C") -> dict:
        "Current weather for a city."
        return {"city": city, "temp": 21, "unit": unit}

    result = await run_tools(client.chat.completions.create, model=model_id,
                             messages=[{"role": "user", "content": "Weather in Paris?"}],
                             tools=[get_weather])
    result.completion.choices[0].message.content   # the final answer
"""

from __future__ import annotations

import inspect
import json
import types
import typing
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, NamedTuple

from app.errors import InvalidRequest, OutputParseError, ToolLoopLimit
from app.ir import ChatCompletion, Choice, FunctionCall, ToolCall
from app.params import ChatRequest
from app.structured import response_format_for

# The system-message text that describes the tools. It depends only on the tools, never on the turn
# or tool_choice, so every turn of a conversation carries the same system message and web-llm can
# keep reusing its KV cache for the shared prefix.
TOOLS_PROMPT_HEAD = (
    "You have access to tools. To call tools, reply with only a JSON object of this form:\n"
    '{"tool_calls": [{"name": "<tool name>", '
    '"arguments": {<arguments as the tool\'s parameters describe>}}]}\n'
    'Tool results come back in messages that start with "Tool result". '
    "When you do not need a tool, answer the user directly.\n"
    "\n"
    "Tools:"
)
TOOL_RESULT_HEAD = "Tool result (call_id={id}{name}):\n"


def tools_prompt(tools: typing.Sequence[dict[str, Any]]) -> str:
    """The fixed wording that describes ``tools`` (validated OpenAI tool dicts) to the model.

        tools_prompt(request.tools)   # 'You have access to tools. ...\\n\\nTools:\\n- get_weather: ...'
    """
    lines = [TOOLS_PROMPT_HEAD]
    for tool in tools:
        fn = tool["function"]
        description = (fn.get("description") or "").strip()
        lines.append(f"- {fn['name']}: {description}" if description else f"- {fn['name']}")
        lines.append("  parameters: " + json.dumps(fn.get("parameters") or {}, ensure_ascii=False))
    return "\n".join(lines)


def tool_call_schema(tools: typing.Sequence[dict[str, Any]],
                     tool_choice: Any = "auto") -> dict[str, Any] | None:
    """The JSON schema an emulated answer must fit, or None for ``tool_choice="none"``.

    It uses only type/properties/required/enum/items/anyOf, so every grammar engine takes it. With
    ``"auto"`` (or None) the answer may instead be ``{"content": "..."}``; the tool-call alternative
    comes first.

        tool_call_schema(tools, "required")
        # {"type": "object", "properties": {"tool_calls": {"type": "array", "items": ...}},
        #  "required": ["tool_calls"]}
    """
    choice = "auto" if tool_choice is None else tool_choice
    if not tools or choice == "none":
        return None
    chosen = list(tools)
    if isinstance(choice, dict):
        chosen = [t for t in tools if t["function"]["name"] == choice["function"]["name"]]
    calls = [{"type": "object",
              "properties": {"name": {"type": "string", "enum": [t["function"]["name"]]},
                             "arguments": t["function"].get("parameters") or {"type": "object"}},
              "required": ["name", "arguments"]} for t in chosen]
    items = calls[0] if len(calls) == 1 else {"anyOf": calls}
    schema: dict[str, Any] = {"type": "object",
                              "properties": {"tool_calls": {"type": "array", "items": items}},
                              "required": ["tool_calls"]}
    if choice == "auto":
        schema = {"anyOf": [schema, {"type": "object", "properties": {"content": {"type": "string"}},
                                     "required": ["content"]}]}
    return schema


def emulate(request: ChatRequest) -> ChatRequest:
    """The request rewritten for a model without native tool calling: no ``tools``, same meaning.

    - The tools are described in the system message (:func:`tools_prompt`; a system message is created
      at index 0 if there is none). ``tool_choice="none"`` describes none.
    - Earlier assistant tool calls become the JSON text the model would have written; ``tool`` results
      become user messages headed ``Tool result (call_id=..., name=...):`` (consecutive results share
      one message, so the history before the newest message stays exactly what web-llm saw last turn).
    - When the last message is from the user, ``response_format`` is :func:`tool_call_schema`. After tool
      results the answer is free text (or the request's own ``response_format``), so the model can answer.

    The same history always gives the same messages. Pass the result's completion and the ORIGINAL
    request to :func:`parse_emulated`::

        completion = parse_emulated(await backend.complete(emulate(request)), request)
    """
    choice = "auto" if request.tool_choice is None else request.tool_choice
    messages = _render_history(request.messages)
    if request.tools and choice != "none":
        prompt = tools_prompt(request.tools)
        if messages[0]["role"] == "system":
            messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{prompt}"}
        else:
            messages.insert(0, {"role": "system", "content": prompt})
    schema = tool_call_schema(request.tools or (), choice) if _expects_tool_json(request) else None
    response_format = response_format_for(schema) if schema else request.response_format
    checked = ChatRequest.build(messages=messages, response_format=response_format)
    return replace(request, messages=checked.messages, response_format=checked.response_format,
                   tools=None, tool_choice=None)


def parse_emulated(completion: ChatCompletion, request: ChatRequest | None = None) -> ChatCompletion:
    """The completion of an emulated request, with its JSON answer turned back into OpenAI shapes.

    ``{"tool_calls": [...]}`` becomes ``message.tool_calls`` (ids ``call_0``, ``call_1``, ...; arguments
    as JSON text), ``content=None``, ``finish_reason="tool_calls"``; ``{"content": "..."}`` becomes that
    content. Other text passes through unchanged, unless ``request`` (the original, un-emulated one)
    shows a tool-call JSON was required: then :class:`~app.errors.OutputParseError` is raised.

        completion = parse_emulated(completion, request)
        for call in completion.choices[0].message.tool_calls or ():
            json.loads(call.function.arguments)
    """
    strict = request is not None and _expects_tool_json(request)
    known = {t["function"]["name"] for t in request.tools} if request is not None and request.tools else None
    return replace(completion, choices=tuple(_parse_choice(c, strict, known) for c in completion.choices))


def _expects_tool_json(request: ChatRequest) -> bool:
    # Only a turn that follows the user's message is constrained: after tool results the model must be
    # free to answer in words.
    return (bool(request.tools) and request.tool_choice != "none"
            and request.messages[-1]["role"] == "user")


def _tool_calls_text(calls: list[dict[str, Any]]) -> str:
    return json.dumps({"tool_calls": calls}, ensure_ascii=False)


def _render_history(messages: typing.Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # call id -> tool name, of the calls seen so far
    after_tool = False
    for m in messages:
        if m["role"] == "assistant" and m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                fn = c.get("function") or {}
                names[c.get("id") or ""] = fn.get("name") or ""
                calls.append({"name": fn.get("name") or "", "arguments": _decoded(fn.get("arguments"))})
            # What the model writes under tool_call_schema; any text sent beside the calls is not.
            out.append({"role": "assistant", "content": _tool_calls_text(calls)})
            after_tool = False
        elif m["role"] == "tool":
            name = names.get(m["tool_call_id"]) or m.get("name")
            block = TOOL_RESULT_HEAD.format(id=m["tool_call_id"], name=f", name={name}" if name else "") \
                + m["content"]
            if after_tool:
                out[-1] = {"role": "user", "content": f"{out[-1]['content']}\n\n{block}"}
            else:
                out.append({"role": "user", "content": block})
            after_tool = True
        else:
            out.append(dict(m))
            after_tool = False
    return out


def _decoded(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except json.JSONDecodeError:
            return arguments  # keep what was sent rather than invent arguments
    return {} if arguments is None else arguments


def _parse_choice(choice: Choice, strict: bool, known: set[str] | None) -> Choice:
    message = choice.message
    if message.tool_calls:  # already structured (a native backend): nothing to undo
        return choice
    text = message.content

    def fail(why: str) -> OutputParseError:
        cut = f" (the answer was cut short: finish_reason={choice.finish_reason})" \
            if choice.finish_reason == "length" else ""
        return OutputParseError(f"the model's answer is not a tool call or an answer: {why}{cut}", text=text)

    try:
        value = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError as exc:
        if strict:
            raise fail(f"invalid JSON ({exc})") from exc
        return choice
    if isinstance(value, dict) and set(value) == {"content"} and isinstance(value["content"], str):
        return replace(choice, message=replace(message, content=value["content"]))
    calls = value.get("tool_calls") if isinstance(value, dict) and set(value) == {"tool_calls"} else None
    problem = _calls_problem(calls, known)
    if problem is None:
        tool_calls = tuple(
            ToolCall(id=f"call_{i}", function=FunctionCall(
                name=c["name"], arguments=json.dumps(c["arguments"], ensure_ascii=False)))
            for i, c in enumerate(calls))
        return replace(choice, message=replace(message, content=None, tool_calls=tool_calls),
                       finish_reason="tool_calls")
    if strict:
        raise fail(problem)
    return choice


def _calls_problem(calls: Any, known: set[str] | None) -> str | None:
    if not isinstance(calls, list) or not calls:
        return 'expected {"tool_calls": [...]} with at least one call, or {"content": "..."}'
    for c in calls:
        if not (isinstance(c, dict) and isinstance(c.get("name"), str)
                and isinstance(c.get("arguments"), dict)):
            return 'each tool call must be {"name": "...", "arguments": {...}}'
        if known is not None and c["name"] not in known:
            return f"unknown tool {c['name']!r}"
    return None


# --- Python functions as tools ---------------------------------------------------------------------

_SCALARS = {str: "string", int: "integer", float: "number", bool: "boolean"}


def tool_schema(fn: Callable[..., Any]) -> dict[str, Any]:
    """The OpenAI tool dict for a Python function, from its signature, type hints and docstring.

    The docstring's first line is the description. ``str``, ``int``, ``float``, ``bool``, ``list[...]``,
    ``dict``, ``Literal[...]`` and ``Optional[...]`` are understood; a parameter with a default is not
    required. Anything else raises :class:`~app.errors.InvalidRequest`: pass ``(fn, schema)`` instead.

        def add(a: int, b: int = 0) -> int:
            "Add two numbers."
        tool_schema(add)["function"]["parameters"]
        # {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        #  "required": ["a"]}
    """
    name = getattr(fn, "__name__", type(fn).__name__)
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (TypeError, ValueError, NameError) as exc:
        raise InvalidRequest(f"tools: cannot read the signature of {name}: {exc}", param="tools") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue  # the model can only name parameters
        where = f"{name}({p.name})"
        if p.kind is p.POSITIONAL_ONLY:
            raise InvalidRequest(f"tools: {where} is positional-only; tools are called with keywords",
                                 param="tools")
        if p.annotation is p.empty:
            raise InvalidRequest(f"tools: {where} has no type hint; add one or pass ({name}, schema)",
                                 param="tools")
        annotation = p.annotation
        if p.default is None and _is_optional(annotation):
            # Omitting it gives None already; a plain schema is easier for a small model to fill.
            annotation = _without_none(annotation)
        properties[p.name] = _json_schema_of(annotation, where)
        if p.default is p.empty:
            required.append(p.name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    doc = inspect.getdoc(fn) or ""
    return {"type": "function", "function": {"name": name, "description": doc.strip().split("\n")[0],
                                             "parameters": parameters}}


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _without_none(tp: Any) -> Any:
    rest = tuple(a for a in typing.get_args(tp) if a is not type(None))
    return rest[0] if len(rest) == 1 else typing.Union[rest]


def _json_schema_of(tp: Any, where: str) -> dict[str, Any]:
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is list or origin is list:
        return {"type": "array", "items": _json_schema_of(args[0], where)} if args else {"type": "array"}
    if tp is dict or origin is dict:
        return {"type": "object"}
    if origin is typing.Literal:
        kinds = {_SCALARS.get(type(a)) for a in args}
        if len(kinds) == 1 and None not in kinds:
            return {"type": kinds.pop(), "enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        alternatives = [_json_schema_of(a, where) if a is not type(None) else {"type": "null"} for a in args]
        return {"anyOf": alternatives}
    raise InvalidRequest(f"tools: {where}: no JSON Schema for type {tp!r}; pass (fn, schema) instead",
                         param="tools")


class ToolCallRecord(NamedTuple):
    """One tool call made by :func:`run_tools`. ``result`` is ``{"error": "..."}`` when it failed."""

    name: str
    arguments: dict[str, Any]
    result: Any


@dataclass(frozen=True, slots=True)
class RunToolsResult:
    """What :func:`run_tools` ends with: the final ``completion``, the whole conversation (``messages``,
    ending with the final answer), how many model calls it took (``steps``) and the tool ``calls``."""

    completion: ChatCompletion
    messages: list[dict[str, Any]]
    steps: int
    calls: list[ToolCallRecord]


async def run_tools(create: Callable[..., Awaitable[ChatCompletion]], *, messages: list[dict[str, Any]],
                    tools: typing.Sequence[Any], max_steps: int = 5, **kwargs: Any) -> RunToolsResult:
    """Ask the model, run the tools it calls, send the results back, until it answers in words.

    ``create`` is ``client.chat.completions.create`` (or anything with its signature returning a
    :class:`~app.ir.ChatCompletion`). ``tools`` are Python functions, sync or async (their schema comes
    from :func:`tool_schema`), or ``(fn, schema)`` pairs where ``schema`` is a full OpenAI tool dict or
    just the parameters schema. ``kwargs`` go to every ``create`` call, except that a ``tool_choice``
    forcing a call applies to the first call only (forced every time, the model could never answer).

    An unknown tool name, arguments that are not a JSON object or do not fit the function, and an
    exception raised by the tool are sent back to the model as ``{"error": "..."}`` results, so it can
    correct itself. After ``max_steps`` model calls that all asked for tools,
    :class:`~app.errors.ToolLoopLimit` is raised with the conversation so far.

        result = await run_tools(client.chat.completions.create, messages=msgs, tools=[get_weather])
        result.calls   # [ToolCallRecord(name='get_weather', arguments={'city': 'Paris'}, result={...})]
    """
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise InvalidRequest(f"max_steps: must be an integer >= 1, got {max_steps!r}", param="max_steps")
    if kwargs.get("stream"):
        raise InvalidRequest("stream: run_tools needs whole answers; leave stream unset", param="stream")
    schemas, functions = _tool_table(tools)
    ChatRequest.build(messages=messages, tools=schemas, tool_choice=kwargs.get("tool_choice"))

    conversation = [dict(m) for m in messages]
    calls: list[ToolCallRecord] = []
    for step in range(1, max_steps + 1):
        completion = await create(messages=list(conversation), tools=schemas, **kwargs)
        message = completion.choices[0].message
        conversation.append(message.to_dict())
        if not message.tool_calls:
            return RunToolsResult(completion=completion, messages=conversation, steps=step, calls=calls)
        for call in message.tool_calls:
            record = await _run_one(call, functions)
            calls.append(record)
            conversation.append({"role": "tool", "tool_call_id": call.id,
                                 "content": json.dumps(record.result, ensure_ascii=False, default=str)})
        if kwargs.get("tool_choice") == "required" or isinstance(kwargs.get("tool_choice"), dict):
            kwargs["tool_choice"] = "auto"
    raise ToolLoopLimit(f"the model still called tools after max_steps={max_steps} model calls",
                        messages=conversation, steps=max_steps, calls=calls)


def _tool_table(tools: Any) -> tuple[list[dict[str, Any]], dict[str, Callable[..., Any]]]:
    if isinstance(tools, (str, bytes, dict)) or not isinstance(tools, typing.Sequence) or not tools:
        raise InvalidRequest("tools: must be a non-empty list of functions or (function, schema) pairs",
                             param="tools")
    schemas, functions = [], {}
    for i, tool in enumerate(tools):
        if callable(tool):
            schema = tool_schema(tool)
            fn = tool
        elif (isinstance(tool, tuple) and len(tool) == 2 and callable(tool[0]) and isinstance(tool[1], dict)):
            fn, given = tool
            schema = given if "function" in given else {
                "type": "function", "function": {
                    "name": getattr(fn, "__name__", type(fn).__name__),
                    "description": (inspect.getdoc(fn) or "").strip().split("\n")[0], "parameters": given}}
        else:
            raise InvalidRequest(f"tools[{i}]: must be a function or a (function, schema) pair, got {tool!r}",
                                 param="tools")
        schemas.append(schema)
        functions[schema["function"].get("name")] = fn
    return schemas, functions


async def _run_one(call: ToolCall, functions: dict[str, Callable[..., Any]]) -> ToolCallRecord:
    name = call.function.name
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError as exc:
        return ToolCallRecord(name, {}, {"error": f"arguments are not valid JSON: {exc}"})
    if not isinstance(arguments, dict):
        return ToolCallRecord(name, {}, {"error": "arguments must be a JSON object"})
    fn = functions.get(name)
    if fn is None:
        known = ", ".join(sorted(functions))
        return ToolCallRecord(name, arguments, {"error": f"unknown tool {name!r}; the tools are {known}"})
    try:
        inspect.signature(fn).bind(**arguments)
    except TypeError as exc:
        return ToolCallRecord(name, arguments, {"error": f"bad arguments for {name}: {exc}"})
    try:
        result = fn(**arguments)
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # the model can recover (other arguments); a crash would end the chat
        return ToolCallRecord(name, arguments, {"error": f"{type(exc).__name__}: {exc}"})
    return ToolCallRecord(name, arguments, result)
