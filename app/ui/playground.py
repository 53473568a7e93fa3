"""The Python panel: an editor, Run / Stop / Clear, the output, examples, saved scripts, .py files and
links. A view of the page's session (:mod:`app.session`): ``client``, ``models`` and ``session`` in the
code are the chat's own (see :mod:`app.playground` for how code runs).

Mounted by app/ui/page.py when the panel is first opened (never in the embedded widget). Code opened
from a link (``#py=<base64url>``) fills the editor with a warning and never runs until Run is pressed.
"""

from __future__ import annotations

import re
import time
from typing import Any

from app import ffi
from app.errors import AppError, InvalidRequest
from app.ffi import editor as editor_bridge
from app.ffi import files
from app.playground import Runner
from app.playground_examples import EXAMPLES
from app.ui.conversations import KvStore, ScopedKv
from app.ui.links import decode_link, encode_link
from app.ui.store import Scope, Signal
from app.ui.view import confirm_then, spawn

MAX_FILE_BYTES = 200_000
MAX_LINK_CHARS = 100_000
NAME = re.compile(r"[^\x00-\x1f\x7f/\\]{1,80}")
FROM_LINK = ("This code came from a link and has not run. Read it before you press Run: it runs with this "
             "page's rights (your conversations, your models, an API key you entered).")


def check_name(name: str) -> str:
    name = name.strip()
    if name.endswith(".py"):
        name = name[:-3].strip()
    if not NAME.fullmatch(name):
        raise InvalidRequest("a script needs a name of 1 to 80 characters, without / or \\", param="name")
    return name


