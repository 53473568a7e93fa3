"""The reactive store: what runs when, and what does not."""

import pytest

from app.ui.store import Computed, Scope, Signal, batch, effect, untracked, watch


def test_effect_runs_at_creation_and_on_each_change_only():
    name = Signal("a")
    seen = []
    effect(lambda: seen.append(name.get()))
    name.set("b")
    name.set("b")  # equal: no notification
    name.set("c")
    assert seen == ["a", "b", "c"]


def test_effect_depends_only_on_what_it_read_last_time():
    flag, left, right = Signal(True), Signal("L"), Signal("R")
    seen = []
    effect(lambda: seen.append(left.get() if flag.get() else right.get()))
    right.set("R2")  # not read: nothing runs
    assert seen == ["L"]
    flag.set(False)
    left.set("L2")  # no longer read
    right.set("R3")
    assert seen == ["L", "R2", "R3"]


def test_computed_is_lazy_cached_and_stops_a_wave_when_equal():
    n = Signal(2)
    calls = []

    def parity():
        calls.append(n.peek())
        return n.get() % 2

    even = Computed(parity)
    assert calls == []  # nothing computed until read
    seen = []
    effect(lambda: seen.append(even.get()))
    assert even.get() == 0 and len(calls) == 1  # cached
    n.set(4)  # recomputed, same value: the effect does not run
    assert seen == [0] and len(calls) == 2
    n.set(5)
    assert seen == [0, 1]


def test_batch_runs_each_effect_once_after_the_block():
    a, b = Signal(1), Signal(1)
    seen = []
    effect(lambda: seen.append(a.get() + b.get()))
    with batch():
        a.set(2)
        b.set(3)
        assert seen == [2]
    assert seen == [2, 5]


def test_mutate_notifies_for_in_place_changes():
    items = Signal([])
    lengths = []
    effect(lambda: lengths.append(len(items.get())))
    items.mutate(lambda xs: xs.append("x"))
    assert lengths == [0, 1]


def test_watch_gets_new_and_old_and_not_the_initial_value():
    text = Signal("")
    calls = []
    stop = watch(text, lambda new, old: calls.append((new, old)))
    text.set("he")
    text.set("hello")
    stop()
    text.set("gone")
    assert calls == [("he", ""), ("hello", "he")]


def test_dispose_stops_an_effect_and_runs_its_cleanup():
    s = Signal(0)
    log = []

    def run():
        value = s.get()
        log.append(f"run {value}")
        return lambda: log.append(f"cleanup {value}")

    eff = effect(run)
    s.set(1)
    eff.dispose()
    s.set(2)
    assert log == ["run 0", "cleanup 0", "run 1", "cleanup 1"]


def test_scope_disposes_effects_and_other_disposers_together():
    s = Signal(0)
    seen, removed = [], []
    scope = Scope()
    scope.effect(lambda: seen.append(s.get()))
    scope.add(lambda: removed.append("listener"))
    scope.dispose()
    s.set(1)
    assert seen == [0] and removed == ["listener"]
    scope.dispose()  # idempotent
    assert removed == ["listener"]


def test_untracked_reads_do_not_subscribe():
    a, b = Signal(1), Signal(10)
    seen = []
    effect(lambda: seen.append(a.get() + untracked(b.get)))
    b.set(20)
    a.set(2)
    assert seen == [11, 22]


def test_an_effect_setting_a_signal_triggers_the_next_wave_not_recursion():
    source, mirror = Signal(1), Signal(0)
    seen = []
    effect(lambda: mirror.set(source.get() * 10))
    effect(lambda: seen.append(mirror.get()))
    source.set(2)
    assert seen == [10, 20]


def test_an_effect_writing_what_it_reads_does_not_retrigger_itself():
    s = Signal(0)
    effect(lambda: s.set(s.get() + 1))
    assert s.peek() == 1
    s.set(10)
    assert s.peek() == 11


def test_a_cycle_between_effects_is_stopped_with_an_error():
    a, b = Signal(0), Signal(0)
    effect(lambda: b.set(a.get() + 1))
    with pytest.raises(RuntimeError, match="waves"):
        effect(lambda: a.set(b.get() + 1))


def test_one_failing_effect_does_not_stop_the_others():
    s = Signal(0)
    seen = []

    def bad():
        if s.get() == 1:
            raise ValueError("boom")

    effect(bad)
    effect(lambda: seen.append(s.get()))
    with pytest.raises(ValueError):
        s.set(1)
    assert seen == [0, 1]


def test_a_token_updates_only_the_view_of_its_message():
    """The property the chat view relies on: one message's text changing runs one effect."""
    messages = Signal([Signal(""), Signal("")])
    runs = {"list": 0, 0: 0, 1: 0}

    def list_view():
        runs["list"] += 1
        for i, text in enumerate(messages.get()):
            effect(lambda i=i, text=text: (runs.__setitem__(i, runs[i] + 1), text.get()))

    effect(list_view)
    messages.peek()[1].set("t0 ")
    messages.peek()[1].set("t0 t1 ")
    assert runs == {"list": 1, 0: 1, 1: 3}
