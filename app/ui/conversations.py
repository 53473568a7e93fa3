"""Conversations and messages, and how they are kept so that two tabs never lose each other's words.

Storage layout (one key-value store, e.g. IndexedDB ``conversations``, optionally scoped by
:class:`ScopedKv`):

    <conversation id>              {"id", "title", "titled", "created", "updated"}     the header
    <conversation id>/<message id> {"id", "role", "content", "status", "meta", "at", "n"}
    <conversation id>#deleted      {"deleted": <time>}                                 a tombstone

One record per message: a tab writes only the messages it changed (and deletes only the ones it
knew and dropped, as a retry or an edit does), so two tabs answering in one conversation add
records side by side instead of overwriting one whole conversation each. Messages are ordered by
``(at, n, id)``: the wall-clock time the message was created, then its position then (two messages
created in the same millisecond by one tab), then the id. A deleted conversation leaves a tombstone,
written in the same transaction that removes its records; a tab that had it open and writes once
more (it had not heard of the deletion yet) cannot bring it back, because a tombstone always wins.
Records of the older layout (one record per conversation, messages inside) are still read, and
are rewritten in the new layout at the conversation's next change.

:class:`ConversationStore` does the writing: each save is one transaction (all or none) and, once
committed, is announced to the other tabs (``broadcast``, a BroadcastChannel in the page:
app/ffi/channel.py) with the records it wrote, so they show the other tab's messages as they come.
Plain Python: no DOM, no asyncio tasks; unit-tested under CPython.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.errors import UsageError
from app.ui.store import Signal

# Message lifecycle: a reply starts "streaming" and ends in one of the others.
STATUSES = ("done", "streaming", "stopped", "error", "interrupted")
# "summary": a pinned summary of earlier messages the model wrote when the history outgrew its context
# window (meta: "summarised" how many messages it stands for, "until" the last of them); sent in the
# system message instead of the messages it covers.
ROLES = ("user", "assistant", "summary")
SUMMARY_HEADING = "Summary of the earlier conversation:"
TITLE_CHARS = 48
MESSAGE_SEP = "/"
TOMBSTONE = "#deleted"


def new_id() -> str:
    return uuid.uuid4().hex[:12]


def title_from(text: str) -> str:
    """A conversation title from its first message: first line, at most ``TITLE_CHARS`` characters."""
    line = " ".join(text.strip().split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class Message:
    """One turn. ``text`` and ``status`` are signals; ``meta`` holds what the answer says about itself:
    backend, model, completion tokens, tokens/s, finish reason, error. ``at`` (wall-clock seconds when
    it was created) and ``n`` (its position then) order it among messages written by other tabs."""

    def __init__(self, role: str, text: str = "", *, status: str = "done", id: str | None = None,
                 meta: dict[str, Any] | None = None, at: float = 0.0, n: int = 0, reasoning: str = "",
                 images: list[dict[str, Any]] | tuple[dict[str, Any], ...] = ()) -> None:
        self.id = id or new_id()
        self.role = role
        self.text = Signal(text)
        # Images the user attached: {"url": "data:image/...", "name", "width", "height"}; fixed once sent.
        self.images: tuple[dict[str, Any], ...] = tuple(dict(i) for i in images)
        self.status = Signal(status)
        self.meta: Signal[dict[str, Any]] = Signal(dict(meta or {}))
        self.reasoning = Signal(reasoning)  # a thinking model's reasoning, shown apart, never sent back
        self.at = at
        self.n = n

    def append(self, delta: str) -> None:
        self.text.set(self.text.peek() + delta)

    def order(self) -> tuple[float, int, str]:
        return (self.at, self.n, self.id)

    def content(self) -> str | list[dict[str, Any]]:
        """What a request sends for this message: its text, or with images OpenAI content parts."""
        if not self.images:
            return self.text.peek()
        return [*({"type": "image_url", "image_url": {"url": i["url"]}} for i in self.images),
                {"type": "text", "text": self.text.peek()}]

    def to_record(self) -> dict[str, Any]:
        record = {"id": self.id, "role": self.role, "content": self.text.peek(), "status": self.status.peek(),
                  "meta": self.meta.peek(), "at": self.at, "n": self.n}
        if self.reasoning.peek():
            record["reasoning"] = self.reasoning.peek()
        if self.images:
            record["images"] = [dict(i) for i in self.images]
        return record

    def update_from(self, record: dict[str, Any]) -> None:
        """Take another tab's newer copy of this message."""
        self.text.set(record.get("content") or "")
        self.reasoning.set(record.get("reasoning") or "")
        status = record.get("status", "done")
        self.status.set(status if status in STATUSES else "done")
        self.meta.set(dict(record.get("meta") or {}))

    @classmethod
    def from_record(cls, record: dict[str, Any], *, live: bool = False) -> Message:
        """A stored message; ``live``: one another tab is writing right now (else a message stored
        while "streaming" is one whose page went away mid-answer: it keeps what arrived)."""
        status = record.get("status", "done")
        if status == "streaming" and not live:
            status = "interrupted"
        return cls(record["role"], record.get("content") or "", status=status if status in STATUSES else "done",
                   id=record.get("id"), meta=record.get("meta") or {}, at=float(record.get("at") or 0),
                   n=int(record.get("n") or 0), reasoning=record.get("reasoning") or "",
                   images=record.get("images") or ())

    def __repr__(self) -> str:
        return f"Message({self.role!r}, {self.text.peek()[:30]!r}, status={self.status.peek()!r})"


