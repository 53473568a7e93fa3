"""A small reactive store: signals hold values, computed values derive from them, effects react.

    count = Signal(0)
    doubled = Computed(lambda: count.get() * 2)
    stop = effect(lambda: print(doubled.get()))   # prints 0 (an effect runs once at creation)
    count.set(1)                                  # prints 2
    count.set(1)                                  # nothing: equal values do not notify
    with batch():                                 # effects run once, after the block
        count.set(2); count.set(3)                # prints 6
    stop()

Dependencies are tracked automatically: an effect or computed depends on exactly the signals it
read during its last run. Components subscribe to what they show, so a streamed token changes one
message's ``text`` signal and only that message's effect runs (it appends to one DOM text node).

Notify only on change (``==``); in-place changes to a mutable value go through ``mutate`` which
always notifies. Effects run synchronously after the outermost ``set``/``batch`` and only when a
dependency's value really changed (a computed that recomputes to an equal value stops the wave).
An effect may return a cleanup callable, called before its next run and when it is disposed.
:class:`Scope` owns the effects and other disposers of one component and ends them together.
Plain Python: no DOM, no asyncio; unit-tested under CPython.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# The computation (effect or computed) currently running, which records what it reads.
_running: list[_Computation] = []
_batch_depth = 0
_pending: dict[Effect, None] = {}  # effects to run, in scheduling order (a dict is an ordered set)
MAX_WAVES = 100  # an effect that keeps re-triggering itself is a bug; stop instead of hanging


def _track(source: _Source) -> None:
    if _running:
        _running[-1]._depend(source)


class _Source:
    """Something that can be read and watched: a Signal or a Computed."""

    def __init__(self) -> None:
        self._observers: dict[_Computation, None] = {}
        self._version = 0

    def _current_version(self) -> int:
        return self._version

    def _mark_observers(self) -> None:
        for observer in list(self._observers):
            observer._stale()


class Signal(_Source, Generic[T]):
    """A value that notifies its observers when it changes. ``.value`` is ``get()``/``set()``."""

    def __init__(self, value: T) -> None:
        super().__init__()
        self._value = value

    def get(self) -> T:
        _track(self)
        return self._value

    def peek(self) -> T:
        """The value, without making the running computation depend on it."""
        return self._value

    def set(self, value: T) -> None:
        if self._value is value or self._value == value:
            return
        self._value = value
        self._changed()

    def update(self, fn: Callable[[T], T]) -> None:
        self.set(fn(self._value))

    def mutate(self, fn: Callable[[T], Any]) -> None:
        """Change the value in place (``sig.mutate(lambda xs: xs.append(x))``); always notifies."""
        fn(self._value)
        self._changed()

    def _changed(self) -> None:
        self._version += 1
        with batch():
            self._mark_observers()

    value = property(get, set)

    def __repr__(self) -> str:
        return f"Signal({self._value!r})"


class _Computation:
    """Runs a function while recording the sources it reads (its dependencies for the next wave)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._deps: dict[_Source, int] = {}  # source -> its version when last read
        self._disposed = False

    def _depend(self, source: _Source) -> None:
        if source not in self._deps:
            self._deps[source] = source._version
            source._observers[self] = None

    def _untrack_all(self) -> None:
        for source in self._deps:
            source._observers.pop(self, None)
        self._deps = {}

    def _run_tracked(self) -> Any:
        self._untrack_all()
        _running.append(self)
        try:
            return self._fn()
        finally:
            _running.pop()
            # Versions as of the end of the run: a source changed during the run counts as read.
            for source in self._deps:
                self._deps[source] = source._version

    def _changed_since_run(self) -> bool:
        return any(source._current_version() != seen for source, seen in list(self._deps.items()))

    def _stale(self) -> None:
        raise NotImplementedError


class Computed(_Source, _Computation, Generic[T]):
    """A value derived from signals, recomputed lazily (on read) after one of them changed."""

    def __init__(self, fn: Callable[[], T]) -> None:
        _Source.__init__(self)
        _Computation.__init__(self, fn)
        self._value: Any = None
        self._dirty = True

    def _stale(self) -> None:
        if not self._dirty:
            self._dirty = True
            self._mark_observers()

    def _refresh(self) -> None:
        if self._dirty and (not self._deps or self._changed_since_run() or self._version == 0):
            value = self._run_tracked()
            if self._version == 0 or not (value is self._value or value == self._value):
                self._value = value
                self._version += 1
        self._dirty = False

    def _current_version(self) -> int:
        self._refresh()
        return self._version

    def get(self) -> T:
        self._refresh()
        _track(self)
        return self._value

    def peek(self) -> T:
        self._refresh()
        return self._value

    value = property(get)


