"""Conversations out of the app and back in: JSON (everything, for import), Markdown (for reading).

    text = export_json(convs, exported=time.time())     # {"format", "version", "exported", "conversations"}
    records = parse_import(text)                        # validated field by field, or InvalidRequest
    text = export_markdown(convs)

An import is checked whole before anything is stored: a file that is not JSON, not this format, or
has one field wrong is refused with the path of that field (``conversations[2].messages[0].role: ...``)
and changes nothing. What is kept is exactly what was exported (ids, titles, times, message order,
meta), so export -> delete all -> import gives the same export again.
Plain Python: unit-tested under CPython.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from app.errors import InvalidRequest
from app.params import MAX_IMAGES_PER_REQUEST, check_image_url
from app.ui.conversations import ROLES, STATUSES, Conversation

FORMAT = "py-chat-conversations"
VERSION = 1
MAX_IMPORT_BYTES = 50_000_000
MAX_CONVERSATIONS = 10_000
MAX_MESSAGES = 10_000
MAX_TEXT = 1_000_000
MAX_TITLE = 500
ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
ROLE_NAMES = {"user": "You", "assistant": "Assistant", "summary": "Summary of earlier messages"}


def export_json(convs: list[Conversation], *, exported: float) -> str:
    return json.dumps({"format": FORMAT, "version": VERSION, "exported": exported,
                       "conversations": [c.to_record() for c in convs]}, ensure_ascii=False, indent=1)


def export_markdown(convs: list[Conversation]) -> str:
    """Readable text: a heading per conversation, one per message (answers as the Markdown they are)."""
    parts = []
    for conv in convs:
        parts.append(f"# {conv.title.peek()}\n")
        for m in conv.messages.peek():
            status = m.status.peek()
            note = "" if status == "done" else f" ({status})"
            name = ROLE_NAMES.get(m.role, m.role)
            if m.role == "summary":
                name = f"Summary of {m.meta.peek().get('summarised')} earlier messages"
            shown = "".join(f"*[image: {i['name']}, {i['width']}x{i['height']}]*\n\n" for i in m.images)
            parts.append(f"## {name}{note}\n\n{shown}{m.text.peek().strip()}\n")
    return "\n".join(parts)


def _fail(path: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {why}; nothing was imported", param="file")


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _fail(path, f"must be a number of seconds, 0 or more (got {value!r})")
    return value


def _text(value: Any, path: str, limit: int) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"must be text (got {type(value).__name__})")
    if len(value) > limit:
        raise _fail(path, f"is longer than {limit} characters")
    return value


def _ident(value: Any, path: str) -> str:
    if not isinstance(value, str) or not ID.fullmatch(value):
        raise _fail(path, f"must be 1 to 64 letters, digits, - or _ (got {value!r})")
    return value


def _unique_ids(records: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """``records`` when no two share an id (else the second one's path is named)."""
    seen: set[str] = set()
    for i, record in enumerate(records):
        if record["id"] in seen:
            raise _fail(f"{path}[{i}].id", f"{record['id']!r} appears twice")
        seen.add(record["id"])
    return records


def _message(record: Any, path: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise _fail(path, "must be an object")
    known = {"id", "role", "content", "status", "meta", "at", "n", "reasoning", "images"}
    extra = sorted(set(record) - known)
    if extra:
        raise _fail(f"{path}.{extra[0]}", "is not a field of a message")
    role = record.get("role")
    if role not in ROLES:
        raise _fail(f"{path}.role", f"must be one of {', '.join(ROLES)} (got {role!r})")
    status = record.get("status", "done")
    if status not in STATUSES:
        raise _fail(f"{path}.status", f"must be one of {', '.join(STATUSES)} (got {status!r})")
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        raise _fail(f"{path}.meta", "must be an object")
    n = record.get("n", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise _fail(f"{path}.n", f"must be a whole number, 0 or more (got {n!r})")
    if role == "summary":  # what it stands for must be said: how many messages, up to which one
        summarised = meta.get("summarised")
        if isinstance(summarised, bool) or not isinstance(summarised, int) or summarised < 1:
            raise _fail(f"{path}.meta.summarised", f"must be a whole number, 1 or more (got {summarised!r})")
        _ident(meta.get("until"), f"{path}.meta.until")
    checked = {"id": _ident(record.get("id"), f"{path}.id"), "role": role,
               "content": _text(record.get("content", ""), f"{path}.content", MAX_TEXT), "status": status,
               "meta": meta, "at": _number(record.get("at", 0), f"{path}.at"), "n": n}
    if "reasoning" in record:
        checked["reasoning"] = _text(record["reasoning"], f"{path}.reasoning", MAX_TEXT)
    if "images" in record:
        checked["images"] = _images(record["images"], f"{path}.images", role)
    return checked


def _images(value: Any, path: str, role: str) -> list[dict[str, Any]]:
    """A user message's images as stored: inline data URLs of an allowed type, with name and size."""
    if role != "user":
        raise _fail(path, "only your own messages carry images")
    if not isinstance(value, list) or len(value) > MAX_IMAGES_PER_REQUEST:
        raise _fail(path, f"must be a list of at most {MAX_IMAGES_PER_REQUEST} images")
    out = []
    for i, image in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(image, dict) or set(image) - {"url", "name", "width", "height"}:
            raise _fail(where, "must be {\"url\", \"name\", \"width\", \"height\"}")
        url = image.get("url")
        if not isinstance(url, str) or not url.startswith("data:"):
            raise _fail(f"{where}.url", "must be an inline data:image/... URL")
        try:
            check_image_url(url, where)
        except InvalidRequest as exc:
            raise _fail(f"{where}.url", str(exc).split(": ", 1)[-1]) from None
        size = [image.get("width", 0), image.get("height", 0)]
        if any(isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 100_000 for n in size):
            raise _fail(where, "width and height must be whole numbers of pixels")
        out.append({"url": url, "name": _text(image.get("name", "image"), f"{where}.name", MAX_TITLE),
                    "width": size[0], "height": size[1]})
    return out


def _conversation(record: Any, path: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise _fail(path, "must be an object")
    known = {"id", "title", "titled", "created", "updated", "messages", "think", "system", "persona",
             "model"}
    extra = sorted(set(record) - known)
    if extra:
        raise _fail(f"{path}.{extra[0]}", "is not a field of a conversation")
    titled = record.get("titled", False)
    if not isinstance(titled, bool):
        raise _fail(f"{path}.titled", "must be true or false")
    messages = record.get("messages", [])
    if not isinstance(messages, list) or len(messages) > MAX_MESSAGES:
        raise _fail(f"{path}.messages", f"must be a list of at most {MAX_MESSAGES} messages")
    think = record.get("think")
    if think is not None and not isinstance(think, bool):
        raise _fail(f"{path}.think", "must be true or false")
    checked = _unique_ids([_message(m, f"{path}.messages[{i}]") for i, m in enumerate(messages)], f"{path}.messages")
    ids = {m["id"] for m in checked}
    for i, m in enumerate(checked):
        if m["role"] == "summary" and m["meta"]["until"] not in ids:
            raise _fail(f"{path}.messages[{i}].meta.until", f"names no message of this conversation ({m['meta']['until']!r})")
    out = {"id": _ident(record.get("id"), f"{path}.id"),
           "title": _text(record.get("title", "New chat"), f"{path}.title", MAX_TITLE),
           "titled": titled, "created": _number(record.get("created", 0), f"{path}.created"),
           "updated": _number(record.get("updated", 0), f"{path}.updated")}
    if think is not None:
        out["think"] = think
    if "system" in record:
        out["system"] = _text(record["system"], f"{path}.system", MAX_TEXT)
        persona = record.get("persona")
        out["persona"] = None if persona is None else _text(persona, f"{path}.persona", MAX_TITLE)
    if "model" in record:
        out["model"] = _text(record["model"], f"{path}.model", MAX_TITLE)
    return {**out, "messages": checked}


def parse_import(text: str) -> list[dict[str, Any]]:
    """The conversations of an exported file, checked field by field (InvalidRequest naming the first
    wrong field otherwise)."""
    if len(text) > MAX_IMPORT_BYTES:
        raise InvalidRequest(f"the file is larger than {MAX_IMPORT_BYTES} bytes; nothing was imported", param="file")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"the file is not JSON ({exc}); nothing was imported", param="file") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidRequest(f"the file is not an export of this app (no \"format\": \"{FORMAT}\"); "
                             "nothing was imported", param="file")
    if data.get("version") != VERSION:
        raise _fail("version", f"must be {VERSION} (got {data.get('version')!r})")
    convs = data.get("conversations")
    if not isinstance(convs, list) or len(convs) > MAX_CONVERSATIONS:
        raise _fail("conversations", f"must be a list of at most {MAX_CONVERSATIONS} conversations")
    return _unique_ids([_conversation(c, f"conversations[{i}]") for i, c in enumerate(convs)], "conversations")
