"""The page's DOM, through opaque :class:`Node` handles and element ids.

The page's markup is static HTML; views build the rest from text through these functions. Nothing
here parses HTML except :func:`render_markdown`, which sanitizes with DOMPurify (static/render.js)
before anything is inserted, so no model or user string can become markup.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from app.ffi import _core

__all__ = ["DomBridge", "Node", "append", "append_node_text", "confirm", "copy_text", "element", "focus", "click",
           "get_prop", "insert_before", "listen", "node", "remove", "render_markdown", "replace_children",
           "scroll_to_end", "set_attr", "set_body_state", "set_hidden", "set_node_attr", "set_node_text",
           "set_prop", "set_root_attr", "set_rows", "set_text", "text_node"]

RENDER_MODULE_URL = "static/render.js"


class Node:
    """An element or text node of the page. Opaque outside this module."""

    __slots__ = ("_js",)

    def __init__(self, js_node: Any) -> None:
        self._js = js_node


@runtime_checkable
class DomBridge(Protocol):
    """What the views (app/ui/) and app/main.py use."""

    def set_text(self, element_id: str, text: str) -> None: ...
    def set_attr(self, element_id: str, name: str, value: str) -> None: ...
    def set_hidden(self, element_id: str, hidden: bool) -> None: ...
    def set_body_state(self, state: str) -> None: ...
    def set_rows(self, table_id: str, rows: list[tuple[str, str]]) -> None: ...
    def node(self, element_id: str) -> Node: ...
    def element(self, tag: str, text: str | None = None, *, attrs: dict[str, str] | None = None) -> Node: ...
    def text_node(self, text: str) -> Node: ...
    def append(self, parent: Node, *children: Node) -> None: ...
    def insert_before(self, parent: Node, child: Node, before: Node | None) -> None: ...
    def replace_children(self, parent: Node, *children: Node) -> None: ...
    def remove(self, target: Node) -> None: ...
    def set_node_text(self, target: Node, text: str) -> None: ...
    def append_node_text(self, target: Node, text: str) -> None: ...
    def set_node_attr(self, target: Node, name: str, value: str | None) -> None: ...
    def set_prop(self, target: Node, name: str, value: Any) -> None: ...
    def get_prop(self, target: Node, name: str) -> Any: ...
    def focus(self, target: Node) -> None: ...
    def click(self, target: Node) -> None: ...
    def set_root_attr(self, name: str, value: str | None) -> None: ...
    async def confirm(self, question: str, yes: str = "Delete") -> bool: ...
    def scroll_to_end(self, target: Node, *, only_if_near: int | None = None) -> None: ...
    def listen(self, target: Node | str, event: str,
               handler: Callable[[dict[str, Any]], bool | None]) -> Callable[[], None]: ...
    async def render_markdown(self, target: Node, text: str, *, current: Callable[[], bool] | None = None,
                              citations: list[int] | None = None) -> bool: ...
    async def copy_text(self, text: str) -> None: ...


# --------------------------------------------------------------------------- by element id


def _el(element_id: str) -> Any:
    if not _core.IN_BROWSER:
        raise _core.browser_only("the DOM")
    el = _core.js.document.getElementById(element_id)
    if _core.is_null(el):  # Pyodide 314 gives jsnull for JS null
        raise LookupError(f"no element with id {element_id!r} on the page")
    return el


def set_text(element_id: str, text: str) -> None:
    _el(element_id).textContent = text


def set_attr(element_id: str, name: str, value: str) -> None:
    _el(element_id).setAttribute(name, value)


def set_hidden(element_id: str, hidden: bool) -> None:
    _el(element_id).hidden = hidden


def set_body_state(state: str) -> None:
    if not _core.IN_BROWSER:
        raise _core.browser_only("the DOM")
    _core.js.document.body.dataset.state = state


def set_rows(table_id: str, rows: list[tuple[str, str]]) -> None:
    """Replace the body of a two-column table with ``rows`` of plain text."""
    body = _el(table_id).tBodies[0]
    doc = _core.js.document
    fragment = doc.createDocumentFragment()
    for label, value in rows:
        tr = doc.createElement("tr")
        th = doc.createElement("th")
        th.scope = "row"
        th.textContent = label
        td = doc.createElement("td")
        td.textContent = value
        tr.append(th, td)
        fragment.append(tr)
    body.replaceChildren(fragment)


# --------------------------------------------------------------------------- nodes (handles)


def node(element_id: str) -> Node:
    """The element with ``element_id`` (LookupError when the page has none)."""
    return Node(_el(element_id))


def element(tag: str, text: str | None = None, *, attrs: dict[str, str] | None = None) -> Node:
    """A new element with optional text content and attributes (values are plain text)."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("the DOM")
    el = _core.js.document.createElement(tag)
    for name, value in (attrs or {}).items():
        el.setAttribute(name, value)
    if text is not None:
        el.textContent = text
    return Node(el)


