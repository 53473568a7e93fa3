"""Run Python typed in the page's Python panel, with the same client the chat uses.

    runner = Runner(provide=names_for_the_namespace, emit=lambda kind, text: ...)
    status = await runner.run("x = await client.chat.completions.create(...)\\nx.choices[0]")
    runner.stop()                          # from the Stop button: cancels the run and its streams

A run is one cell, as in a notebook: top-level ``await`` works, what it prints arrives as it is
printed (``emit("out", text)``; ``"err"`` for stderr), the value of a last bare expression is shown
(``emit("result", repr)``) and kept as ``_``, and an exception is shown as a traceback of the user's
own lines only (``emit("error", text)``). The namespace lives on between runs. Names the code uses
are provided on first use (``provide(names)``): ``client`` (the session's client, so asking it loads
the chosen model only when a script uses it), ``models`` (the model manager), ``session``; an
``import pydantic`` or ``import micropip`` loads the vendored wheel first. ``user(text)``,
``system(text)`` and ``assistant(text)`` build messages.

Stop cancels the run's task: an ``await`` in progress raises CancelledError inside the code, and every
stream the run opened through ``client`` is closed, so the engine is free for the chat at once. A loop
that never awaits cannot be interrupted: Python runs on the page's main thread.

What runs has the page's rights (conversations, keys in memory, the network the page may reach): the
panel never runs code by itself, not even code opened from a shared link.
Plain Python: unit-tested under CPython.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import linecache
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

FILENAME = "<python panel>"
RESULT = "__panel_result__"
MAX_REPR = 20_000
LAZY_PACKAGES = ("pydantic", "micropip")  # vendored wheels, loaded when the code imports them
STATUSES = ("done", "error", "stopped")
LIVE = ("client", "models", "session")  # provided from the session at each run that uses them


class _Writer(io.TextIOBase):
    """sys.stdout / sys.stderr during a run: each write goes to the panel as it happens."""

    def __init__(self, emit: Callable[[str, str], None], kind: str) -> None:
        self._emit = emit
        self._kind = kind

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            self._emit(self._kind, text)
        return len(text)


def compile_cell(source: str) -> tuple[Any, set[str]]:
    """The code object of one cell (top-level ``await`` allowed; a last bare expression is kept in
    ``__panel_result__``) and the names and top-level packages it uses. Raises SyntaxError."""
    tree = ast.parse(source, FILENAME, "exec")
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = tree.body[-1]
        tree.body[-1] = ast.copy_location(
            ast.Assign(targets=[ast.Name(RESULT, ast.Store())], value=last.value), last)
    ast.fix_missing_locations(tree)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            used |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            used.add(node.module.split(".")[0])
    return compile(tree, FILENAME, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT), used


def user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame of the user's code on (the runner's frames left out)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ is the user's, shown as such
        text = f"<repr failed: {type(exc).__name__}: {exc}>"
    return text if len(text) <= MAX_REPR else text[:MAX_REPR] + f"… ({len(text) - MAX_REPR} more characters)"


def user(content: Any) -> dict[str, Any]:
    """``{"role": "user", "content": content}``: a message for ``messages=[...]``."""
    return {"role": "user", "content": content}


def system(content: str) -> dict[str, Any]:
    return {"role": "system", "content": content}


def assistant(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


HELPERS = {"user": user, "system": system, "assistant": assistant}


class StreamTracker:
    """``client`` as scripts see it: the session's client, with every stream a run opens remembered
    so that Stop (or the run's end) can close those still open and free the engine."""

    def __init__(self, client: Any, opened: list[Any]) -> None:
        self._client = client
        self.chat = _TrackedChat(client.chat, opened)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def __repr__(self) -> str:
        return f"<client over {getattr(self._client.backend, 'name', '?')}>"


class _TrackedChat:
    def __init__(self, chat: Any, opened: list[Any]) -> None:
        self.completions = _TrackedCompletions(chat.completions, opened)


class _TrackedCompletions:
    def __init__(self, completions: Any, opened: list[Any]) -> None:
        self._completions = completions
        self._opened = opened

    async def create(self, **params: Any) -> Any:
        result = await self._completions.create(**params)
        if hasattr(result, "aclose"):
            self._opened.append(result)
        return result

    def __getattr__(self, name: str) -> Any:  # parse, run_tools: no stream outlives them
        return getattr(self._completions, name)


class Runner:
    """Runs cells one at a time in one namespace. ``provide(names)`` returns values for the names a
    cell uses that the namespace lacks (awaited once per name); ``emit(kind, text)`` shows output."""

    def __init__(self, *, provide: Callable[[set[str]], Awaitable[dict[str, Any]]],
                 emit: Callable[[str, str], None],
                 load_packages: Callable[..., Awaitable[None]] | None = None) -> None:
        self._provide = provide
        self._emit = emit
        self._load_packages = load_packages
        self.namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__, **HELPERS}
        self._task: asyncio.Task | None = None
        self._streams: list[Any] = []
        self._provided: dict[str, Any] = {}
        self.runs = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run(self, source: str) -> str:
        """Run one cell; returns "done", "error" or "stopped". One run at a time."""
        if self.running:
            from app.errors import UsageError

            raise UsageError("a run is in progress: stop it first")
        self.runs += 1
        self._task = asyncio.ensure_future(self._run(source))
        try:
            return await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if self._task.cancelled() and not asyncio.current_task().cancelling():  # type: ignore[union-attr]
                return "stopped"
            raise

    def stop(self) -> bool:
        """Cancel the run in progress (its streams are closed as it ends). False: nothing was running."""
        if not self.running:
            return False
        assert self._task is not None
        self._task.cancel()
        return True

    async def _run(self, source: str) -> str:
        try:
            code, used = compile_cell(source)
        except SyntaxError as exc:
            self._emit("error", "".join(traceback.format_exception_only(type(exc), exc)))
            return "error"
        linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)
        try:
            try:
                await self._prepare(used)
                value = await self._execute(code)
            finally:
                await self._close_streams()
        except asyncio.CancelledError:
            self._emit("info", "Stopped.")
            raise
        except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt in a cell too
            self._emit("error", user_traceback(exc))
            return "error"
        if value is not None:
            self.namespace["_"] = value
            self._emit("result", short_repr(value))
        return "done"

    async def _prepare(self, used: set[str]) -> None:
        packages = [p for p in LAZY_PACKAGES if p in used]
        if packages and self._load_packages is not None:
            await self._load_packages(*packages)
        # The session's objects are asked for again each run (the endpoint or model may have changed),
        # unless the code bound the name to something else itself.
        missing = {n for n in used if n in LIVE
                   and (n not in self.namespace or self.namespace[n] is self._provided.get(n))}
        if missing:
            provided = await self._provide(missing)
            if "client" in provided:
                provided["client"] = StreamTracker(provided["client"], self._streams)
            self._provided.update(provided)
            self.namespace.update(provided)

    async def _execute(self, code: Any) -> Any:
        self.namespace.pop(RESULT, None)
        out, err = _Writer(self._emit, "out"), _Writer(self._emit, "err")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # type: ignore[type-var]
            result = eval(code, self.namespace)  # noqa: S307 - running the user's own code is the point
            if inspect.iscoroutine(result):
                await result
        return self.namespace.pop(RESULT, None)

    async def _close_streams(self) -> None:
        streams, self._streams[:] = list(self._streams), []
        for stream in streams:
            with contextlib.suppress(Exception):
                await asyncio.shield(stream.aclose())
