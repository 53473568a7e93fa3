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
from app.context import Anchor, Counter, Part, Plan, Rates, full_prompt_tokens, learn_prompt, plan_request
from app.errors import InvalidRequest, QuotaExceeded, StorageClosed, UsageError
from app.middleware import redact
from app.params import MAX_IMAGES_PER_REQUEST, check_image_url
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
from app.ui.store import Computed, Signal, batch

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


_running: set[asyncio.Future] = set()


def _checked_images(attachments: Any) -> list[dict[str, Any]]:
    """Attachments as stored with a message, or InvalidRequest (before anything is stored)."""
    if len(attachments) > MAX_IMAGES_PER_REQUEST:
        raise InvalidRequest(f"{len(attachments)} images; at most {MAX_IMAGES_PER_REQUEST} per message",
                             param="attachments")
    out = []
    for i, image in enumerate(attachments):
        if not isinstance(image, dict):
            raise InvalidRequest(f"attachments[{i}]: must be an image dict", param="attachments")
        check_image_url(image.get("url"), f"attachments[{i}]")
        out.append({"url": image["url"], "name": str(image.get("name") or "image"),
                    "width": int(image.get("width") or 0), "height": int(image.get("height") or 0)})
    return out


def _background(coro: Awaitable[Any]) -> None:
    """Run ``coro`` without waiting (kept referenced until done); a failure is printed, never
    raised into a click handler."""
    def done(task: asyncio.Future) -> None:
        _running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            print(f"chat: {type(exc).__name__}: {redact(str(exc))}")

    task = asyncio.ensure_future(coro)
    _running.add(task)
    task.add_done_callback(done)


SUMMARY_INSTRUCTION = (
    "Summarise the conversation below so that it can be continued without it: keep the facts, names, "
    "numbers, decisions, the user's requests and open questions. At most 150 words. Write only the summary.")
SUMMARY_MAX_TOKENS = 256
RATES_KEY = "token-rates"  # the per-model calibration, in the settings store


def _fingerprint(text: str) -> int:
    """Tells one system message from another (an anchor counts only for the same one)."""
    import zlib

    return zlib.crc32(text.encode("utf-8"))


def _count(value: Any) -> int | None:
    """A token count kept in a message's meta (an imported file may hold anything there)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class SummaryStopped(Exception):
    """Stop came while the model summarised: the answer ends "stopped", nothing is summarised."""


class _Request:
    """One request's messages, counted: the system text, its parts (message ids) and the anchor."""

    def __init__(self, conv: Conversation, system_prompt: str, counter: Counter, model: str | None,
                 draft: str | None = None, cache: dict[tuple[Any, ...], int] | None = None) -> None:
        summary, kept = conv.history()
        self.summary = summary
        self.system = conv.system_text(system_prompt, summary)
        self.system_tokens = counter.system(self.system)
        self.messages = {m.id: m for m in kept}
        self.texts = {m.id: m.text.peek() for m in kept}
        self.parts: list[Part] = []
        for m in kept:
            # The history is counted once per text and calibration (the meter recounts on each draft).
            key = (m.id, m.text._version, m.meta._version, model, counter.rates.chars, counter.rates.turn)
            tokens = cache.get(key) if cache is not None else None
            if tokens is None:
                meta = m.meta.peek()
                exact = _count(meta.get("completion_tokens")) if meta.get("model") == model else None
                tokens = counter.user(m.text.peek()) if m.role == "user" else counter.answer(m.text.peek(), exact)
                if cache is not None:
                    if len(cache) > 10_000:
                        cache.clear()
                    cache[key] = tokens
            self.parts.append(Part(m.id, m.role, tokens))
        if draft is not None:
            self.parts.append(Part("", "user", counter.user(draft)))
            self.texts[""] = draft
        self.anchor: Anchor | None = None
        fingerprint = _fingerprint(self.system)
        for m in reversed(kept):  # the newest answer the engine counted, sent as now
            meta = m.meta.peek()
            prompt, completion = _count(meta.get("prompt_tokens")), _count(meta.get("completion_tokens"))
            if m.role == "assistant" and prompt and completion:
                if meta.get("model") == model and meta.get("system_crc") == fingerprint and meta.get("sent_first"):
                    self.anchor = Anchor(prompt + completion, str(meta["sent_first"]), m.id)
                break

    def plan(self, window: int | None, reserve: int) -> Plan:
        return plan_request(self.system_tokens, self.parts, window=window, reserve=reserve, anchor=self.anchor)