def text_node(text: str) -> Node:
    if not _core.IN_BROWSER:
        raise _core.browser_only("the DOM")
    return Node(_core.js.document.createTextNode(text))


def append(parent: Node, *children: Node) -> None:
    """Append (or move, for nodes already in the page) ``children`` at the end of ``parent``."""
    for child in children:
        parent._js.appendChild(child._js)


def insert_before(parent: Node, child: Node, before: Node | None) -> None:
    parent._js.insertBefore(child._js, None if before is None else before._js)


def replace_children(parent: Node, *children: Node) -> None:
    parent._js.replaceChildren(*(c._js for c in children))


def remove(target: Node) -> None:
    target._js.remove()


def set_node_text(target: Node, text: str) -> None:
    target._js.textContent = text


def append_node_text(target: Node, text: str) -> None:
    """Append to a text node: the one DOM change a streamed token makes."""
    target._js.appendData(text)


def set_node_attr(target: Node, name: str, value: str | None) -> None:
    """Set an attribute, or remove it when ``value`` is None."""
    if value is None:
        target._js.removeAttribute(name)
    else:
        target._js.setAttribute(name, value)


def set_prop(target: Node, name: str, value: Any) -> None:
    """A DOM property with a plain value (``value``, ``disabled``, ``hidden``, ``open``)."""
    setattr(target._js, name, value)


def get_prop(target: Node, name: str) -> Any:
    return _core.to_py(getattr(target._js, name))


def focus(target: Node) -> None:
    target._js.focus()


def click(target: Node) -> None:
    """Click ``target`` (e.g. open a file input's picker from a button: call it inside that button's
    click handler, where the browser still counts the user's gesture)."""
    target._js.click()


def set_root_attr(name: str, value: str | None) -> None:
    """An attribute of <html> (e.g. ``data-theme``)."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("the DOM")
    set_node_attr(Node(_core.js.document.documentElement), name, value)


async def confirm(question: str, yes: str = "Delete") -> bool:
    """Ask in the page (``<dialog id="confirm-dialog">``, static/bridge/dom.js ``ask``): True when the
    user presses ``yes``; Cancel, Escape or another question meanwhile give False."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("confirm")
    return bool(await _core.bridge_module("dom").ask(question, yes))


def scroll_to_end(target: Node, *, only_if_near: int | None = None) -> None:
    """Scroll a container to its end (only when it was within ``only_if_near`` px of it)."""
    el = target._js
    if only_if_near is None or el.scrollHeight - el.scrollTop - el.clientHeight <= only_if_near:
        el.scrollTop = el.scrollHeight


# --------------------------------------------------------------------------- events, markdown, clipboard


def listen(target: Node | str, event: str, handler: Callable[[dict[str, Any]], bool | None]) -> Callable[[], None]:
    """Call ``handler(facts)`` on each ``event``; it returns True to prevent the default action.

    ``facts`` (built by static/bridge/dom.js): ``type``, ``key``, ``shift``, ``ctrl``, ``meta``,
    ``alt``, ``composing``, ``action`` and ``id`` (the nearest ``[data-action]``/``[data-id]``),
    ``value``. Returns a remover that detaches the listener and destroys its proxy (put it in the
    view's Scope). ``target`` is a Node or ``"document"``.
    """
    if not _core.IN_BROWSER:
        raise _core.browser_only("the DOM")
    el = _core.js.document if target == "document" else target._js  # type: ignore[union-attr]
    proxy = _core.create_proxy(lambda text: bool(handler(json.loads(text))))
    wrapper = _core.bridge_module("dom").listener(proxy)
    el.addEventListener(event, wrapper)
    done = [False]

    def remove_listener() -> None:
        if not done[0]:
            done[0] = True
            el.removeEventListener(event, wrapper)
            proxy.destroy()

    return remove_listener


async def render_markdown(target: Node, text: str, *, current: Callable[[], bool] | None = None,
                          citations: list[int] | None = None) -> bool:
    """Replace ``target``'s children with ``text`` rendered as markdown (marked), sanitized (DOMPurify:
    no scripts, handlers, javascript:/data: links, styles, remote media), code highlighted with a Copy
    button, and math rendered by KaTeX (loaded the first time an answer has math).

    Rendering may wait (KaTeX loading): when ``current()`` is false by then (the view has shown
    something newer), nothing is replaced and the result is False. ``citations``: the passage numbers
    whose "[n]" in the text become the app's own buttons (``data-action="cite"``, ``value`` n).
    """
    if not _core.IN_BROWSER:
        raise _core.browser_only("render_markdown")
    module = await _core.import_module(RENDER_MODULE_URL)
    fragment = await module.toFragment(text, _core.to_js(list(citations)) if citations else None)
    if current is not None and not current():
        return False
    target._js.replaceChildren(fragment)
    return True


async def copy_text(text: str) -> None:
    """Put ``text`` on the clipboard."""
    if not _core.IN_BROWSER:
        raise _core.browser_only("the clipboard")
    await _core.js.navigator.clipboard.writeText(text)
