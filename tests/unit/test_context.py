"""Fitting a history into a context window: oldest turns go first, whole; the newest always stays."""

from app.context import estimate_tokens, fit_window

SYSTEM = {"role": "system", "content": "be brief"}


def turns(n: int, words: int = 20) -> list[dict]:
    out = []
    for i in range(n):
        out += [{"role": "user", "content": f"{'word ' * words}q{i}"}, {"role": "assistant", "content": f"a{i}"}]
    return out


def test_everything_fits_or_no_window_is_known():
    history = [SYSTEM, *turns(2)]
    assert fit_window(history, 10_000, 512) == (history, 0)
    assert fit_window(history, None, 512) == (history, 0)


def test_the_oldest_turns_go_first_whole_and_the_history_still_starts_with_a_user():
    history = [SYSTEM, *turns(4), {"role": "user", "content": "last"}]
    kept, dropped = fit_window(history, 120, reserve=16)
    assert kept[0] == SYSTEM and kept[-1]["content"] == "last"
    assert kept[1]["role"] == "user" and dropped == len(history) - len(kept)
    assert dropped % 2 == 0  # user + answer pairs


def test_the_newest_message_is_kept_even_when_it_alone_is_too_long():
    kept, dropped = fit_window([{"role": "user", "content": "x" * 300}], 50)
    assert dropped == 0 and len(kept) == 1


def test_the_estimate_errs_on_the_side_of_more_tokens():
    assert estimate_tokens("hello world, how are you?") >= 6  # a BPE tokenizer gives ~7 for 25 chars
    assert estimate_tokens("你好世界") >= 4  # about one token per CJK character or more
