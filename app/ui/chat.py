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

Other tabs of the app (same origin, same conversation scope) keep their own ChatState over the same
store; what one writes reaches the others through ``receive`` (app/ui/page.py wires a
BroadcastChannel), and each writes only its own messages (:mod:`app.ui.conversations`), so two
tabs chatting in one conversation both keep every message, and a conversation deleted in one
is gone from the other at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from app.config import Settings
from app.context import fit_window
from app.errors import InvalidRequest, QuotaExceeded, StorageClosed, UsageError
from app.middleware import redact
from app.reasoning import toggles_thinking
from app.ui.conversations import (
    STATUSES,
    Conversation,
    ConversationStore,
    KeyValue,
    KvStore,
    Message,
    Remote,
    ScopedKv,
    merge,
    title_from,
)
from app.ui.store import Signal, batch

__all__ = ["STATUSES", "ChatState", "Conversation", "KeyValue", "KvStore", "Message", "ScopedKv", "Settings",
           "title_from"]


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
                 wall: Callable[[], float] = time.time, save_every: float = 0.25,
                 broadcast: Callable[[dict[str, Any]], None] | None = None,
                 model: Callable[[], str | None] | None = None) -> None:
        self._connect = connect
        self._model = model
        self._records = ConversationStore(kv, broadcast=broadcast)
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
        self._early: list[Any] | None = None  # announcements that came while load() read the store
        self._search_cache: dict[str, tuple[tuple[int, int, int], str]] = {}

    # ------------------------------------------------------------------ conversations

    async def load(self) -> None:
        """Read every stored conversation; the most recently updated becomes current."""
        self._early = []  # what other tabs announce while this reads: applied after
        try:
            convs = await self._records.load()
            with batch():
                self.conversations.set(convs)
                self.current.set(convs[0] if convs else None)
        finally:
            early, self._early = self._early, None
        for message in early:
            self.receive(message)

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

    def use_persona(self, name: str | None, prompt: str | None) -> Conversation:
        """Chat with this system prompt (a persona's; None: the one in Settings): in the open
        conversation while it is empty, else in a new one (a conversation keeps the persona it began with)."""
        conv = self.current.peek()
        if conv is None or conv.messages.peek():
            conv = self.new_conversation()
        with batch():
            conv.system.set(prompt)
            conv.persona.set(name if prompt is not None else None)
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
        self._drop(conv)
        await self._records.delete(conv)

    async def delete_all(self) -> int:
        """Delete every conversation (one transaction); returns how many."""
        convs = self.conversations.peek()
        if self.streaming.peek() is not None:
            await self.stop()
        self._dirty.clear()
        self._failed.clear()
        await self.flush()
        with batch():
            self.conversations.set([])
            self.current.set(None)
        await self._records.delete_many(convs)
        return len(convs)

    async def import_records(self, records: list[dict[str, Any]]) -> tuple[int, int]:
        """Add conversations checked by :func:`app.ui.transfer.parse_import`, stored in one
        transaction (all or none). One already here (same id) is left as it is. Returns (added, skipped)."""
        have = {c.id for c in self.conversations.peek()}
        new = [Conversation.from_record(r) for r in records if r["id"] not in have]
        await self._records.save_many(new, revive=True)
        if new:
            convs = [*self.conversations.peek(), *new]
            convs.sort(key=lambda c: c.updated.peek(), reverse=True)
            with batch():
                self.conversations.set(convs)
                if self.current.peek() is None or not self.current.peek().messages.peek():
                    self.current.set(convs[0])
        return len(new), len(records) - len(new)

    def search(self, query: str) -> list[Conversation]:
        """Conversations whose title or any message contains ``query`` (case-insensitive), in list order."""
        words = query.casefold().split()
        if not words:
            return list(self.conversations.peek())
        return [c for c in self.conversations.peek() if all(w in self._haystack(c) for w in words)]

    def _haystack(self, conv: Conversation) -> str:
        """The conversation's title and text, case-folded, cached until one of them changes."""
        messages = conv.messages.peek()
        stamp = (conv.title._version, conv.messages._version, sum(m.text._version for m in messages))
        cached = self._search_cache.get(conv.id)
        if cached is None or cached[0] != stamp:
            text = "\n".join([conv.title.peek(), *(m.text.peek() for m in messages)]).casefold()
            cached = self._search_cache[conv.id] = (stamp, text)
        return cached[1]

    def _drop(self, conv: Conversation) -> None:
        remaining = [c for c in self.conversations.peek() if c is not conv]
        with batch():
            self.conversations.set(remaining)
            if self.current.peek() is conv:
                self.current.set(remaining[0] if remaining else None)

    def receive(self, message: Any) -> None:
        """Another tab's announcement (a BroadcastChannel message): show what it wrote."""
        if self._early is not None:
            self._early.append(message)
            return
        remote = self._records.receive(message)
        if remote is not None:
            self._apply(remote)

    def _apply(self, remote: Remote) -> None:
        conv = next((c for c in self.conversations.peek() if c.id == remote.conv_id), None)
        if remote.deleted:
            self._dirty.pop(remote.conv_id, None)
            self._failed.pop(remote.conv_id, None)
            if conv is not None:
                reply = self.streaming.peek()
                if reply is not None and reply in conv.messages.peek():
                    asyncio.ensure_future(self.stop())
                self._drop(conv)
            return
        with batch():
            if conv is None:
                conv = Conversation.from_record({**remote.header, "messages": []})
                convs = [*self.conversations.peek(), conv]
                convs.sort(key=lambda c: c.updated.peek(), reverse=True)
                self.conversations.set(convs)
            reply = self.streaming.peek()
            merge(conv, remote, busy=[reply] if reply is not None else [])

    # ------------------------------------------------------------------ messages

    async def send(self, text: str) -> Message:
        """Add a user message to the current conversation (a new one if none) and stream the reply."""
        text = text.strip()
        if not text:
            raise InvalidRequest("the message is empty", param="content")
        self._check_idle()
        conv = self.current.peek() or self.new_conversation()
        with batch():
            conv.messages.set([*conv.messages.peek(), self._message(conv, "user", text)])
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
        reply = self._message(conv, "assistant", status="streaming")
        own = conv.system.peek()
        history = conv.request_messages(own if own is not None else self.settings.peek().system_prompt)
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
        thinking: list[float] = []  # when the first and the last piece of reasoning came
        try:
            self._opening = asyncio.ensure_future(self._open(history, reply, conv.think.peek()))
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
                # What arrived since the last turn is shown at once, as one append: a fast stream
                # costs the page one update per batch, not one per token (nothing waits for a batch).
                async for arrived in stream.batches():
                    reasoning: list[str] = []
                    content: list[str] = []
                    for chunk in arrived:
                        for choice in chunk.choices:
                            if choice.index != 0:
                                continue
                            if choice.delta.reasoning_content:
                                reasoning.append(choice.delta.reasoning_content)
                            if choice.delta.content:
                                content.append(choice.delta.content)
                    if reasoning:
                        now = self._clock()
                        thinking[:] = [thinking[0] if thinking else now, now]
                        reply.reasoning.set(reply.reasoning.peek() + "".join(reasoning))
                    if content:
                        last = self._clock()
                        first = first if first is not None else last
                        pieces += len(content)
                        reply.append("".join(content))
                    if self._clock() - saved >= self.save_every:
                        saved = self._clock()
                        self._save_soon(conv)
            finish = stream.finish_reason
            with batch():
                reply.meta.set({**reply.meta.peek(), **_stats(stream, first, last, pieces), "finish_reason": finish,
                                **({"thought_s": round((first or thinking[-1]) - thinking[0], 1)} if thinking else {})})
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

    async def _open(self, history: list[dict[str, Any]], reply: Message, think: bool | None = None) -> Any:
        """The client (the chosen model loaded) and the answer's stream, once its first chunk came;
        None when Stop came while the model loaded. A history too long for every model that may
        answer loses its oldest turns first (the reply says how many), so a long chat never dies."""
        client = await self._connect()
        if self._stop_requested:
            return None
        params = self.settings.peek().params()
        if think is not None and toggles_thinking(self.model()):
            params["enable_thinking"] = think
        history, dropped = fit_window(history, _context_window(client, history), reserve=params["max_tokens"])
        if dropped:
            reply.meta.set({**reply.meta.peek(), "dropped": dropped})
        return await client.chat.completions.create(
            messages=history, stream=True, stream_options={"include_usage": True}, **params)

    def model(self) -> str | None:
        """The model the chat asks first (the session's chosen one), for per-model choices."""
        return self._model() if self._model is not None else None

    def _message(self, conv: Conversation, role: str, text: str = "", **kw: Any) -> Message:
        """A new last message of ``conv``: created now, after every message it holds."""
        messages = conv.messages.peek()
        at = max([self._wall(), *(m.at for m in messages[-1:])])
        return Message(role, text, at=at, n=len(messages), **kw)

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
                await self._records.save(conv)
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
