"""Chat request parameters: validated and normalised before any backend is touched.

``ChatRequest.build(model=..., messages=[...], temperature=0.7, ...)`` returns a frozen request or
raises :class:`~app.errors.InvalidRequest` naming the bad field. Nothing is sent, nothing stored is
changed. The checks follow OpenAI's documented ranges, tightened where web-llm is stricter (one system
message at index 0, the last message from ``user`` or ``tool``, ``n == 1`` when streaming).

Normalisation is deterministic, so the same history always yields the same prompt and web-llm's
KV-cache prefix reuse keeps working across turns: system messages are merged into one at index 0
(said in ``warnings``), a user message made only of text parts becomes a string. Earlier turns are
never reordered or rewritten otherwise.

Images come as OpenAI content parts of user messages, ``{"type": "image_url", "image_url": {"url":
"data:image/png;base64,..."}}`` (png, jpeg, webp, gif; at most 20 MiB each, 8 per request) or an https
URL. A message with images is normalised to its images, then one text part (web-llm takes one);
``detail`` is checked and dropped (web-llm refuses it). The router sends such a request only to a
backend that declares vision.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from app.errors import InvalidRequest
from app.ir import NOT_GIVEN

# Sampling fields passed through to the engine when given, with their checks.
SAMPLING_FIELDS = (
    "temperature", "top_p", "max_tokens", "seed", "stop", "frequency_penalty", "presence_penalty",
    "repetition_penalty", "logit_bias", "logprobs", "top_logprobs", "n", "ignore_eos",
)
OTHER_FIELDS = ("model", "messages", "stream", "stream_options", "response_format", "enable_thinking",
                "tools", "tool_choice", "private", "max_completion_tokens", "parallel_tool_calls")
KNOWN_FIELDS = frozenset(SAMPLING_FIELDS + OTHER_FIELDS)
ROLES = ("system", "developer", "user", "assistant", "tool")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _fail(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def _number(name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if not _is_number(v):
        raise _fail(name, f"must be a number, got {type(v).__name__}")
    if (v <= lo if lo_open else v < lo) or v > hi:
        low = f"> {lo}" if lo_open else f">= {lo}"
        raise _fail(name, f"must be {low} and <= {hi}, got {v}")
    return v


def _check_sampling(name: str, v: Any) -> Any:
    match name:
        case "temperature":
            return _number(name, v, 0, 2)
        case "top_p":
            return _number(name, v, 0, 1, lo_open=True)
        case "frequency_penalty" | "presence_penalty":
            return _number(name, v, -2, 2)
        case "repetition_penalty":
            return _number(name, v, 0, math.inf, lo_open=True)
        case "max_tokens":
            if not _is_int(v) or v < 1:
                raise _fail(name, f"must be an integer >= 1, got {v!r}")
        case "seed":
            if not _is_int(v):
                raise _fail(name, f"must be an integer, got {v!r}")
        case "n":
            if not _is_int(v) or not 1 <= v <= 16:
                raise _fail(name, f"must be an integer from 1 to 16, got {v!r}")
        case "top_logprobs":
            if not _is_int(v) or not 0 <= v <= 5:
                raise _fail(name, f"must be an integer from 0 to 5, got {v!r}")
        case "logprobs" | "ignore_eos":
            if not isinstance(v, bool):
                raise _fail(name, f"must be true or false, got {v!r}")
        case "stop":
            stops = [v] if isinstance(v, str) else v
            if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
                raise _fail(name, "must be a non-empty string or a list of non-empty strings")
            if len(stops) > 4:
                raise _fail(name, f"at most 4 stop sequences, got {len(stops)}")
            return list(stops)
        case "logit_bias":
            if not isinstance(v, dict):
                raise _fail(name, "must be a mapping of token id to bias")
            out = {}
            for key, bias in v.items():
                if not (_is_int(key) or (isinstance(key, str) and key.lstrip("-").isdigit())):
                    raise _fail(name, f"keys must be token ids (integers), got {key!r}")
                _number(f"{name}[{key}]", bias, -100, 100)
                out[str(key)] = bias
            return out
    return v


def _check_response_format(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict) or v.get("type") not in ("text", "json_object", "json_schema"):
        raise _fail("response_format", "must be {'type': 'text' | 'json_object' | 'json_schema', ...}")
    kind = v["type"]
    if kind == "text":
        return {"type": "text"}
    schema = v.get("schema")
    if kind == "json_schema":  # OpenAI's shape: {"type": "json_schema", "json_schema": {"schema": {...}}}
        inner = v.get("json_schema")
        if not isinstance(inner, dict) or not isinstance(inner.get("schema"), dict):
            raise _fail("response_format", "json_schema needs {'json_schema': {'name': ..., 'schema': {...}}}")
        schema = inner["schema"]
    if schema is None:
        return {"type": "json_object"}
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise _fail("response_format", f"schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise _fail("response_format", "schema must be a JSON Schema object")
    # web-llm takes the schema as a JSON string.
    return {"type": "json_object", "schema": json.dumps(schema, separators=(",", ":"), sort_keys=False)}


def _check_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list) or not tools:
        raise _fail("tools", "must be a non-empty list")
    seen = set()
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise _fail(f"tools[{i}]", "must be {'type': 'function', 'function': {'name': ..., 'parameters': {...}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise _fail(f"tools[{i}].function.name", f"must be letters, digits, '_' or '-', got {name!r}")
        if name in seen:
            raise _fail(f"tools[{i}].function.name", f"duplicate tool name {name!r}")
        seen.add(name)
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict):
            raise _fail(f"tools[{i}].function.parameters", "must be a JSON Schema object")
        out.append({"type": "function", "function": {"name": name, "description": fn.get("description", ""),
                                                     "parameters": params}})
    return out


def _check_tool_choice(v: Any, tools: list | None) -> Any:
    if v in ("none", "auto", "required"):
        return v
    if isinstance(v, dict) and isinstance(v.get("function"), dict):
        name = v["function"].get("name")
        if tools is None or name not in {t["function"]["name"] for t in tools}:
            raise _fail("tool_choice", f"names a tool that is not in tools: {name!r}")
        return {"type": "function", "function": {"name": name}}
    raise _fail("tool_choice", "must be 'none', 'auto', 'required' or {'type': 'function', 'function': {'name': ...}}")


# Images in a request (OpenAI's image_url content parts). What web-llm decodes and what a cloud endpoint
# takes: an inline data URL of one of these types, or an https URL (http only to this machine: a page
# served over https is same-origin over https; only a local test or dev server is plain http).
IMAGE_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff", "image/gif": b"GIF8",
               "image/webp": b"RIFF"}
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # decoded bytes of one inline image
MAX_IMAGES_PER_REQUEST = 8
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


def check_image_url(url: Any, where: str = "image") -> None:
    """Raise InvalidRequest unless ``url`` is an image a request may carry (see the module docstring)."""
    if not isinstance(url, str) or not url:
        raise _fail(f"{where}.image_url.url", "must be a data:image/... URL or an https URL")
    if url.startswith("data:"):
        head, sep, payload = url.partition(",")
        kind = head[5:].split(";")[0].lower()
        if not sep or kind not in IMAGE_TYPES or not head.endswith(";base64"):
            raise _fail(f"{where}.image_url.url", f"an inline image must be data:<type>;base64,... with type "
                        f"{', '.join(IMAGE_TYPES)}; got {head[:40]!r}")
        if len(payload) * 3 // 4 > MAX_IMAGE_BYTES:
            raise _fail(f"{where}.image_url.url", f"the image is {len(payload) * 3 // 4 // 1024} KiB; at most "
                        f"{MAX_IMAGE_BYTES // 1024 // 1024} MiB")
        import base64
        import binascii

        try:
            start = base64.b64decode(payload[:24], validate=True)
            base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise _fail(f"{where}.image_url.url", "the data URL is not valid base64") from None
        magic = IMAGE_TYPES[kind]
        if not start.startswith(magic) or (kind == "image/webp" and start[8:12] != b"WEBP"):
            raise _fail(f"{where}.image_url.url", f"the data is not a {kind} image")
        return
    scheme, _, rest = url.partition("://")
    host = rest.split("/")[0].split("@")[-1].rsplit(":", 1)[0] if rest else ""
    if scheme.lower() == "https" and host:
        return
    if scheme.lower() == "http" and host in _LOOPBACK:
        return
    raise _fail(f"{where}.image_url.url", f"must be a data:image/... URL or an https URL, got {url[:60]!r}")


def _text_of_parts(parts: list, where: str, role: str) -> str | list:
    """Content parts -> a string when they are all text. With images: the images as given (checked),
    then one text part (web-llm takes at most one per message; several are joined)."""
    texts, images = [], []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
            raise _fail(f"{where}.content[{j}]", "must be {'type': 'text', 'text': ...} or "
                        "{'type': 'image_url', 'image_url': {'url': ...}}")
        if part["type"] == "text":
            if not isinstance(part.get("text"), str):
                raise _fail(f"{where}.content[{j}].text", "must be a string")
            texts.append(part["text"])
            continue
        if role != "user":
            raise _fail(f"{where}.content[{j}]", "images are only allowed in user messages")
        image = part.get("image_url")
        if not isinstance(image, dict):
            raise _fail(f"{where}.content[{j}].image_url", "must be {'url': ...}")
        check_image_url(image.get("url"), f"{where}.content[{j}]")
        if image.get("detail") not in (None, "auto", "low", "high"):
            raise _fail(f"{where}.content[{j}].image_url.detail", "must be 'auto', 'low' or 'high'")
        images.append({"type": "image_url", "image_url": {"url": image["url"]}})
    if not images:
        return "\n".join(texts)
    return images + [{"type": "text", "text": "\n".join(texts)}]


def has_images(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(p.get("type") == "image_url" for p in content)


def normalize_messages(messages: Any) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """Validated copies of ``messages`` in the form web-llm accepts, plus what was changed."""
    if not isinstance(messages, list) or not messages:
        raise _fail("messages", "must be a non-empty list of {'role': ..., 'content': ...}")
    warnings: list[str] = []
    system_texts: list[str] = []
    system_positions: list[int] = []
    rest: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _fail(where, f"must be a dict, got {type(m).__name__}")
        role = m.get("role")
        if role not in ROLES:
            raise _fail(f"{where}.role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        content = m.get("content")
        if isinstance(content, list):
            content = _text_of_parts(content, where, role)
        if role in ("system", "developer"):  # OpenAI's newer name for the system role
            if not isinstance(content, str):
                raise _fail(f"{where}.content", "a system message must be text")
            system_texts.append(content)
            system_positions.append(i)
            continue
        msg: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant":
            calls = m.get("tool_calls")
            if content is None and not calls:
                raise _fail(f"{where}.content", "an assistant message needs content or tool_calls")
            if calls:
                if not isinstance(calls, list) or not all(
                        isinstance(c, dict) and isinstance(c.get("function"), dict) for c in calls):
                    raise _fail(f"{where}.tool_calls", "must be a list of {'id', 'type', 'function': {...}}")
                msg["tool_calls"] = [dict(c) for c in calls]
            if content is not None and not isinstance(content, str):
                raise _fail(f"{where}.content", "must be a string")
        elif role == "tool":
            if not isinstance(m.get("tool_call_id"), str):
                raise _fail(f"{where}.tool_call_id", "a tool message must say which call it answers")
            if not isinstance(content, str):
                raise _fail(f"{where}.content", "a tool result must be a string (e.g. JSON text)")
            msg["tool_call_id"] = m["tool_call_id"]
        elif not isinstance(content, (str, list)):
            raise _fail(f"{where}.content", "must be a string or a list of content parts")
        if m.get("name") is not None:
            msg["name"] = m["name"]
        rest.append(msg)
    if not rest:
        raise _fail("messages", "needs at least one user message")
    count = sum(len([p for p in m["content"] if p["type"] == "image_url"]) for m in rest if has_images(m))
    if count > MAX_IMAGES_PER_REQUEST:
        raise _fail("messages", f"{count} images; at most {MAX_IMAGES_PER_REQUEST} per request")
    if rest[-1]["role"] not in ("user", "tool"):
        raise _fail("messages", f"the last message must be from 'user' or 'tool', not {rest[-1]['role']!r}")
    out = rest
    if system_texts:
        if len(system_texts) > 1 or system_positions[0] != 0:
            warnings.append(f"merged {len(system_texts)} system message(s) at positions "
                            f"{system_positions} into one system message at index 0")
        out = [{"role": "system", "content": "\n\n".join(system_texts)}] + rest
    return out, tuple(warnings)


@dataclass(frozen=True)
class ChatRequest:
    """A validated chat request. ``params`` holds only the fields the caller gave."""

    model: str | None
    messages: tuple[dict[str, Any], ...]
    stream: bool = False
    include_usage: bool = False
    params: dict[str, Any] = field(default_factory=dict)
    response_format: dict[str, Any] | None = None
    tools: tuple[dict[str, Any], ...] | None = None
    tool_choice: Any = None
    enable_thinking: bool | None = None
    private: bool = False  # must not leave this device (routing only; never sent to a backend)
    warnings: tuple[str, ...] = ()

    @property
    def images(self) -> int:
        """How many images the messages carry (only backends that declare vision get such a request)."""
        return sum(sum(p["type"] == "image_url" for p in m["content"]) for m in self.messages if has_images(m))

    @classmethod
    def build(cls, **kwargs: Any) -> ChatRequest:
        given = {k: v for k, v in kwargs.items() if v is not NOT_GIVEN}
        unknown = sorted(set(given) - KNOWN_FIELDS)
        if unknown:
            name = unknown[0]
            close = difflib.get_close_matches(name, KNOWN_FIELDS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _fail(name, f"unknown parameter{hint}")
        model = given.get("model")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise _fail("model", "must be a non-empty model id")
        messages, warnings = normalize_messages(given.get("messages"))
        stream = given.get("stream", False)
        if not isinstance(stream, bool):
            raise _fail("stream", "must be true or false")
        include_usage = False
        if "stream_options" in given and given["stream_options"] is not None:
            opts = given["stream_options"]
            if not stream:
                raise _fail("stream_options", "only allowed with stream=True")
            if not isinstance(opts, dict) or set(opts) - {"include_usage"}:
                raise _fail("stream_options", "only {'include_usage': bool} is supported")
            include_usage = opts.get("include_usage", False)
            if not isinstance(include_usage, bool):
                raise _fail("stream_options", "include_usage must be true or false")
        if given.get("max_completion_tokens") is not None:  # OpenAI's newer name for max_tokens
            if given.get("max_tokens") is not None:
                raise _fail("max_completion_tokens", "give max_tokens or max_completion_tokens, not both")
            given["max_tokens"] = given.pop("max_completion_tokens")
        if given.get("parallel_tool_calls") is not None and not isinstance(given["parallel_tool_calls"], bool):
            raise _fail("parallel_tool_calls", "must be true or false")
        params = {}
        for name in SAMPLING_FIELDS:
            if name in given and given[name] is not None:
                params[name] = _check_sampling(name, given[name])
        if "top_logprobs" in params and not params.get("logprobs"):
            raise _fail("top_logprobs", "needs logprobs=True")
        if stream and params.get("n", 1) > 1:
            raise _fail("n", "must be 1 when streaming")
        response_format = None
        if given.get("response_format") is not None:
            response_format = _check_response_format(given["response_format"])
            if response_format["type"] == "text":
                response_format = None
        tools = None
        if given.get("tools") is not None:
            tools = tuple(_check_tools(given["tools"]))
        tool_choice = None
        if given.get("tool_choice") is not None:
            tool_choice = _check_tool_choice(given["tool_choice"], list(tools) if tools else None)
        private = given.get("private", False)
        if not isinstance(private, bool):
            raise _fail("private", "must be true or false")
        thinking = given.get("enable_thinking")
        if thinking is not None and not isinstance(thinking, bool):
            raise _fail("enable_thinking", "must be true or false")
        return cls(model=model, messages=tuple(messages), stream=stream, include_usage=include_usage,
                   params=params, response_format=response_format, tools=tools, tool_choice=tool_choice,
                   enable_thinking=thinking, private=private, warnings=warnings)

    def to_openai(self) -> dict[str, Any]:
        """The request as an OpenAI / web-llm request dict (plain data, ready for ``to_js``)."""
        out: dict[str, Any] = {"messages": [dict(m) for m in self.messages], **self.params}
        if self.model is not None:
            out["model"] = self.model
        if self.stream:
            out["stream"] = True
            if self.include_usage:
                out["stream_options"] = {"include_usage": True}
        if self.response_format is not None:
            out["response_format"] = dict(self.response_format)
        if self.tools is not None:
            out["tools"] = [dict(t) for t in self.tools]
        if self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice
        if self.enable_thinking is not None:
            out["extra_body"] = {"enable_thinking": self.enable_thinking}
        return out