class Conversation:
    """Messages in order, a title (from the first message until the user renames it)."""

    def __init__(self, *, id: str | None = None, title: str = "New chat", titled: bool = False,
                 created: float = 0.0, updated: float = 0.0, messages: list[Message] | None = None,
                 think: bool | None = None, system: str | None = None, persona: str | None = None,
                 model: str | None = None) -> None:
        self.id = id or new_id()
        # The on-device model that answered here last; opening the conversation brings it back.
        self.model: Signal[str | None] = Signal(model)
        # A system prompt of its own (a persona's), instead of the one in Settings; None: Settings'.
        self.system: Signal[str | None] = Signal(system)
        self.persona: Signal[str | None] = Signal(persona)
        self.think: Signal[bool | None] = Signal(think)  # a thinking model thinks here (None: its default)
        self.title = Signal(title)
        self.titled = titled  # renamed by the user: keep the title
        self.created = created
        self.updated = Signal(updated)
        self.messages: Signal[list[Message]] = Signal(list(messages or []))

    def find(self, message_id: str) -> int:
        for i, m in enumerate(self.messages.peek()):
            if m.id == message_id:
                return i
        raise UsageError(f"no message {message_id!r} in this conversation")

    def summary(self) -> Message | None:
        """The summary in use: the newest whose covered messages are all still here."""
        messages = self.messages.peek()
        ids = {m.id for m in messages}
        for m in reversed(messages):
            if m.role == "summary" and m.meta.peek().get("until") in ids:
                return m
        return None

    def history(self) -> tuple[Message | None, list[Message]]:
        """The summary in use and the messages a request sends after it (failed or empty replies and
        earlier summaries left out, and the messages the summary stands for)."""
        summary = self.summary()
        messages = self.messages.peek()
        if summary is not None:
            until = summary.meta.peek()["until"]
            messages = messages[next(i for i, m in enumerate(messages) if m.id == until) + 1:]
        kept = [m for m in messages if m.role == "user" or (
            m.role == "assistant" and m.status.peek() != "error" and m.text.peek())]
        return summary, kept

    @staticmethod
    def system_text(system_prompt: str, summary: Message | None) -> str:
        """The system message sent: the prompt, then the summary in use (if any)."""
        if summary is None:
            return system_prompt
        said = f"{SUMMARY_HEADING}\n{summary.text.peek()}"
        return f"{system_prompt}\n\n{said}" if system_prompt else said

    def request_messages(self, system_prompt: str, *, images: bool = True) -> list[dict[str, Any]]:
        """The history in OpenAI form; failed or empty replies are left out, and the messages a summary
        stands for (its text goes into the system message). ``images=False``: text only (titles)."""
        summary, kept = self.history()
        system = self.system_text(system_prompt, summary)
        out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        out += [{"role": m.role, "content": m.content() if images else m.text.peek()} for m in kept]
        return out

    def header(self) -> dict[str, Any]:
        header = {"id": self.id, "title": self.title.peek(), "titled": self.titled, "created": self.created,
                  "updated": self.updated.peek()}
        if self.think.peek() is not None:
            header["think"] = self.think.peek()
        if self.system.peek() is not None:
            header["system"] = self.system.peek()
            header["persona"] = self.persona.peek()
        if self.model.peek() is not None:
            header["model"] = self.model.peek()
        return header

    def to_record(self) -> dict[str, Any]:
        """The whole conversation as one plain record (header and messages)."""
        return {**self.header(), "messages": [m.to_record() for m in self.messages.peek()]}

    def update_header(self, header: dict[str, Any]) -> None:
        """Take another tab's title (a rename) and time of last change."""
        if header.get("titled") or not self.titled:
            self.title.set(header.get("title") or self.title.peek())
            self.titled = self.titled or bool(header.get("titled"))
        self.updated.set(max(self.updated.peek(), float(header.get("updated") or 0)))
        if isinstance(header.get("think"), bool):
            self.think.set(header["think"])
        if isinstance(header.get("system"), str):
            self.system.set(header["system"])
            self.persona.set(header.get("persona") if isinstance(header.get("persona"), str) else None)
        if isinstance(header.get("model"), str):
            self.model.set(header["model"])

    @classmethod
    def from_record(cls, record: dict[str, Any], *, live: bool = False) -> Conversation:
        """From a header and its ``messages`` (in any order: they are sorted here)."""
        messages = [Message.from_record(m, live=live) for m in record.get("messages") or ()]
        messages.sort(key=Message.order)
        return cls(id=record["id"], title=record.get("title") or "New chat", titled=bool(record.get("titled")),
                   created=float(record.get("created") or 0), updated=float(record.get("updated") or 0),
                   messages=messages, think=record["think"] if isinstance(record.get("think"), bool) else None,
                   system=record["system"] if isinstance(record.get("system"), str) else None,
                   persona=record["persona"] if isinstance(record.get("persona"), str) else None,
                   model=record["model"] if isinstance(record.get("model"), str) else None)