class ChatState:
    """The conversations of this page and the intents on them. See the module docstring."""

    def __init__(self, *, connect: Callable[[], Awaitable[Any]], kv: KeyValue,
                 settings: Signal[Settings] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, save_every: float = 0.25,
                 broadcast: Callable[[dict[str, Any]], None] | None = None,
                 model: Callable[[], str | None] | None = None,
                 window: Callable[[], int | None] | None = None, prefs: Any = None,
                 titler: Callable[[str, list[dict[str, Any]]], Awaitable[str | None]] | None = None,
                 follow_model: Callable[[str], Awaitable[Any]] | None = None,
                 retrieve: Callable[[str], Awaitable[list[Any]]] | None = None) -> None:
        self._connect = connect
        # Passages of the user's files for a question (app.knowledge.Hit), put in the request with
        # numbers the answer cites; None: the chat reads no files.
        self._retrieve = retrieve
        self._model = model
        self._window = window  # the context window of what would answer, without loading anything
        self._prefs = prefs  # where the calibration is kept (the settings store), if anywhere
        # Names a conversation after its first exchange (the backend that answered, the exchange);
        # None: the title stays the first words of the first message.
        self._titler = titler
        self._titling: asyncio.Task | None = None
        # Makes a conversation's own model the chosen one when the conversation is opened.
        self._follow_model = follow_model
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
        self._sending: tuple[Any, ...] | None = None  # the request being answered, counted
        self._search_cache: dict[str, tuple[tuple[int, int, int], str]] = {}
        # The context meter: the draft in the message box (set by the view, debounced), each model's
        # calibration (bumped when it learns), and the next request's plan computed from them.
        self.draft: Signal[str] = Signal("")
        self.rates: dict[str, Rates] = {}
        self._calibrated: Signal[int] = Signal(0)
        self._last_window: int | None = None
        self._answered: str | None = None  # the model that answered last here
        self._counted: dict[tuple[Any, ...], int] = {}  # each message's tokens, by text and calibration
        self.meter: Computed[Plan | None] = Computed(self._measure)

    # ------------------------------------------------------------------ conversations

    async def load(self) -> None:
        """Read every stored conversation; the most recently updated becomes current."""
        self._early = []  # what other tabs announce while this reads: applied after
        await self._load_rates()
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
        conv = self.get(conversation_id)
        self.current.set(conv)
        own = conv.model.peek()
        if own and self._follow_model is not None and own != self.model():
            _background(self._follow_model(own))

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

    async def send(self, text: str, attachments: list[dict[str, Any]] | tuple[dict[str, Any], ...] = ()) -> Message:
        """Add a user message to the current conversation (a new one if none) and stream the reply.
        ``attachments``: images, ``{"url": "data:image/...", "name", "width", "height"}`` (what
        :func:`app.ffi.images.read_chosen_images` gives), checked before anything is stored."""
        text = text.strip()
        if not text and not attachments:
            raise InvalidRequest("the message is empty", param="content")
        images = _checked_images(attachments)
        self._check_idle()
        conv = self.current.peek() or self.new_conversation()
        with batch():
            conv.messages.set([*conv.messages.peek(), self._message(conv, "user", text, images=images)])
            if not conv.titled and len(conv.messages.peek()) == 1:
                conv.title.set(title_from(text or ", ".join(i["name"] for i in images)))
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
        self._stop_titling()  # the user's answer first: a title is not worth waiting for
        reply = self._message(conv, "assistant", status="streaming")
        own = conv.system.peek()
        system_prompt = own if own is not None else self.settings.peek().system_prompt
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
            self._opening = asyncio.ensure_future(self._open(conv, system_prompt, reply, conv.think.peek()))
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
                reply.meta.set({**reply.meta.peek(), **_stats(stream, first, last, pieces), **self._learn(reply, stream),
                                "finish_reason": finish,
                                **({"thought_s": round((first or thinking[-1]) - thinking[0], 1)} if thinking else {})})
                reply.status.set("stopped" if finish == "abort" or self._stop_requested else "done")
                if stream.backend == "webllm" and stream.accumulator.model:
                    conv.model.set(stream.accumulator.model)
            if reply.status.peek() == "done":
                self._title_soon(conv, stream.backend, conv.request_messages(system_prompt, images=False))
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

    async def _open(self, conv: Conversation, system_prompt: str, reply: Message, think: bool | None = None) -> Any:
        """The client (the chosen model loaded) and the answer's stream, once its first chunk came;
        None when Stop came while the model loaded or summarised. A history too long for every model
        that may answer loses its oldest turns first, or (``context_policy`` "summarise") has them
        summarised by the model into a pinned summary sent instead; the reply says which, and how many."""
        client = await self._connect()
        if self._stop_requested:
            return None
        settings = self.settings.peek()
        params = settings.params()
        if think is not None and toggles_thinking(self.model()):
            params["enable_thinking"] = think
        window = _context_window(client, conv.request_messages(system_prompt))
        if window is None and self._window is not None:  # a route that does not say hides no other's
            window = self._window()
        self._last_window = window
        model = self._model_of(conv)
        counter = Counter(self.rates.get(model or ""))
        request = _Request(conv, system_prompt, counter, model)
        plan = request.plan(window, params["max_tokens"])
        said: dict[str, Any] = {}
        if plan.dropped and settings.context_policy == "summarise":
            try:
                await self._summarise(client, conv, request, plan.dropped, reply, window or 0)
            except SummaryStopped:
                return None
            except Exception as exc:  # noqa: BLE001 - a failed summary falls back to leaving turns out
                said["summary_failed"] = f"{type(exc).__name__}: {redact(str(exc))}"
            else:
                request = _Request(conv, system_prompt, counter, model)
                plan = request.plan(window, params["max_tokens"])
        if plan.dropped:
            said["dropped"] = len(plan.dropped)
        if request.summary is not None:
            said["summarised"] = int(request.summary.meta.peek().get("summarised") or 0)
        sent = [request.messages[key] for key in plan.sent]
        history = ([{"role": "system", "content": request.system}] if request.system else []) + [
            {"role": m.role, "content": m.content()} for m in sent]
        if self._retrieve is not None and history and history[-1]["role"] == "user":
            history = await self._with_passages(history, reply, said)
            if self._stop_requested:
                return None
        # What the answer's usage is checked against and learned from, once it comes (_learn).
        self._sending = (request, plan, model, counter)
        # Which messages and system text the request sent: its usage anchors only a request sending the same.
        reply.meta.set({**reply.meta.peek(), **said, "sent_first": plan.sent[0] if plan.sent else "",
                        "system_crc": _fingerprint(request.system)})
        return await client.chat.completions.create(
            messages=history, stream=True, stream_options={"include_usage": True}, **params)

    async def _with_passages(self, history: list[dict[str, Any]], reply: Message,
                             said: dict[str, Any]) -> list[dict[str, Any]]:
        """The request with the passages of the user's files that match the question; the reply
        keeps which ones (``meta["sources"]``: number, file, heading, text) to show as its citations.
        A failed search is said on the reply and the question goes without passages."""
        from app.knowledge import Knowledge

        question = history[-1]["content"]
        if isinstance(question, list):  # text and images: the text parts are the question
            question = " ".join(p.get("text", "") for p in question if p.get("type") == "text")
        if not isinstance(question, str) or not question.strip():
            return history
        try:
            hits = await self._retrieve(question)  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - the answer goes on without the files
            said["sources_error"] = f"{type(exc).__name__}: {redact(str(exc))}"
            return history
        if hits:
            said["sources"] = [{"n": h.number, "name": h.name, "heading": h.heading, "text": h.text,
                                "file_id": h.file_id, "chunk": h.chunk} for h in hits]
        return Knowledge.with_context(history, hits)

    def _title_soon(self, conv: Conversation, backend: str, exchange: list[dict[str, Any]]) -> None:
        """After a conversation's first exchange, ask for a title in the background (unless the
        user named it); a title that comes after the user renamed or deleted it is dropped."""
        messages = conv.messages.peek()
        if self._titler is None or conv.titled or [m.role for m in messages] != ["user", "assistant"]:
            return
        titler = self._titler

        async def name_it() -> None:
            try:
                title = await titler(backend, exchange)
            except Exception as exc:  # noqa: BLE001 - a title is a nicety: the first words stay
                print(f"chat: no title for {conv.id}: {type(exc).__name__}: {redact(str(exc))}")
                return
            if title and not conv.titled and any(c is conv for c in self.conversations.peek()):
                conv.title.set(title)
                await self.save(conv)

        self._titling = asyncio.ensure_future(name_it())

    def _stop_titling(self) -> None:
        if self._titling is not None and not self._titling.done():
            self._titling.cancel()
        self._titling = None

    async def titled(self) -> None:
        """Wait for the title being asked for, if any (tests and the host API)."""
        if self._titling is not None:
            await asyncio.gather(self._titling, return_exceptions=True)


    async def _summarise(self, client: Any, conv: Conversation, request: _Request, keys: list[str],
                         reply: Message, window: int) -> Message:
        """Ask the model for a summary of the messages ``keys`` (and of the summary in use), and pin it
        in ``conv`` just before ``reply``. Raises SummaryStopped on Stop, any other error on failure."""
        covered = [request.messages[key] for key in keys]
        max_tokens = max(16, min(SUMMARY_MAX_TOKENS, window // 4))
        counter = Counter(self.rates.get(self._model_of(conv) or ""))
        earlier = [f"Earlier summary: {request.summary.text.peek()}"] if request.summary is not None else []
        lines = [f"{'User' if m.role == 'user' else 'Assistant'}: {m.text.peek()}" for m in covered]
        if window:  # the request must fit too: each message gets an equal share of the room, cut at its end
            room = (window - max_tokens - counter.system(SUMMARY_INSTRUCTION) - counter.user("")
                    - sum(counter.text(line) + 1 for line in earlier))
            share = max(8, room // max(1, len(lines)) - 1)
            lines = [line if counter.text(line) <= share else
                     line[: max(1, int(len(line) * share / counter.text(line)) - 1)] + "…" for line in lines]
        transcript = "\n\n".join(earlier + lines)
        count = len(covered) + (int(request.summary.meta.peek().get("summarised") or 0) if request.summary else 0)
        reply.meta.set({**reply.meta.peek(), "summarising": count})
        pieces: list[str] = []
        # A thinking model would spend the few tokens on thinking: it answers at once where it can.
        extra = {"enable_thinking": False} if toggles_thinking(self.model()) else {}
        try:
            stream = await client.chat.completions.create(
                messages=[{"role": "system", "content": SUMMARY_INSTRUCTION}, {"role": "user", "content": transcript}],
                stream=True, max_tokens=max_tokens, temperature=0.2, **extra)
            if self._stop_requested:
                await stream.stop()
            self._stream = stream
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.index == 0 and choice.delta.content:
                            pieces.append(choice.delta.content)
            stopped = stream.finish_reason == "abort" or self._stop_requested
        finally:
            self._stream = None
            meta = dict(reply.meta.peek())
            meta.pop("summarising", None)
            reply.meta.set(meta)
        if stopped:
            raise SummaryStopped()
        text = "".join(pieces).strip()
        if not text:
            raise ValueError("the model wrote no summary")
        summary = Message("summary", text, at=reply.at, n=reply.n,
                          meta={"summarised": count, "until": covered[-1].id, "model": stream.accumulator.model})
        reply.n += 1  # the summary goes just before the answer that first uses it
        messages = conv.messages.peek()
        at = messages.index(reply) if reply in messages else len(messages)
        conv.messages.set([*messages[:at], summary, *messages[at:]])
        self._save_soon(conv)
        return summary

    def _learn(self, reply: Message, stream: Any) -> dict[str, Any]:
        """What the engine counted for this request and answer (kept in the reply's meta: the next
        request's anchor), and the calibration of this model's estimate it teaches."""
        sending, self._sending = self._sending, None
        usage = stream.accumulator.usage
        if sending is None or usage is None or not usage.prompt_tokens:
            return {}
        request, plan, model, counter = sending
        parts = [p for p in request.parts if p.key in plan.sent]
        anchored = request.anchor if plan.exact else None
        after = [p for p in parts[[p.key for p in parts].index(anchored.through) + 1:]] if anchored else parts
        prompt = full_prompt_tokens(int(usage.prompt_tokens), reuses_cache=stream.backend == "webllm",
                                    anchor_tokens=anchored.tokens if anchored else None,
                                    new_tokens=sum(p.tokens for p in after))
        completion = int(usage.completion_tokens or 0)
        self._answered = stream.accumulator.model or model or ""
        rates = self.rates.setdefault(self._answered, Rates())
        if not reply.reasoning.peek():  # completion tokens then count the thinking too
            rates.learn_answer(reply.text.peek(), completion)
        learn_prompt(rates, Counter(rates), prompt_tokens=prompt, system=request.system, parts=parts,
                     anchor=anchored, texts=request.texts)
        self._calibrated.set(self._calibrated.peek() + 1)
        if self._prefs is not None:
            asyncio.ensure_future(self._save_rates())
        return {"prompt_tokens": prompt, "completion_tokens": completion}

    async def _load_rates(self) -> None:
        if self._prefs is None:
            return
        try:
            stored = await self._prefs.get(RATES_KEY) or {}
        except Exception:  # noqa: BLE001 - no calibration yet: the safe estimate works
            return
        def cost(value: Any) -> float | None:
            return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None

        for model, r in stored.items() if isinstance(stored, dict) else ():
            try:
                self.rates[model] = Rates(max(0, int(r["chars"])), max(0, int(r["tokens"])), cost(r.get("turn")),
                                          cost(r.get("base")))
            except (KeyError, TypeError, ValueError):
                continue

    async def _save_rates(self) -> None:
        try:
            await self._prefs.put(RATES_KEY, {m: {"chars": r.chars, "tokens": r.tokens, "turn": r.turn, "base": r.base}
                                              for m, r in self.rates.items()})
        except Exception:  # noqa: BLE001 - calibration is a nicety: it is learned again
            pass

    # ------------------------------------------------------------------ the context meter

    def _model_of(self, conv: Conversation | None) -> str | None:
        """The model the next request of ``conv`` is counted for: the one that answered last, else
        the chat's chosen one."""
        for m in reversed(conv.messages.peek() if conv is not None else ()):
            if m.role == "assistant" and m.meta.peek().get("model"):
                return str(m.meta.peek()["model"])
        chosen = self.model()
        if chosen in self.rates or self._answered is None:
            return chosen
        return self._answered  # e.g. an endpoint answers: its model is not the chosen web-llm one

    def _measure(self) -> Plan | None:
        """The next request (history and draft) against the window: what the meter shows."""
        conv = self.current.get()
        draft = self.draft.get().strip()
        settings = self.settings.get()
        self._calibrated.get()
        if conv is not None:
            for m in conv.messages.get():  # an answer counts once it is done, not per token
                m.status.get()
                m.meta.get()
        window = self._window() if self._window is not None else None
        window = window or self._last_window
        system_prompt = conv.system.get() if conv is not None else None
        system_prompt = system_prompt if system_prompt is not None else settings.system_prompt
        model = self._model_of(conv)
        request = _Request(conv or Conversation(), system_prompt, Counter(self.rates.get(model or "")), model,
                           draft=draft or None, cache=self._counted)
        if not request.parts and not draft:
            return Plan(0, window)
        return request.plan(window, settings.max_tokens)

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