class Effect(_Computation):
    """Runs ``fn`` now and again whenever something it read changes; ``dispose()`` ends it."""

    def __init__(self, fn: Callable[[], Callable[[], None] | None]) -> None:
        super().__init__(fn)
        self._cleanup: Callable[[], None] | None = None
        with batch():  # what the first run sets is flushed after it, not in the middle of it
            self._execute()

    def _stale(self) -> None:
        if not self._disposed:
            _pending[self] = None

    def _execute(self) -> None:
        self._run_cleanup()
        result = self._run_tracked()
        self._cleanup = result if callable(result) else None

    def _run_cleanup(self) -> None:
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            cleanup()

    def dispose(self) -> None:
        if self._disposed:
            return
        self._disposed = True
        _pending.pop(self, None)
        self._untrack_all()
        self._run_cleanup()

    __call__ = dispose


def effect(fn: Callable[[], Callable[[], None] | None]) -> Effect:
    """Run ``fn`` now and whenever what it read changes. Returns the effect; call it to dispose."""
    return Effect(fn)


def watch(source: Signal[T] | Computed[T], fn: Callable[[T, T], None]) -> Effect:
    """Call ``fn(new, old)`` on each change of one source (not at creation). Returns the effect."""
    last = [source.peek()]
    first = [True]

    def run() -> None:
        value = source.get()
        old, last[0] = last[0], value
        if first[0]:
            first[0] = False
        else:
            untracked(lambda: fn(value, old))

    return Effect(run)


def untracked(fn: Callable[[], T]) -> T:
    """Call ``fn`` without recording what it reads in the running computation."""
    _running.append(_NOBODY)
    try:
        return fn()
    finally:
        _running.pop()


class _Nobody(_Computation):
    def _depend(self, source: _Source) -> None:
        pass


_NOBODY = _Nobody(lambda: None)


@contextmanager
def batch() -> Iterator[None]:
    """Defer effects until the block ends; each runs at most once per wave."""
    global _batch_depth
    _batch_depth += 1
    try:
        yield
    finally:
        _batch_depth -= 1
        if _batch_depth == 0:
            _flush()


def _flush() -> None:
    global _batch_depth
    waves = 0
    error: BaseException | None = None
    _batch_depth += 1  # effects that set signals queue more effects instead of recursing
    try:
        while _pending:
            waves += 1
            if waves > MAX_WAVES:
                _pending.clear()
                raise RuntimeError(f"effects still re-triggering after {MAX_WAVES} waves (a cycle?)")
            todo = list(_pending)
            _pending.clear()
            for eff in todo:
                if eff._disposed or not eff._changed_since_run():
                    continue
                try:
                    eff._execute()
                except Exception as exc:  # one failing view must not stop the others updating
                    error = error or exc
    finally:
        _batch_depth -= 1
    if error is not None:
        raise error


class Scope:
    """The effects and disposers of one component, ended together by ``dispose()``.

        scope = Scope()
        scope.effect(lambda: ffi.set_node_text(node, message.text.get()))
        scope.add(ffi.listen(button, "click", on_click))   # a remover: listener + its proxy
        scope.dispose()
    """

    def __init__(self) -> None:
        self._disposers: list[Callable[[], None]] = []
        self.disposed = False

    def effect(self, fn: Callable[[], Callable[[], None] | None]) -> Effect:
        eff = Effect(fn)
        self._disposers.append(eff.dispose)
        return eff

    def watch(self, source: Signal[T] | Computed[T], fn: Callable[[T, T], None]) -> Effect:
        eff = watch(source, fn)
        self._disposers.append(eff.dispose)
        return eff

    def add(self, disposer: Callable[[], None]) -> Callable[[], None]:
        self._disposers.append(disposer)
        return disposer

    def dispose(self) -> None:
        if self.disposed:
            return
        self.disposed = True
        disposers, self._disposers = self._disposers, []
        for dispose in reversed(disposers):
            dispose()