# ---------------------------------------------------------------------------- key-value stores


class KeyValue(Protocol):
    async def put(self, key: str, value: Any) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def items(self) -> dict[str, Any]: ...

    async def write(self, puts: dict[str, Any], deletes: list[str]) -> None: ...


class KvStore:
    """One of the app's IndexedDB stores (``app.ffi.kv_*``) as a :class:`KeyValue`."""

    def __init__(self, store: str, api: Any = None) -> None:
        if api is None:
            from app import ffi as api
        self._store = store
        self._api = api

    async def get(self, key: str) -> Any:
        return await self._api.kv_get(self._store, key)

    async def put(self, key: str, value: Any) -> None:
        await self._api.kv_put(self._store, key, value)

    async def delete(self, key: str) -> None:
        await self._api.kv_delete(self._store, key)

    async def items(self) -> dict[str, Any]:
        return await self._api.kv_items(self._store)

    async def write(self, puts: dict[str, Any], deletes: list[str]) -> None:
        """Puts and deletes in one transaction: all or none."""
        await self._api.kv_write(self._store, puts, deletes)


class ScopedKv:
    """One scope of a :class:`KeyValue`: keys ``<scope>|<key>`` (scope "" is the page's own, plain keys).
    ``items()`` lists only this scope's entries, so an embedded chat (app.ui.embed.conversation_scope)
    never sees the user's conversations, nor they its."""

    SEP = "|"

    def __init__(self, inner: KeyValue, scope: str) -> None:
        self._inner = inner
        self.scope = scope
        self._prefix = f"{scope}{self.SEP}" if scope else ""

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> Any:
        return await self._inner.get(self._key(key))  # type: ignore[attr-defined]

    async def put(self, key: str, value: Any) -> None:
        await self._inner.put(self._key(key), value)

    async def delete(self, key: str) -> None:
        await self._inner.delete(self._key(key))

    async def write(self, puts: dict[str, Any], deletes: list[str]) -> None:
        await self._inner.write({self._key(k): v for k, v in puts.items()}, [self._key(k) for k in deletes])

    async def items(self) -> dict[str, Any]:
        everything = await self._inner.items()
        if self._prefix:
            return {k[len(self._prefix):]: v for k, v in everything.items() if k.startswith(self._prefix)}
        return {k: v for k, v in everything.items() if self.SEP not in k}


# ---------------------------------------------------------------------------- the conversation store


def message_key(conv_id: str, message_id: str) -> str:
    return f"{conv_id}{MESSAGE_SEP}{message_id}"


