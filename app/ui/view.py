"""DOM views over the chat state. Every DOM access goes through :mod:`app.ffi`.

Each view owns a :class:`~app.ui.store.Scope` holding its effects and event listeners; disposing
the view ends them (listener proxies included). The message list is keyed by message id: a new
message appends one node, a streamed token appends to one text node, and nothing is re-rendered.

Rendering: while an answer streams, its text goes into one text node (``white-space: pre-wrap``),
one ``appendData`` per chunk: no parsing, no sanitizing, nothing re-laid out but that node, so a
fast stream never blocks the page. When the answer ends (or a stored one is shown) it is rendered
once as markdown, sanitized by DOMPurify and highlighted (static/render.js). Half-written markdown
(an open code fence) would also flicker if re-rendered per frame.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app import ffi
from app.config import CloudConfig, Settings
from app.session import Session, activity_line
from app.ui.chat import ChatState, Conversation, Message
from app.ui.store import Scope, Signal, effect

STICK_PX = 120  # keep following the stream while the reader is this close to the end
ROLE_LABEL = {"user": "You", "assistant": "Assistant", "system": "System", "summary": "Summary"}
METER_DEBOUNCE_S = 0.3  # the draft is counted once typing pauses this long
STATUS_NOTE = {"stopped": "stopped", "interrupted": "interrupted (the page was closed while writing)",
               "error": "failed"}
# What the empty chat offers to send with one click.
STARTERS = ("Explain how a language model can run inside a web browser.",
            "Write a Python function that tells whether a word is a palindrome.",
            "Suggest three names for a small bakery.",
            "Summarize the difference between a list and a tuple in Python.")

_tasks: set[asyncio.Task] = set()


def spawn(coro: Any) -> asyncio.Task:
    """Run an intent in the background; a crash is printed, never lost."""
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_done)
    return task


def _done(task: asyncio.Task) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        import traceback

        traceback.print_exception(task.exception())


async def outcome(intent: Any, target: str) -> None:
    """Run an intent and put how it went in the element ``target``: its words, or a refusal
    (:class:`~app.errors.AppError`) in words; never a crash."""
    from app.errors import AppError

    try:
        said = await intent
    except AppError as exc:
        said = f"{type(exc).__name__}: {exc}"
    ffi.set_text(target, said)


def confirm_then(question: str, then: Any, *, yes: str = "Delete") -> None:
    """Ask in the page (app.ffi.confirm); when the user confirms, run ``then()`` (a coroutine function)."""
    async def run() -> None:
        if await ffi.confirm(question, yes):
            await then()

    spawn(run())


def meta_line(message: Message) -> str:
    """``"12.3 tok/s · 57 tokens · webllm · Qwen…"`` for an answer; status notes; error text."""
    meta, status = message.meta.get(), message.status.get()
    if message.role != "assistant":
        return ""
    parts = []
    if status == "streaming":
        parts.append("writing…")
    if "tokens_per_s" in meta:
        parts.append(f"{meta['tokens_per_s']:g} tok/s")
    if "tokens" in meta:
        parts.append(f"{meta['tokens']} tokens")
    if meta.get("backend"):
        parts.append(str(meta["backend"]))
    if meta.get("model"):
        parts.append(str(meta["model"]))
    if meta.get("finish_reason") == "length":
        parts.append("cut at max tokens")
    if meta.get("summarising"):
        parts.append(f"summarising {_messages(meta['summarising'])} to fit the model's context window…")
    if meta.get("summarised"):
        parts.append(f"a summary of {_messages(meta['summarised'])} sent instead of them")
    if meta.get("summary_failed"):
        parts.append(f"summarising failed ({meta['summary_failed']}), so messages were left out instead")
    if meta.get("dropped"):
        parts.append(f"{_messages(meta['dropped'])} left out to fit the model's context window")
    if meta.get("sources_error"):
        parts.append(f"your files could not be searched ({meta['sources_error']}), so it answered without them")
    if status in STATUS_NOTE:
        parts.append(STATUS_NOTE[status])
    if meta.get("error"):
        parts.append(f"{meta['error']}: {meta.get('error_message', '')}")
    return " · ".join(parts)


def _messages(n: Any) -> str:
    n = int(n)
    return f"{n} earlier message{'' if n == 1 else 's'}"


def meter_line(plan: Any) -> str:
    """``"1,234 / 4,096 tokens"`` for the next request ("~" first while none of it is an engine's count)."""
    if plan is None:
        return ""
    said = f"{plan.tokens:,} / {plan.window:,} tokens" if plan.window else f"{plan.tokens:,} tokens"
    if not plan.exact and plan.tokens:
        said = "~" + said
    return said


class MessageView:
    """One message: role, body, a line of facts, and its actions (copy, retry or edit)."""

    def __init__(self, message: Message, chat: ChatState, log: ffi.Node) -> None:
        self.message = message
        self.scope = Scope()
        self._log = log
        role = message.role
        self.root = ffi.element("li", attrs={"class": f"msg msg-{role}", "data-id": message.id,
                                             "aria-label": f"{ROLE_LABEL.get(role, role)} said"})
        self.body = ffi.element("div", attrs={"class": "body"})
        self.meta = ffi.element("p", attrs={"class": "meta"})
        actions = ffi.element("div", attrs={"class": "actions", "role": "group", "aria-label": "Message actions"})
        ffi.append(actions, _button("Copy", "copy", "Copy this message"))
        if role == "assistant":
            # The name holds the visible word (WCAG 2.5.3, axe: label-content-name-mismatch).
            ffi.append(actions, _button("Retry", "retry", "Retry: answer this again"))
        elif role == "user":
            ffi.append(actions, _button("Edit", "edit", "Edit and send again"))
        if role == "summary":  # collapsed: what the model was sent instead of the messages above
            block = ffi.element("details", attrs={"class": "summary"})
            n = int(message.meta.peek().get("summarised") or 0)
            ffi.append(block, ffi.element("summary", f"Summary of {_messages(n)}", attrs={"class": "role"}), self.body)
            ffi.append(self.root, block, actions)
        else:
            ffi.append(self.root, ffi.element("p", ROLE_LABEL.get(role, role), attrs={"class": "role"}))
            if role == "assistant":
                self._reasoning_view()
            if message.images:
                ffi.append(self.root, thumbnails(message.images, "images", "Images sent"))
            ffi.append(self.root, self.body)
            if role == "assistant":
                self._sources_view()
            ffi.append(self.root, self.meta, actions)
        self._text: ffi.Node | None = None  # the text node a stream appends to
        self._rendered = 0  # render generation: a slow render never overwrites a newer one
        self.scope.effect(self._show_status)
        self.scope.watch(message.text, self._on_text)
        self.scope.effect(lambda: ffi.set_node_text(self.meta, meta_line(message)))

    def _reasoning_view(self) -> None:
        """A thinking model's reasoning: a collapsible block above the answer, open while it thinks,
        closed when the answer starts (plain text: never rendered as markup)."""
        block = ffi.element("details", attrs={"class": "reasoning"})
        summary = ffi.element("summary")
        text = ffi.text_node(self.message.reasoning.peek())
        shown = ffi.element("div", attrs={"class": "reasoning-text"})
        ffi.append(shown, text)
        ffi.append(block, summary, shown)
        ffi.append(self.root, block)
        message = self.message

        def on_reasoning(new: str, old: str) -> None:
            if new.startswith(old):
                ffi.append_node_text(text, new[len(old):])
            else:
                ffi.set_node_text(text, new)
            if not old and new and not message.text.peek():
                ffi.set_prop(block, "open", True)  # thinking now: show it as it comes

        def on_answer(new: str, old: str) -> None:
            if new and not old and message.reasoning.peek():
                ffi.set_prop(block, "open", False)  # the answer started: the thinking folds away

        def label() -> None:
            reasoning, meta, status = message.reasoning.get(), message.meta.get(), message.status.get()
            ffi.set_prop(block, "hidden", not reasoning)
            if status == "streaming" and not message.text.get():
                ffi.set_node_text(summary, "Thinking…")
            elif "thought_s" in meta:
                ffi.set_node_text(summary, f"Thought for {meta['thought_s']:g} s")
            else:
                ffi.set_node_text(summary, "Reasoning")

        self.scope.watch(message.reasoning, on_reasoning)
        self.scope.watch(message.text, on_answer)
        self.scope.effect(label)

    def _sources_view(self) -> None:
        """The passages of the user's files the answer was given, numbered as it cites them ([1]);
        each opens (a click) to the passage itself, with its file and heading."""
        sources = ffi.element("ol", attrs={"class": "sources", "aria-label": "Sources from your files"})
        ffi.append(self.root, sources)
        message = self.message
        self._sources: dict[str, tuple[ffi.Node, ffi.Node]] = {}  # "n" -> (details, summary)

        def show() -> None:
            items = []
            self._sources.clear()
            for source in message.meta.get().get("sources") or ():
                where = f"{source['name']} — {source['heading']}" if source.get("heading") else source["name"]
                block = ffi.element("details", attrs={"class": "source", "data-n": str(source["n"])})
                summary = ffi.element("summary", f"[{source['n']}] {where}")
                ffi.append(block, summary, ffi.element("blockquote", source["text"], attrs={"class": "passage"}))
                self._sources[str(source["n"])] = (block, summary)
                item = ffi.element("li")
                ffi.append(item, block)
                items.append(item)
            ffi.set_prop(sources, "hidden", not items)
            ffi.replace_children(sources, *items)

        self.scope.effect(show)

    def open_source(self, n: str) -> bool:
        """A citation [n] in the answer was clicked: open its passage below and move the focus there."""
        found = getattr(self, "_sources", {}).get(n)
        if found is None:
            return False
        block, summary = found
        ffi.set_prop(block, "open", True)
        ffi.focus(summary)
        return True

    def _show_status(self) -> None:
        status = self.message.status.get()
        ffi.set_node_attr(self.root, "data-status", status)
        ffi.set_node_attr(self.root, "aria-busy", "true" if status == "streaming" else None)
        self._show_text()

    def _show_text(self) -> None:
        text = self.message.text.peek()
        if self.message.role == "assistant" and self.message.status.peek() != "streaming" and text:
            self._text = None
            self._rendered += 1
            ffi.set_node_attr(self.body, "class", "body markdown")
            spawn(self._render(text, self._rendered))
        else:
            self._rendered += 1  # a render still under way (KaTeX loading) must not overwrite this
            self._text = ffi.text_node(text)
            ffi.set_node_attr(self.body, "class", "body plain")
            ffi.replace_children(self.body, self._text)

    async def _render(self, text: str, generation: int) -> None:
        cited = [int(source["n"]) for source in self.message.meta.peek().get("sources") or ()]
        if not await ffi.render_markdown(self.body, text, current=lambda: generation == self._rendered,
                                         citations=cited or None):
            return
        ffi.set_node_attr(self.root, "data-rendered", "markdown")

    def _on_text(self, new: str, old: str) -> None:
        if self._text is not None and new.startswith(old):
            ffi.append_node_text(self._text, new[len(old):])  # a streamed token: one node, one call
            ffi.scroll_to_end(self._log, only_if_near=STICK_PX)
        else:
            self._show_text()

    def dispose(self) -> None:
        self.scope.dispose()
        ffi.remove(self.root)


def thumbnails(images: Any, css: str, label: str) -> ffi.Node:
    """A list of images (data URLs, checked when attached or imported) as <img> thumbnails."""
    box = ffi.element("ul", attrs={"class": css, "aria-label": label})
    ffi.append(box, *thumbnail_items(images))
    return box


def thumbnail_items(images: Any, *, removable: bool = False) -> list[ffi.Node]:
    items = []
    for i, image in enumerate(images):
        name = image.get("name") or "image"
        item = ffi.element("li")
        ffi.append(item, ffi.element("img", attrs={"src": image["url"], "alt": name,
                                                   "width": str(image.get("width") or 1),
                                                   "height": str(image.get("height") or 1)}))
        if removable:
            ffi.append(item, ffi.element("button", "Remove", attrs={
                "type": "button", "data-action": "unattach", "data-id": str(i), "aria-label": f"Remove {name}"}))
        items.append(item)
    return items


def _button(label: str, action: str, title: str) -> ffi.Node:
    return ffi.element("button", label, attrs={"type": "button", "data-action": action, "aria-label": title,
                                               "title": title})


class ChatView:
    """The conversation on screen (#messages), the composer (#composer) and the notice (#chat-notice)."""

    def __init__(self, chat: ChatState, session: Session) -> None:
        self.chat = chat
        self.session = session
        self.scope = Scope()
        self.log = ffi.node("messages")
        self.empty = ffi.node("empty-state")
        self.prompt = ffi.node("prompt")
        self.send_button = ffi.node("send")
        self.stop_button = ffi.node("stop")
        self.notice = ffi.node("chat-notice")
        self._views: dict[str, MessageView] = {}
        # Composer keys another view handles first: hook(facts) -> True/False (handled; default
        # prevented or not) or None (not its key).
        self.key_hooks: list[Any] = []
        self._conversation: Conversation | None = None
        self._editing: str | None = None
        self._list_effect: Any = None
        s = self.scope
        s.effect(self._show_conversation)
        s.effect(self._show_busy)
        s.effect(self._show_notice)
        s.add(ffi.listen(ffi.node("composer"), "submit", self._on_submit))
        s.add(ffi.listen(self.prompt, "keydown", self._on_prompt_key))
        s.add(ffi.listen(self.stop_button, "click", lambda _e: spawn(chat.stop())))
        s.add(ffi.listen("document", "keydown", self._on_document_key))
        s.add(ffi.listen(self.log, "click", self._on_log_click))
        s.add(ffi.listen(self.log, "keydown", self._on_log_key))
        s.add(self._dispose_views)
        s.effect(self._show_think)
        s.add(ffi.listen(ffi.node("think"), "change", self._on_think))
        self.meter = ffi.node("context-meter")
        self._counting: asyncio.Task | None = None
        s.add(ffi.listen(self.prompt, "input", self._on_draft))
        s.effect(self._show_meter)
        s.add(self._stop_counting)
        self._show_starters()
        s.add(ffi.listen(self.empty, "click", self._on_starter))
        self._attach_images()
        ffi.set_prop(self.prompt, "disabled", False)
        ffi.set_prop(self.send_button, "disabled", False)

    # ------------------------------------------------------------------ showing

    def _show_starters(self) -> None:
        items = []
        for text in STARTERS:
            item = ffi.element("li")
            ffi.append(item, ffi.element("button", text, attrs={"type": "button", "class": "starter",
                                                                "data-action": "starter", "value": text}))
            items.append(item)
        ffi.replace_children(ffi.node("starters"), *items)

    def _on_starter(self, facts: dict[str, Any]) -> bool:
        """A starter prompt: into the composer, and sent."""
        if facts.get("action") != "starter" or not facts.get("value"):
            return False
        ffi.set_prop(self.prompt, "value", facts["value"])
        self._send()
        return True

    def _show_think(self) -> None:
        """The Think switch: shown for a model whose thinking can be turned off (Qwen3); per conversation."""
        from app.reasoning import toggles_thinking

        shown = toggles_thinking(self.session.model.get())
        ffi.set_prop(ffi.node("think-toggle"), "hidden", not shown)
        conv = self.chat.current.get()
        think = conv.think.get() if conv is not None else None
        ffi.set_prop(ffi.node("think"), "checked", think is not False)  # the model's default: it thinks

    def _show_meter(self) -> None:
        """Under the composer: the next request's tokens against the window, and what it leaves out."""
        plan = self.chat.meter.get()
        conv = self.chat.current.get()
        notes = []
        if plan is not None and plan.dropped:
            n = len(plan.dropped)
            what = "will be summarised" if self.chat.settings.get().context_policy == "summarise" else "left out"
            notes.append(f"oldest {n} message{'' if n == 1 else 's'} {what}")
        if conv is not None:
            conv.messages.get()
            summary = conv.summary()
            if summary is not None:
                n = int(summary.meta.peek().get("summarised") or 0)
                notes.append(f"summary of {n} message{'' if n == 1 else 's'}")
        ffi.set_node_text(self.meter, " · ".join(t for t in [meter_line(plan), *notes] if t))
        ffi.set_node_attr(self.meter, "data-level", plan.level if plan is not None else "ok")
        ffi.set_node_attr(self.meter, "data-tokens", str(plan.tokens) if plan is not None else None)

    def _on_draft(self, facts: dict[str, Any]) -> bool:
        """Count the draft once typing pauses (the history's count is cached in the meter)."""
        text = str(facts.get("value") or "")
        self._stop_counting()

        async def later() -> None:
            await asyncio.sleep(METER_DEBOUNCE_S)
            self.chat.draft.set(text)

        self._counting = asyncio.ensure_future(later())
        return False

    def _stop_counting(self) -> None:
        if self._counting is not None and not self._counting.done():
            self._counting.cancel()
        self._counting = None

    def _on_think(self, facts: dict[str, Any]) -> bool:
        conv = self.chat.current.peek() or self.chat.new_conversation()
        conv.think.set(bool(ffi.get_prop(ffi.node("think"), "checked")))
        if conv.messages.peek():
            spawn(self.chat.save(conv))
        return False

    def _show_conversation(self) -> None:
        conv = self.chat.current.get()
        if conv is not self._conversation:
            self._dispose_views()
            self._conversation = conv
            if self._list_effect is not None:
                self._list_effect.dispose()
            self._list_effect = effect(self._sync_messages) if conv is not None else None
            if conv is None:
                ffi.set_prop(self.empty, "hidden", False)

    def _sync_messages(self) -> None:
        conv = self._conversation
        assert conv is not None
        messages = conv.messages.get()
        keep = {m.id for m in messages}
        for message_id in [i for i in self._views if i not in keep]:
            self._views.pop(message_id).dispose()
        # Messages of this tab are appended or cut at the end; another tab's may land in between
        # (app.ui.conversations orders them): then every view is put back in order.
        in_order = list(self._views) == [m.id for m in messages[: len(self._views)]]
        for message in messages:
            if message.id not in self._views:
                self._views[message.id] = MessageView(message, self.chat, self.log)
                if in_order:
                    ffi.append(self.log, self._views[message.id].root)
        if not in_order:
            self._views = {m.id: self._views[m.id] for m in messages}
            ffi.append(self.log, *(view.root for view in self._views.values()))
        ffi.set_prop(self.empty, "hidden", bool(messages))
        ffi.scroll_to_end(self.log)

    def _dispose_views(self) -> None:
        for view in self._views.values():
            view.dispose()
        self._views = {}
        if self._list_effect is not None:
            self._list_effect.dispose()
            self._list_effect = None

    def _show_busy(self) -> None:
        busy = self.chat.streaming.get() is not None
        ffi.set_prop(self.stop_button, "hidden", not busy)
        ffi.set_prop(self.send_button, "hidden", busy)
        ffi.set_node_attr(ffi.node("chat"), "aria-busy", "true" if busy else None)

    def _show_notice(self) -> None:
        # A refused save stays in view next to an answer's failure until a write succeeds.
        said = [t for t in (self.chat.notice.get(), self.chat.unsaved.get()) if t]
        text = " ".join(said) or self.session.status.get()
        ffi.set_node_text(self.notice, text)
        ffi.set_prop(self.notice, "hidden", not text)

    # ------------------------------------------------------------------ events

    def _on_submit(self, _facts: dict[str, Any]) -> bool:
        self._send()
        return True

    def _on_prompt_key(self, facts: dict[str, Any]) -> bool:
        for hook in self.key_hooks:  # e.g. the persona list open under the composer takes Enter
            handled = hook(facts)
            if handled is not None:
                return handled
        if facts["key"] == "Enter" and not (facts["shift"] or facts["composing"]):
            self._send()
            return True
        return False

    def _on_document_key(self, facts: dict[str, Any]) -> bool:
        # Esc stops the answer, unless a control nearer the key took it (a sheet closing, a list).
        if facts["key"] == "Escape" and not facts.get("prevented") and self.chat.streaming.peek() is not None:
            spawn(self.chat.stop())
            return True
        return False

    def _send(self) -> None:
        text = str(ffi.get_prop(self.prompt, "value") or "")
        waiting = self.attachments.images.peek()
        if not (text.strip() or waiting) or self.chat.streaming.peek() is not None:
            return
        ffi.set_prop(self.prompt, "value", "")
        self._stop_counting()
        self.chat.draft.set("")
        spawn(self._send_now(text, self.attachments.take()))

    async def _send_now(self, text: str, images: list[dict[str, Any]]) -> None:
        from app.errors import InvalidRequest

        try:
            await self.chat.send(text, images)
        except InvalidRequest as exc:  # refused before anything was stored: the draft comes back
            ffi.set_prop(self.prompt, "value", text)
            self.attachments.images.set(tuple(images))
            self.attachments.said.set(str(exc))

    # ------------------------------------------------------------------ images

    def _attach_images(self) -> None:
        """The Image button, paste and drop onto the composer (app/ui/attachments.py holds the state)."""
        from app.ui.attachments import Attachments

        session, s = self.session, self.scope
        self.attachments = Attachments(support=session.image_support, switch=session.use_model)
        self.attach_file = ffi.node("attach-file")
        attach = ffi.node("attach")
        s.add(ffi.listen(attach, "click", self._on_attach))
        for event in ("pointerenter", "focus"):  # ask the catalog before the click needs it
            s.add(ffi.listen(attach, event, lambda _f: spawn(self.attachments.check()) and False))
        s.add(ffi.listen(self.attach_file, "change", lambda _f: spawn(self._read_chosen()) and False))
        s.add(ffi.listen(ffi.node("attachments"), "click", self._on_attachments_click))
        s.add(ffi.listen(ffi.node("attach-switch"), "click",
                         lambda _f: spawn(self.attachments.switch_offered()) and False))
        s.effect(self._show_attachments)
        s.effect(self._show_attach_said)
        s.effect(self._forget_support)
        # Until this is in place a file dropped on the composer would replace the page with it: the
        # page says it is ready only once it is (App.settled).
        self.drops_watched = spawn(self._watch_drops())

    def _forget_support(self) -> None:
        """Another model, endpoint or GPU: whether images can be seen is asked again."""
        self.session.model.get(), self.session.cloud.get(), self.session.gpu.get()
        self.attachments.forget()

    async def _watch_drops(self) -> None:
        from app.ffi import images

        remove = await images.watch_images(ffi.node("composer"), lambda found: spawn(self.attachments.add(found)))
        self.scope.add(remove)

    async def _read_chosen(self) -> None:
        from app.ffi import images

        await self.attachments.add(await images.read_chosen_images(self.attach_file))

    def _on_attach(self, _facts: dict[str, Any]) -> bool:
        """Open the file picker for a model that sees images (inside the click: the browser requires
        the user's gesture); otherwise say which models can."""
        known = self.attachments.known
        if known is not None:
            if known.get("sees"):
                ffi.click(self.attach_file)
            else:
                self.attachments.explain(known)
            return True

        async def first_time() -> None:
            support = await self.attachments.check()
            if support.get("sees"):
                ffi.click(self.attach_file)
            else:
                self.attachments.explain(support)

        spawn(first_time())
        return True

    def _on_attachments_click(self, facts: dict[str, Any]) -> bool:
        if facts.get("action") != "unattach" or facts.get("id") is None:
            return False
        self.attachments.remove(int(facts["id"]))
        ffi.focus(self.prompt)
        return True

    def _show_attachments(self) -> None:
        images = self.attachments.images.get()
        box = ffi.node("attachments")
        ffi.replace_children(box, *thumbnail_items(images, removable=True))
        ffi.set_prop(box, "hidden", not images)

    def _show_attach_said(self) -> None:
        said, offer = self.attachments.said.get(), self.attachments.offer.get()
        ffi.set_node_text(ffi.node("attach-said"), said)
        button = ffi.node("attach-switch")
        ffi.set_node_text(button, f"Switch to {offer}" if offer else "")
        ffi.set_prop(button, "hidden", not offer)
        ffi.set_prop(ffi.node("attach-why"), "hidden", not said)

    def _on_log_click(self, facts: dict[str, Any]) -> bool:
        action, message_id = facts.get("action"), facts.get("id")
        if action == "cite" and message_id in self._views:  # a citation button render.js made
            return self._views[message_id].open_source(str(facts.get("value") or ""))
        handler = self._message_actions.get(action or "")
        if handler is None or not message_id or message_id not in self._views:
            return False
        return handler(self._views[message_id])

    @property
    def _message_actions(self) -> dict[str, Any]:
        """``data-action`` of a message's buttons -> its handler (False: not handled now)."""
        return {"copy": self._copy, "retry": self._retry, "edit": self._edit,
                "save-edit": lambda view: self._finish_edit(view.message.id, save=True),
                "cancel-edit": lambda view: self._finish_edit(view.message.id, save=False)}

    def _copy(self, view: MessageView) -> bool:
        spawn(ffi.copy_text(view.message.text.peek()))
        return True

    def _retry(self, view: MessageView) -> bool:
        if self.chat.streaming.peek() is not None:
            return False
        spawn(self.chat.retry(view.message.id))
        return True

    def _edit(self, view: MessageView) -> bool:
        if self.chat.streaming.peek() is not None:
            return False
        self._start_edit(view)
        return True

    def _on_log_key(self, facts: dict[str, Any]) -> bool:
        if facts.get("action") != "edit-text" or not facts.get("id"):
            return False
        if facts["key"] == "Enter" and not (facts["shift"] or facts["composing"]):
            self._finish_edit(facts["id"], save=True)
            return True
        if facts["key"] == "Escape":
            self._finish_edit(facts["id"], save=False)
            return True
        return False

    def _start_edit(self, view: MessageView) -> None:
        if self._editing is not None:
            self._finish_edit(self._editing, save=False)
        self._editing = view.message.id
        box = ffi.element("textarea", attrs={"class": "edit", "data-action": "edit-text", "rows": "3",
                                             "aria-label": "Edit your message"})
        ffi.set_prop(box, "value", view.message.text.peek())
        form = ffi.element("div", attrs={"class": "edit-form"})
        ffi.append(form, box, _button("Send", "save-edit", "Send the edited message"),
                   _button("Cancel", "cancel-edit", "Keep the message as it was"))
        view._edit = (form, box)  # type: ignore[attr-defined]
        ffi.replace_children(view.body, form)
        ffi.focus(box)

    def _finish_edit(self, message_id: str, *, save: bool) -> bool:
        """Leave edit mode (saving sends the edited message); True: the event was handled."""
        view = self._views.get(message_id)
        self._editing = None
        if view is None or not hasattr(view, "_edit"):
            return True
        _form, box = view._edit  # type: ignore[attr-defined]
        del view._edit  # type: ignore[attr-defined]
        text = str(ffi.get_prop(box, "value") or "")
        view._show_text()
        if save and text.strip() and self.chat.streaming.peek() is None:
            spawn(self.chat.edit(message_id, text))
        return True

    def dispose(self) -> None:
        self.scope.dispose()


class ConversationList:
    """#conversations: one item per conversation (open, rename, delete), most recent first."""

    def __init__(self, chat: ChatState) -> None:
        self.chat = chat
        self.scope = Scope()
        self.list = ffi.node("conversation-list")
        self._items: dict[str, tuple[ffi.Node, ffi.Node, Scope]] = {}
        self._renaming: str | None = None
        self.only: set[str] | None = None  # shown when a search is on
        self.scope.effect(self._sync)
        self.scope.effect(self._mark_current)
        self.scope.add(ffi.listen(self.list, "click", self._on_click))
        self.scope.add(ffi.listen(self.list, "keydown", self._on_key))
        self.scope.add(ffi.listen(ffi.node("new-chat"), "click", self._on_new))
        self.scope.add(self._clear)

    def _sync(self) -> None:
        convs = self.chat.conversations.get()
        keep = {c.id for c in convs}
        for conv_id in [i for i in self._items if i not in keep]:
            root, _title, scope = self._items.pop(conv_id)
            scope.dispose()
            ffi.remove(root)
        for conv in convs:  # append in order: moves existing items, creates new ones
            if conv.id not in self._items:
                self._items[conv.id] = self._item(conv)
                ffi.set_prop(self._items[conv.id][0], "hidden", self.only is not None and conv.id not in self.only)
            ffi.append(self.list, self._items[conv.id][0])

    def show_only(self, ids: set[str] | None) -> None:
        """Show only the conversations ``ids`` (a search's matches); None: all of them."""
        self.only = ids
        for conv_id, (root, _title, _scope) in self._items.items():
            ffi.set_prop(root, "hidden", ids is not None and conv_id not in ids)

    def _item(self, conv: Conversation) -> tuple[ffi.Node, ffi.Node, Scope]:
        scope = Scope()
        root = ffi.element("li", attrs={"data-id": conv.id, "class": "conv"})
        title = ffi.element("button", attrs={"type": "button", "class": "open", "data-action": "open"})
        scope.effect(lambda: ffi.set_node_text(title, conv.title.get()))
        scope.effect(lambda: ffi.set_node_attr(root, "aria-label", conv.title.get()))
        ffi.append(root, title, _button("Rename", "rename", "Rename this conversation"),
                   _button("Delete", "delete", "Delete this conversation"))
        return root, title, scope

    def _mark_current(self) -> None:
        current = self.chat.current.get()
        self.chat.conversations.get()
        for conv_id, (_root, title, _scope) in self._items.items():
            ffi.set_node_attr(title, "aria-current", "true" if current is not None and current.id == conv_id else None)

    def _on_new(self, _facts: dict[str, Any]) -> bool:
        if self.chat.streaming.peek() is None:
            self.chat.new_conversation()
            ffi.focus(ffi.node("prompt"))
        return True

    def _on_click(self, facts: dict[str, Any]) -> bool:
        action, conv_id = facts.get("action"), facts.get("id")
        handler = self._actions.get(action or "")
        if handler is None or not conv_id or conv_id not in self._items:
            return False
        handler(conv_id)
        return True

    @property
    def _actions(self) -> dict[str, Any]:
        """``data-action`` of a conversation's controls -> what it does."""
        return {"open": self._open, "rename": self._start_rename, "delete": self._delete}

    def _open(self, conv_id: str) -> None:
        if self._renaming != conv_id and self.chat.streaming.peek() is None:
            self.chat.select(conv_id)

    def _delete(self, conv_id: str) -> None:
        title = self.chat.get(conv_id).title.peek()
        confirm_then(f"Delete the conversation “{title}”?", lambda: self.chat.delete(conv_id))

    def _start_rename(self, conv_id: str) -> None:
        root, title, _scope = self._items[conv_id]
        self._renaming = conv_id
        box = ffi.element("input", attrs={"class": "rename", "data-action": "rename-text",
                                          "aria-label": "New name for the conversation"})
        ffi.set_prop(box, "value", self.chat.get(conv_id).title.peek())
        ffi.set_prop(title, "hidden", True)
        ffi.insert_before(root, box, title)
        ffi.focus(box)
        self._rename_box = box

    def _on_key(self, facts: dict[str, Any]) -> bool:
        if facts.get("action") != "rename-text" or self._renaming is None:
            return False
        if facts["key"] in ("Enter", "Escape"):
            conv_id = self._renaming
            self._renaming = None
            _root, title, _scope = self._items[conv_id]
            ffi.remove(self._rename_box)
            ffi.set_prop(title, "hidden", False)
            text = facts.get("value") or ""
            if facts["key"] == "Enter" and text.strip():
                spawn(self.chat.rename(conv_id, text))
            ffi.focus(title)
            return True
        return False

    def _clear(self) -> None:
        for root, _title, scope in self._items.values():
            scope.dispose()
            ffi.remove(root)
        self._items = {}

    def dispose(self) -> None:
        self.scope.dispose()


class SettingsView:
    """#settings-form: system prompt, temperature, max tokens, and an OpenAI-compatible endpoint."""

    FIELDS = ("system_prompt", "temperature", "max_tokens", "context_policy", "base_url", "model", "api_key")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.scope = Scope()
        self.error = ffi.node("settings-error")
        self._fill()
        self.scope.add(ffi.listen(ffi.node("settings-form"), "submit", self._on_submit))

    def _field(self, name: str) -> ffi.Node:
        return ffi.node(f"setting-{name.replace('_', '-')}")

    def _fill(self) -> None:
        s: Settings = self.session.settings.peek()
        cloud = self.session.cloud.peek()
        values = {"system_prompt": s.system_prompt, "temperature": f"{s.temperature:g}",
                  "max_tokens": str(s.max_tokens), "context_policy": s.context_policy,
                  "base_url": cloud.base_url if cloud else "",
                  "model": cloud.model if cloud else "", "api_key": cloud.api_key if cloud else ""}
        for name, value in values.items():
            ffi.set_prop(self._field(name), "value", value)

    def _on_submit(self, _facts: dict[str, Any]) -> bool:
        form = {name: str(ffi.get_prop(self._field(name), "value") or "") for name in self.FIELDS}
        try:
            settings = Settings.parse(form)
            cloud = CloudConfig.parse(form, previous=self.session.cloud.peek(), secure_page=ffi.page_is_secure())
        except Exception as exc:  # InvalidRequest / UsageError: say which field, change nothing
            ffi.set_node_text(self.error, str(exc))
            ffi.set_prop(self.error, "hidden", False)
            return True
        ffi.set_prop(self.error, "hidden", True)
        ffi.set_prop(self._field("api_key"), "value", cloud.api_key if cloud else "")  # a dropped key shows gone
        spawn(self.session.save_settings(settings, cloud))
        ffi.set_node_text(ffi.node("settings-saved"), "Saved.")
        return True

    def dispose(self) -> None:
        self.scope.dispose()


THEMES = ("auto", "light", "dark")


class ThemeToggle:
    """#theme: auto (the system's preference) -> light -> dark; kept in the settings store."""

    def __init__(self, store: Any, theme: str) -> None:
        self.store = store
        self.theme = Signal(theme if theme in THEMES else "auto")
        self.scope = Scope()
        button = ffi.node("theme")
        self.scope.effect(lambda: self._apply(button, self.theme.get()))
        self.scope.add(ffi.listen(button, "click", self._next))

    def _apply(self, button: ffi.Node, theme: str) -> None:
        ffi.set_root_attr("data-theme", None if theme == "auto" else theme)
        # highlight.js ships one stylesheet per scheme: switch them with the page.
        light, dark = {"auto": ("(prefers-color-scheme: light)", "(prefers-color-scheme: dark)"),
                       "light": ("all", "not all"), "dark": ("not all", "all")}[theme]
        try:  # static/render.js adds these on first use, with the theme current then
            ffi.set_attr("hl-light", "media", light)
            ffi.set_attr("hl-dark", "media", dark)
        except LookupError:
            pass
        ffi.set_node_text(button, f"Theme: {theme}")
        ffi.set_node_attr(button, "aria-label", f"Colour theme: {theme}. Change it")

    def _next(self, _facts: dict[str, Any]) -> bool:
        theme = THEMES[(THEMES.index(self.theme.peek()) + 1) % len(THEMES)]
        self.theme.set(theme)
        spawn(self.store.put("theme", theme))
        return True

    def dispose(self) -> None:
        self.scope.dispose()


class GpuNotice:
    """#backend-notice: what answers here; without WebGPU, says so and points at the cloud endpoint."""

    def __init__(self, session: Session, open_sheet: Any) -> None:
        self.scope = Scope()
        self.open_sheet = open_sheet  # app.ui.sheets_view.SheetsView.open
        self.node = ffi.node("backend-notice")
        self.scope.effect(lambda: self._show(session))
        self.scope.add(ffi.listen(self.node, "click", self._on_click))

    def _show(self, session: Session) -> None:
        gpu, cloud, builtin = session.gpu.get(), session.cloud.get(), session.builtin.get()
        session.model.get()
        if gpu is None:
            return
        what = session.describe()
        if gpu.available:
            ffi.replace_children(self.node, ffi.text_node(what))
            ffi.set_node_attr(self.node, "data-kind", "local")
            return
        lead = f"Models cannot run in this browser: {gpu.summary()}. "
        parts = [ffi.text_node(lead + (what or "To chat, add an OpenAI-compatible endpoint. "))]
        if not cloud:
            parts.append(_button("Open settings", "open-settings", "Open the settings to add an endpoint"))
        ffi.replace_children(self.node, *parts)
        kind = "cloud" if cloud else "builtin" if builtin not in (None, "unavailable") else "none"
        ffi.set_node_attr(self.node, "data-kind", kind)

    def _on_click(self, facts: dict[str, Any]) -> bool:
        if facts.get("action") != "open-settings":
            return False
        self.open_sheet("settings")
        ffi.focus(ffi.node("setting-base-url"))
        return True

    def dispose(self) -> None:
        self.scope.dispose()


class ActivityView:
    """#activity-list: the session's recent telemetry events (requests, retries, health, models),
    newest first; each line says what happened in words, ``data-event`` names the event."""

    SHOWN = 50

    def __init__(self, session: Session) -> None:
        self.scope = Scope()
        self.list = ffi.node("activity-list")
        self._count = 0
        self.scope.effect(lambda: self._show(session.activity.get()))

    def _show(self, events: tuple[dict[str, Any], ...]) -> None:
        items = []
        for event in reversed(events[-self.SHOWN:]):
            items.append(ffi.element("li", activity_line(event), attrs={"data-event": str(event.get("event", ""))}))
        ffi.replace_children(self.list, *items)
        ffi.set_node_text(ffi.node("activity-count"), f"({len(events)})" if events else "")

    def dispose(self) -> None:
        self.scope.dispose()


class App:
    """Everything mounted on the page; ``dispose()`` takes it all down (listeners and proxies too)."""

    def __init__(self, chat: ChatState, session: Session, settings_store: Any, theme: str) -> None:
        self.chat = chat
        self.session = session
        self.scope = Scope()  # what the page module adds
        from app.ui.library import LibraryView
        from app.ui.personas_view import PersonasView
        from app.ui.sheets import Sheets
        from app.ui.sheets_view import SheetsView
        from app.ui.switcher import ModelSwitcher
        from app.ui.switcher_view import SwitcherView

        self.sheets = Sheets()  # which panel is open; the page mounts the costly ones on first open
        self.sheets_view = SheetsView(self.sheets)
        self.switcher = ModelSwitcher(session)
        conversations = ConversationList(chat)
        self.chat_view = chat_view = ChatView(chat, session)
        open_sheet = self.sheets_view.open
        self.views = [self.sheets_view, ThemeToggle(settings_store, theme), GpuNotice(session, open_sheet),
                      SwitcherView(self.switcher, open_sheet), conversations,
                      LibraryView(chat, conversations), chat_view, PersonasView(chat, chat_view, settings_store),
                      SettingsView(session), ActivityView(session)]

    async def settled(self) -> None:
        """Wait until what the page needs before a user acts on it is in place: paste and drop onto
        the composer (watching them loads a small module). A failure there was printed; the chat runs."""
        await asyncio.wait([self.chat_view.drops_watched])

    def dispose(self) -> None:
        self.scope.dispose()
        for view in reversed(self.views):
            view.dispose()
        self.switcher.dispose()
        self.session.close()