class Playground:
    """The panel's state and intents (the DOM wiring is :func:`mount`)."""

    def __init__(self, session: Any, kv: Any, emit: Any) -> None:
        self.session = session
        self.scripts_kv = kv
        self.runner = Runner(provide=self._provide, emit=emit, load_packages=ffi.load_packages)
        self.running: Signal[bool] = Signal(False)
        self.scripts: Signal[list[str]] = Signal([])
        self.said: Signal[str] = Signal("")

    async def _provide(self, names: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "session" in names:
            out["session"] = self.session
        if "models" in names:
            out["models"] = await self.session.models()
        if "client" in names:
            out["client"] = await self.session.client()
        return out

    async def run(self, source: str) -> str:
        self.running.set(True)
        try:
            return await self.runner.run(source)
        finally:
            self.running.set(False)

    async def load_scripts(self) -> None:
        self.scripts.set(sorted(await self.scripts_kv.items(), key=str.casefold))

    async def save(self, name: str, source: str) -> str:
        name = check_name(name)
        await self.scripts_kv.put(name, {"name": name, "source": source, "saved": time.time()})
        await self.load_scripts()
        return name

    async def source_of(self, name: str) -> str:
        record = (await self.scripts_kv.items()).get(name)
        if not isinstance(record, dict):
            raise InvalidRequest(f"no saved script {name!r}", param="name")
        return str(record.get("source") or "")

    async def delete(self, name: str) -> None:
        await self.scripts_kv.delete(name)
        await self.load_scripts()


class PanelView:
    """#python: the DOM of the panel over a :class:`Playground`."""

    def __init__(self, session: Any) -> None:
        self.scope = Scope()
        self.output = ffi.node("py-output")
        self._last: tuple[str, Any] | None = None  # (kind, text node) the next output of that kind extends
        self.state = Playground(session, ScopedKv(KvStore("settings"), "scripts"), self.emit)
        self.editor: Any = None

    async def mount(self) -> None:
        self.editor = await editor_bridge.attach_editor(ffi.node("py-editor"), ffi.node("py-highlight"))
        self.scope.add(self.editor.close)
        examples = ffi.node("py-example")
        for title in EXAMPLES:
            ffi.append(examples, ffi.element("option", title, attrs={"value": title}))
        for node_id, event, handler in (("py-run", "click", self._on_run), ("py-stop", "click", self._on_stop),
                                        ("py-clear", "click", self._on_clear), ("py-editor", "keydown", self._on_key),
                                        ("py-example", "change", self._on_example), ("py-save", "click", self._on_save),
                                        ("py-export", "click", self._on_export), ("py-import", "change", self._on_import),
                                        ("py-share", "click", self._on_share), ("py-scripts", "click", self._on_script)):
            self.scope.add(ffi.listen(ffi.node(node_id), event, handler))
        self.scope.effect(self._show_running)
        self.scope.effect(self._show_scripts)
        self.scope.effect(lambda: ffi.set_text("py-said", self.state.said.get()))
        code = decode_link(editor_bridge.page_fragment())
        if code is not None:
            self.editor.set_text(code)
            ffi.set_text("py-warning", FROM_LINK)
            ffi.set_hidden("py-warning", False)
            editor_bridge.clear_fragment()
        await self.state.load_scripts()
        ffi.set_attr("python", "data-state", "ready")

    # ------------------------------------------------------------------ output

    def emit(self, kind: str, text: str) -> None:
        if self._last is not None and self._last[0] == kind and kind in ("out", "err"):
            ffi.append_node_text(self._last[1], text)
        else:
            span = ffi.element("span", attrs={"class": f"py-{kind}"})
            node = ffi.text_node(text if kind in ("out", "err") or text.endswith("\n") else text + "\n")
            ffi.append(span, node)
            ffi.append(self.output, span)
            self._last = (kind, node)
        ffi.scroll_to_end(self.output, only_if_near=48)

    def _show_running(self) -> None:
        running = self.state.running.get()
        ffi.set_hidden("py-run", running)
        ffi.set_hidden("py-stop", not running)
        ffi.set_attr("python", "aria-busy", "true" if running else "false")

    def _show_scripts(self) -> None:
        items = []
        for name in self.state.scripts.get():
            item = ffi.element("li", attrs={"data-id": name})
            ffi.append(item, ffi.element("button", name, attrs={"type": "button", "data-action": "open",
                                                                "aria-label": f"Open {name}"}),
                       ffi.element("button", "Delete", attrs={"type": "button", "data-action": "delete",
                                                              "class": "quiet", "aria-label": f"Delete {name}"}))
            items.append(item)
        ffi.replace_children(ffi.node("py-scripts"), *items)

    # ------------------------------------------------------------------ intents

    def _run_now(self) -> None:
        if self.state.running.peek():
            return
        ffi.set_hidden("py-warning", True)
        self.emit("info", f"▶ run {self.state.runner.runs + 1}")
        spawn(self._run(self.editor.text()))

    async def _run(self, source: str) -> None:
        started = time.monotonic()
        status = await self.state.run(source)
        self.emit("end", f"■ {status} in {time.monotonic() - started:.2f} s")

    def _on_run(self, _facts: dict[str, Any]) -> bool:
        self._run_now()
        return True

    def _on_key(self, facts: dict[str, Any]) -> bool:
        if facts.get("key") == "Enter" and (facts.get("ctrl") or facts.get("meta")):
            self._run_now()
            return True
        return False

    def _on_stop(self, _facts: dict[str, Any]) -> bool:
        self.state.runner.stop()
        return True

    def _on_clear(self, _facts: dict[str, Any]) -> bool:
        ffi.replace_children(self.output)
        self._last = None
        return True

    def _on_example(self, facts: dict[str, Any]) -> bool:
        source = EXAMPLES.get(facts.get("value") or "")
        if source is not None:
            self.editor.set_text(source)
            ffi.set_hidden("py-warning", True)
            ffi.focus(ffi.node("py-editor"))
        return False

    def _on_save(self, _facts: dict[str, Any]) -> bool:
        spawn(self._said(self._save()))
        return True

    async def _save(self) -> str:
        name = await self.state.save(str(ffi.get_prop(ffi.node("py-name"), "value") or ""), self.editor.text())
        return f"Saved {name}."

    def _on_export(self, _facts: dict[str, Any]) -> bool:
        name = str(ffi.get_prop(ffi.node("py-name"), "value") or "").strip() or "script"
        spawn(self._said(self._export(name)))
        return True

    async def _export(self, name: str) -> str:
        filename = check_name(name) + ".py"
        await files.save_text(filename, self.editor.text(), "text/x-python")
        return f"Exported {filename}."

    def _on_import(self, _facts: dict[str, Any]) -> bool:
        spawn(self._said(self._import()))
        return False

    async def _import(self) -> str:
        chosen = await files.read_chosen(ffi.node("py-import"), MAX_FILE_BYTES)
        if chosen is None:
            return ""
        self.editor.set_text(chosen["text"])
        name = chosen["name"][:-3] if chosen["name"].endswith(".py") else chosen["name"]
        ffi.set_prop(ffi.node("py-name"), "value", name)
        return f"Opened {chosen['name']} (not run)."

    def _on_share(self, _facts: dict[str, Any]) -> bool:
        spawn(self._said(self._share()))
        return True

    async def _share(self) -> str:
        fragment = encode_link(self.editor.text())
        if len(fragment) > MAX_LINK_CHARS:
            raise InvalidRequest("this script is too long for a link: export it as a .py file", param="link")
        await ffi.copy_text(editor_bridge.link_with(fragment))
        return "Link copied. Whoever opens it sees the code first; it runs only when they press Run."

    def _on_script(self, facts: dict[str, Any]) -> bool:
        name, action = facts.get("id"), facts.get("action")
        if not name or action not in ("open", "delete"):
            return False
        if action == "open":
            spawn(self._said(self._open(name)))
        else:
            confirm_then(f"Delete the saved script {name}?", lambda: self._said(self._delete(name)))
        return True

    async def _open(self, name: str) -> str:
        self.editor.set_text(await self.state.source_of(name))
        ffi.set_prop(ffi.node("py-name"), "value", name)
        ffi.set_hidden("py-warning", True)
        return f"Opened {name}."

    async def _delete(self, name: str) -> str:
        await self.state.delete(name)
        return f"Deleted {name}."

    async def _said(self, intent: Any) -> None:
        """Run an intent and say how it went (a refusal in words, never a crash)."""
        try:
            self.state.said.set(await intent)
        except AppError as exc:
            self.state.said.set(f"{type(exc).__name__}: {exc}")


async def mount(session: Any) -> PanelView:
    view = PanelView(session)
    await view.mount()
    return view