@dataclass
class Remote:
    """What another tab announced, once checked against this tab's knowledge: a conversation's header
    and messages changed (``header``, ``messages``, ``removed``), or it was deleted (``deleted``)."""

    conv_id: str
    deleted: bool = False
    header: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class ConversationStore:
    """Reads and writes conversations in the layout of the module docstring and tells other tabs.

        store = ConversationStore(kv, broadcast=post)     # post(message): to the other tabs
        convs = await store.load()
        await store.save(conv)                             # one transaction; raises if refused
        remote = store.receive(message)                    # another tab's announcement, or None
    """

    def __init__(self, kv: KeyValue, *, broadcast: Callable[[dict[str, Any]], None] | None = None,
                 tab: str | None = None) -> None:
        self._kv = kv
        self._broadcast = broadcast
        self.tab = tab or new_id()
        # What this tab knows to be stored: per conversation, each message's record as last written
        # or read (so a save writes only what changed, and deletes only what it knew).
        self._stored: dict[str, dict[str, dict[str, Any]]] = {}
        self._headers: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()

    async def load(self) -> list[Conversation]:
        """Every stored conversation, most recently updated first. Leftovers of deleted conversations
        (records written by a tab that had not heard of the deletion yet) are removed."""
        headers: dict[str, dict[str, Any]] = {}
        messages: dict[str, dict[str, dict[str, Any]]] = {}
        leftovers: list[str] = []
        records = await self._kv.items()
        self.deleted |= {key[: -len(TOMBSTONE)] for key in records if key.endswith(TOMBSTONE)}
        for key, value in records.items():
            if key.endswith(TOMBSTONE) or not isinstance(value, dict):
                continue
            conv_id, sep, message_id = key.partition(MESSAGE_SEP)
            if conv_id in self.deleted:
                leftovers.append(key)
            elif sep and "id" in value and "role" in value:
                messages.setdefault(conv_id, {})[message_id] = value
            elif not sep and "id" in value:
                headers[conv_id] = value
        convs = []
        for conv_id, header in headers.items():
            own = messages.get(conv_id, {})
            # The older layout kept messages inside the header: read them, prefer separate records.
            legacy = {m["id"]: {"at": float(header.get("created") or 0), "n": i, **m}
                      for i, m in enumerate(header.get("messages") or ()) if isinstance(m, dict) and "id" in m}
            conv = Conversation.from_record({**header, "messages": list({**legacy, **own}.values())})
            self._headers[conv_id] = conv.header() if not legacy else {}
            self._stored[conv_id] = {m: r for m, r in own.items()}
            convs.append(conv)
        convs.sort(key=lambda c: c.updated.peek(), reverse=True)
        if leftovers:
            try:
                await self._kv.write({}, leftovers)
            except Exception:  # noqa: BLE001 - tidying only: the tombstone already hides them
                pass
        return convs

    def changes(self, conv: Conversation) -> tuple[dict[str, Any], list[str]]:
        """What a save of ``conv`` writes: ``({key: record}, [keys to delete])``."""
        stored = self._stored.get(conv.id, {})
        puts: dict[str, Any] = {}
        header = conv.header()
        if self._headers.get(conv.id) != header:
            puts[conv.id] = header
        current = set()
        for message in conv.messages.peek():
            current.add(message.id)
            record = message.to_record()
            if stored.get(message.id) != record:
                puts[message_key(conv.id, message.id)] = record
        deletes = [message_key(conv.id, m) for m in stored if m not in current]
        return puts, deletes

    async def save(self, conv: Conversation) -> None:
        """Write what changed in ``conv`` in one transaction, then tell the other tabs. Raises what
        the store raised (e.g. QuotaExceeded): nothing was written then, and the next save retries."""
        await self.save_many([conv])

    async def save_many(self, convs: list[Conversation], *, revive: bool = False) -> None:
        """:meth:`save` for several conversations in one transaction (an import: all or none).
        ``revive``: conversations deleted before come back (their tombstones go): the user imports them."""
        revived = {conv.id for conv in convs if revive and conv.id in self.deleted}
        planned = [(conv, *self.changes(conv)) for conv in convs if conv.id not in self.deleted or conv.id in revived]
        planned = [p for p in planned if p[1] or p[2]]
        if not planned:
            return
        puts = {key: value for _, conv_puts, _ in planned for key, value in conv_puts.items()}
        deletes = [key for _, _, conv_deletes in planned for key in conv_deletes]
        deletes += [conv_id + TOMBSTONE for conv_id in sorted(revived)]
        await self._kv.write(puts, deletes)
        self.deleted -= revived
        for conv, conv_puts, conv_deletes in planned:
            stored = self._stored.setdefault(conv.id, {})
            written = [record for key, record in conv_puts.items() if key != conv.id]
            for record in written:
                stored[record["id"]] = record
            removed = [key.partition(MESSAGE_SEP)[2] for key in conv_deletes]
            for message_id in removed:
                stored.pop(message_id, None)
            header = conv_puts.get(conv.id) or conv.header()
            self._headers[conv.id] = header
            self._announce({"conv": header, "messages": written, "removed": removed,
                            **({"revived": True} if conv.id in revived else {})})

    async def delete(self, conv: Conversation) -> None:
        """Remove ``conv`` and leave a tombstone, in one transaction; then tell the other tabs."""
        await self.delete_many([conv])

    async def delete_many(self, convs: list[Conversation]) -> None:
        """:meth:`delete` for several conversations in one transaction."""
        tombstones: dict[str, Any] = {}
        deletes: list[str] = []
        for conv in convs:
            self.deleted.add(conv.id)
            known = set(self._stored.pop(conv.id, {})) | {m.id for m in conv.messages.peek()}
            self._headers.pop(conv.id, None)
            tombstones[conv.id + TOMBSTONE] = {"deleted": True}
            deletes += [conv.id, *(message_key(conv.id, m) for m in sorted(known))]
        try:
            await self._kv.write(tombstones, deletes)
        except Exception:  # noqa: BLE001 - no room even for a tombstone: removing frees room anyway
            await self._kv.write({}, deletes)
        for conv in convs:
            self._announce({"deleted": conv.id})

    def forget(self, conv_id: str) -> None:
        """Another tab deleted ``conv_id``."""
        self.deleted.add(conv_id)
        self._stored.pop(conv_id, None)
        self._headers.pop(conv_id, None)

    def receive(self, message: Any) -> Remote | None:
        """Another tab's announcement, as what changed (None: not for this tab, or not well formed).
        What it wrote counts as stored: this tab will not write it again, and deletes it only if
        the user here drops it (a retry or an edit)."""
        if not isinstance(message, dict) or message.get("from") == self.tab:
            return None
        if isinstance(message.get("deleted"), str):
            self.forget(message["deleted"])
            return Remote(message["deleted"], deleted=True)
        header = message.get("conv")
        if not isinstance(header, dict) or not isinstance(header.get("id"), str):
            return None
        if message.get("revived") is True:  # imported again after a deletion
            self.deleted.discard(header["id"])
        if header["id"] in self.deleted:
            return None
        conv_id = header["id"]
        records = [r for r in message.get("messages") or () if isinstance(r, dict) and "id" in r and "role" in r]
        removed = [m for m in message.get("removed") or () if isinstance(m, str)]
        stored = self._stored.setdefault(conv_id, {})
        for record in records:
            stored[record["id"]] = record
        for message_id in removed:
            stored.pop(message_id, None)
        return Remote(conv_id, header=header, messages=records, removed=removed)

    def _announce(self, message: dict[str, Any]) -> None:
        if self._broadcast is not None:
            try:
                self._broadcast({"from": self.tab, **message})
            except Exception:  # noqa: BLE001 - the other tabs read it from storage at their next start
                pass


def merge(conv: Conversation, remote: Remote, *, busy: Iterable[Message] = ()) -> None:
    """Apply another tab's change to ``conv`` in memory: its messages updated or added in order, the
    ones it removed dropped. ``busy``: messages this tab is writing itself, left alone."""
    mine = {m.id for m in busy}
    conv.update_header(remote.header)
    current = {m.id: m for m in conv.messages.peek()}
    for record in remote.messages:
        if record["id"] in mine:
            continue
        if record["id"] in current:
            current[record["id"]].update_from(record)
        else:
            current[record["id"]] = Message.from_record(record, live=True)
    for message_id in remote.removed:
        if message_id not in mine:
            current.pop(message_id, None)
    ordered = sorted(current.values(), key=Message.order)
    if ordered != conv.messages.peek():
        conv.messages.set(ordered)


__all__ = ["ROLES", "STATUSES", "SUMMARY_HEADING", "Conversation", "ConversationStore", "KeyValue", "KvStore", "Message", "Remote",
           "ScopedKv", "merge", "message_key", "new_id", "title_from"]
