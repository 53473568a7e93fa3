"""Chat state and what users do with it: send, stop, retry, edit and resend, conversations.

    chat = ChatState(connect=get_client, kv=KvStore("conversations"), settings=Signal(Settings()))
    await chat.load()                       # conversations kept in IndexedDB
    await chat.send("Hello")                # streams into chat.current.peek().messages
    await chat.stop()                       # from a key handler while send() runs

No DOM here: views (:mod:`app.ui.view`) subscribe to the signals. A streamed token changes one
message's ``text`` signal; the conversation's message list changes only when a message is added or
removed. While an answer streams, the conversation is written to storage at most every
``save_every`` seconds (and once at the end), so a reload keeps what was already received; a
message that was streaming when the page went away comes back as "interrupted".
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from app.config import Settings
from app.context import fit_window
from app.errors import InvalidRequest, QuotaExceeded, StorageClosed, UsageError
from app.middleware import redact
from app.ui.store import Signal, batch

# Message lifecycle: a reply starts "streaming" and ends in one of the others.
STATUSES = ("done", "streaming", "stopped", "error", "interrupted")
TITLE_CHARS = 48


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def title_from(text: str) -> str:
    """A conversation title from its first message: first line, at most ``TITLE_CHARS`` characters."""
    line = " ".join(text.strip().split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


class Message:
    """One turn. ``text`` and ``status`` are signals; ``meta`` holds what the answer says about itself:
    backend, model, completion tokens, tokens/s, finish reason, error."""

    def __init__(self, role: str, text: str = "", *, status: str = "done", id: str | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        self.id = id or _new_id()
        self.role = role
        self.text = Signal(text)
        self.status = Signal(status)
        self.meta: Signal[dict[str, Any]] = Signal(dict(meta or {}))

    def append(self, delta: str) -> None:
        self.text.set(self.text.peek() + delta)

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "role": self.role, "content": self.text.peek(), "status": self.status.peek(),
                "meta": self.meta.peek()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Message:
        status = record.get("status", "done")
        if status == "streaming":  # the page went away mid-answer: keep what arrived
            status = "interrupted"
        return cls(record["role"], record.get("content") or "", status=status if status in STATUSES else "done",
                   id=record.get("id"), meta=record.get("meta") or {})

    def __repr__(self) -> str:
        return f"Message({self.role!r}, {self.text.peek()[:30]!r}, status={self.status.peek()!r})"


class Conversation:
    """Messages in order, a title (from the first message until the user renames it)."""

    def __init__(self, *, id: str | None = None, title: str = "New chat", titled: bool = False,
                 created: float = 0.0, updated: float = 0.0, messages: list[Message] | None = None) -> None:
        self.id = id or _new_id()
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

    def request_messages(self, system_prompt: str) -> list[dict[str, Any]]:
        """The history in OpenAI form; failed or empty replies are left out."""
        out: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}] if system_prompt else []
        for m in self.messages.peek():
            text = m.text.peek()
            if m.role == "assistant" and (m.status.peek() == "error" or not text):
                continue
            out.append({"role": m.role, "content": text})
        return out

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title.peek(), "titled": self.titled, "created": self.created,
                "updated": self.updated.peek(), "messages": [m.to_record() for m in self.messages.peek()]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Conversation:
        return cls(id=record["id"], title=record.get("title") or "New chat", titled=bool(record.get("titled")),
                   created=float(record.get("created") or 0), updated=float(record.get("updated") or 0),
                   messages=[Message.from_record(m) for m in record.get("messages") or ()])


class KeyValue(Protocol):
    async def put(self, key: str, value: Any) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def items(self) -> dict[str, Any]: ...


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


class ScopedKv:
    """One scope of a :class:`KeyValue`: keys ``<scope>|<key>`` (scope "" is the page's own, plain keys).
    ``items()`` lists only this scope's entries, so an embedded chat (app.ui.embed.conversation_scope)
    never sees the user's conversations, nor they its."""

    SEP = "|"

    def __init__(self, inner: KeyValue, scope: str) -> None:
        self._inner = inner
        self._prefix = f"{scope}{self.SEP}" if scope else ""

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> Any:
        return await self._inner.get(self._key(key))  # type: ignore[attr-defined]

    async def put(self, key: str, value: Any) -> None:
        await self._inner.put(self._key(key), value)

    async def delete(self, key: str) -> None:
        await self._inner.delete(self._key(key))

    async def items(self) -> dict[str, Any]:
        everything = await self._inner.items()
        if self._prefix:
            return {k[len(self._prefix):]: v for k, v in everything.items() if k.startswith(self._prefix)}
        return {k: v for k, v in everything.items() if self.SEP not in k}


def _unsaved_words(exc: BaseException) -> str:
    """What the chat says when a conversation could not be stored, with a way out."""
    keep = "This conversation stays open here and is saved again with your next change."
    if isinstance(exc, QuotaExceeded):
        return ("Not saved: the browser refused to store more (storage quota full). Free space by "
                f"deleting a model under Models, or copy this conversation out. {keep}")
    if isinstance(exc, StorageClosed):  # nothing can be saved in this tab until it reloads
        return ("Not saved: this tab closed its storage because a newer version of the app opened. Copy "
                "this conversation out if you need what is not saved, then reload.")
    return f"Not saved: {type(exc).__name__}: {redact(str(exc))}. {keep}"


def _context_window(client: Any, history: list[dict[str, Any]]) -> int | None:
    """The context the client's backend offers for this history (a router: its largest route)."""
    from app.params import ChatRequest

    backend = client.backend
    try:
        measure = backend.context_window
    except AttributeError:  # one backend, no router
        return backend.capabilities(None).max_context
    return measure(ChatRequest.build(messages=history))


def _stats(stream: Any, first: float | None, last: float | None, pieces: int) -> dict[str, Any]:
    """Tokens and tokens/s of a finished stream: the engine's decode rate when it reports one,
    otherwise completion tokens (or streamed pieces) over the time between first and last token."""
    usage = stream.accumulator.usage
    tokens = usage.completion_tokens if usage is not None else pieces
    rate = (usage.extra or {}).get("decode_tokens_per_s") if usage is not None else None
    if rate is None and first is not None and last is not None and last > first and tokens > 1:
        rate = (tokens - 1) / (last - first)  # intervals between tokens, not tokens
    meta: dict[str, Any] = {"backend": stream.backend, "model": stream.accumulator.model, "tokens": tokens}
    if rate is not None:
        meta["tokens_per_s"] = round(float(rate), 1)
    if stream.route:
        meta["route"] = stream.route
    return meta


class ChatState:
    """The conversations of this page and the intents on them. See the module docstring."""

    def __init__(self, *, connect: Callable[[], Awaitable[Any]], kv: KeyValue,
                 settings: Signal[Settings] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, save_every: float = 0.25) -> None:
        self._connect = connect
        self._kv = kv
        self.settings = settings or Signal(Settings())
        self._clock = clock
        self._wall = wall
        self.save_every = save_every
        self.conversations: Signal[list[Conversation]] = Signal([])
        self.current: Signal[Conversation | None] = Signal(None)
        self.streaming: Signal[Message | None] = Signal(None)  # the reply being written, if any
        self.notice: Signal[str] = Signal("")  # the last failure, in words
        # Why the conversations are not all stored, in words with a way out ("" once every write
        # succeeded). Kept apart from `notice`, which each new answer clears.
        self.unsaved: Signal[str] = Signal("")
        self._stream: Any = None
        self._opening: asyncio.Task | None = None  # loading the model and waiting for the first token
        self._stop_requested = False
        self._dirty: dict[str, Conversation] = {}
        self._failed: dict[str, Conversation] = {}  # refused writes, tried again with the next change
        self._writer: asyncio.Task | None = None

    # ------------------------------------------------------------------ conversations

    async def load(self) -> None:
        """Read every stored conversation; the most recently updated becomes current."""
        records = await self._kv.items()
        convs = [Conversation.from_record(r) for r in records.values() if isinstance(r, dict) and "id" in r]
        convs.sort(key=lambda c: c.updated.peek(), reverse=True)
        with batch():
            self.conversations.set(convs)
            self.current.set(convs[0] if convs else None)

    def get(self, conversation_id: str) -> Conversation:
        for c in self.conversations.peek():
            if c.id == conversation_id:
                return c
        raise UsageError(f"no conversation {conversation_id!r}")

    def new_conversation(self) -> Conversation:
        """Start an empty conversation (or stay in the current one when it is still empty)."""
        current = self.current.peek()
        if current is not None and not current.messages.peek():
            return current
        now = self._wall()
        conv = Conversation(created=now, updated=now)
        with batch():
            self.conversations.set([conv, *self.conversations.peek()])
            self.current.set(conv)
        return conv

    def select(self, conversation_id: str) -> None:
        self.current.set(self.get(conversation_id))

    async def rename(self, conversation_id: str, title: str) -> None:
        title = " ".join(title.split())
        if not title:
            raise InvalidRequest("a conversation needs a title", param="title")
        conv = self.get(conversation_id)
        conv.title.set(title)
        conv.titled = True
        await self.save(conv)

    async def delete(self, conversation_id: str) -> None:
        conv = self.get(conversation_id)
        reply = self.streaming.peek()
        if reply is not None and reply in conv.messages.peek():
            await self.stop()
        self._dirty.pop(conv.id, None)
        self._failed.pop(conv.id, None)
        await self.flush()
        remaining = [c for c in self.conversations.peek() if c is not conv]
        with batch():
            self.conversations.set(remaining)
            if self.current.peek() is conv:
                self.current.set(remaining[0] if remaining else None)
        await self._kv.delete(conv.id)

    # ------------------------------------------------------------------ messages

    async def send(self, text: str) -> Message:
        """Add a user message to the current conversation (a new one if none) and stream the reply."""
        text = text.strip()
        if not text:
            raise InvalidRequest("the message is empty", param="content")
        self._check_idle()
        conv = self.current.peek() or self.new_conversation()
        with batch():
            conv.messages.set([*conv.messages.peek(), Message("user", text)])
            if not conv.titled and len(conv.messages.peek()) == 1:
                conv.title.set(title_from(text))
        return await self._answer(conv)

    async def retry(self, message_id: str) -> Message:
        """Answer again: drop the reply ``message_id`` (and what follows) and stream a new one."""
        self._check_idle()
        conv = self._current()
        index = conv.find(message_id)
        if conv.messages.peek()[index].role != "assistant":
            raise UsageError("only an answer can be retried")
        conv.messages.set(conv.messages.peek()[:index])
        return await self._answer(conv)

    async def edit(self, message_id: str, text: str) -> Message:
        """Change user message ``message_id``, drop everything after it and stream a new reply."""
        text = text.strip()
        if not text:
            raise InvalidRequest("the message is empty", param="content")
        self._check_idle()
        conv = self._current()
        index = conv.find(message_id)
        message = conv.messages.peek()[index]
        if message.role != "user":
            raise UsageError("only your own messages can be edited")
        with batch():
            message.text.set(text)
            conv.messages.set(conv.messages.peek()[: index + 1])
        return await self._answer(conv)

    async def stop(self) -> None:
        """Stop the answer being written; what arrived stays, marked "stopped"."""
        if self.streaming.peek() is None:
            return
        self._stop_requested = True
        if self._stream is not None:
            await self._stream.stop()
        elif self._opening is not None and not self._opening.done():
            # No answer has started yet (a model loading, a long prefill, an endpoint that does not
            # answer): give up on it now; what it held (the engine's turn, the fetch) is released.
            self._opening.cancel()

    def _check_idle(self) -> None:
        if self.streaming.peek() is not None:
            raise UsageError("an answer is still being written: stop it first")

    def _current(self) -> Conversation:
        conv = self.current.peek()
        if conv is None:
            raise UsageError("no conversation is open")
        return conv

    async def _answer(self, conv: Conversation) -> Message:
        reply = Message("assistant", status="streaming")
        history = conv.request_messages(self.settings.peek().system_prompt)
        with batch():
            conv.messages.set([*conv.messages.peek(), reply])
            conv.updated.set(self._wall())
            self.streaming.set(reply)
            self.notice.set("")
            self._to_front(conv)
        self._stop_requested = False
        self._save_soon(conv)
        first = last = None
        pieces = 0
        try:
            self._opening = asyncio.ensure_future(self._open(history, reply))
            try:
                stream = await self._opening
            except asyncio.CancelledError:
                if not self._stop_requested or asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise  # the page itself is going away, not a Stop
                reply.status.set("stopped")
                return reply
            finally:
                self._opening = None
            if stream is None:
                reply.status.set("stopped")
                return reply
            self._stream = stream
            async with stream:
                if self._stop_requested:
                    await stream.stop()
                saved = self._clock()
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.index == 0 and choice.delta.content:
                            last = self._clock()
                            first = first if first is not None else last
                            pieces += 1
                            reply.append(choice.delta.content)
                    if self._clock() - saved >= self.save_every:
                        saved = self._clock()
                        self._save_soon(conv)
            finish = stream.finish_reason
            with batch():
                reply.meta.set({**reply.meta.peek(), **_stats(stream, first, last, pieces), "finish_reason": finish})
                reply.status.set("stopped" if finish == "abort" or self._stop_requested else "done")
        except Exception as exc:  # every failure ends this reply with words, never a stuck page
            with batch():
                # Stored, shown and sent to an embedding host: an endpoint's error may quote the key.
                said = redact(str(exc))
                reply.meta.set({**reply.meta.peek(), "error": type(exc).__name__, "error_message": said})
                reply.status.set("error")
                self.notice.set(f"{type(exc).__name__}: {said}")
        finally:
            self._stream = None
            self.streaming.set(None)
            conv.updated.set(self._wall())
            self._save_soon(conv)
            await self.flush()
        return reply

    async def _open(self, history: list[dict[str, Any]], reply: Message) -> Any:
        """The client (the chosen model loaded) and the answer's stream, once its first chunk came;
        None when Stop came while the model loaded. A history too long for every model that may
        answer loses its oldest turns first (the reply says how many), so a long chat never dies."""
        client = await self._connect()
        if self._stop_requested:
            return None
        params = self.settings.peek().params()
        history, dropped = fit_window(history, _context_window(client, history), reserve=params["max_tokens"])
        if dropped:
            reply.meta.set({**reply.meta.peek(), "dropped": dropped})
        return await client.chat.completions.create(
            messages=history, stream=True, stream_options={"include_usage": True}, **params)

    def _to_front(self, conv: Conversation) -> None:
        convs = self.conversations.peek()
        if convs and convs[0] is conv:
            return
        self.conversations.set([conv, *(c for c in convs if c is not conv)])

    # ------------------------------------------------------------------ persistence

    def _save_soon(self, conv: Conversation) -> None:
        """Queue a write of ``conv`` (and of every conversation a write was refused for, since the
        cause may have gone); one writer task writes queued conversations in order."""
        for failed in self._failed.values():
            self._dirty.setdefault(failed.id, failed)
        self._dirty[conv.id] = conv
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_queued())

    async def _write_queued(self) -> None:
        # A refused write never ends the writer with an exception nor stops the queue: the
        # conversation stays in memory, `unsaved` says so, and the next change tries it again.
        while self._dirty:
            conv_id = next(iter(self._dirty))
            conv = self._dirty.pop(conv_id)
            if not (conv.messages.peek() or conv.titled):  # an untouched new chat is not worth keeping
                continue
            try:
                await self._kv.put(conv.id, conv.to_record())
            except Exception as exc:  # noqa: BLE001 - every refusal is shown, none is fatal
                self._failed[conv.id] = conv
                self.unsaved.set(_unsaved_words(exc))
            else:
                self._failed.pop(conv.id, None)
                if not self._failed:
                    self.unsaved.set("")

    async def flush(self) -> None:
        """Wait until every queued write has committed."""
        while self._writer is not None and not self._writer.done():
            try:
                await asyncio.shield(self._writer)
            except Exception:
                break
        writer, self._writer = self._writer, None
        if writer is not None and writer.done() and not writer.cancelled() and writer.exception() is not None:
            self.unsaved.set(_unsaved_words(writer.exception()))  # type: ignore[arg-type]

    async def save(self, conv: Conversation) -> None:
        self._save_soon(conv)
        await self.flush()
