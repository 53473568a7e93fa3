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


# ---------------------------------------------------------------------------- counting, calibrated

from app.context import Anchor, Counter, Part, Rates, full_prompt_tokens, learn_prompt, plan_request  # noqa: E402


def test_an_anchor_counts_the_history_exactly_and_only_what_follows_is_estimated():
    parts = [Part("u1", "user", 10), Part("a1", "assistant", 7), Part("", "user", 12)]
    plan = plan_request(5, parts, window=4096, anchor=Anchor(40, first="u1", through="a1"))
    assert plan.exact and plan.tokens == 40 + 12
    # Sent without its first message (left out since), the anchor no longer applies.
    plan = plan_request(5, parts[1:], window=4096, anchor=Anchor(40, first="u1", through="a1"))
    assert not plan.exact and plan.tokens == 5 + 7 + 12


def test_the_plan_warns_near_the_window_and_says_what_it_leaves_out():
    parts = [Part(f"m{i}", "user" if i % 2 == 0 else "assistant", 30) for i in range(6)] + [Part("", "user", 30)]
    assert plan_request(0, parts[:2], window=70).level == "near"
    plan = plan_request(0, parts, window=200, reserve=40)
    assert plan.dropped == ["m0", "m1"] and plan.sent[0] == "m2" and plan.level == "over"
    assert plan.tokens <= 160


def test_tokens_per_character_are_learned_from_answers():
    rates = Rates()
    counter = Counter(rates)
    assert counter.text("x" * 300) == 100  # uncalibrated: the safe estimate
    rates.learn_answer("abcd " * 20, 21)  # 100 characters, 20 tokens and the end token
    assert rates.per_char() == 0.2 and counter.text("x" * 300) == 60


def test_template_costs_are_learned_from_the_prompt_counts():
    rates = Rates(chars=100, tokens=25)
    counter = Counter(rates)
    texts = {"u1": "a" * 40, "a1": "b" * 20, "u2": "c" * 80}
    first = [Part("u1", "user", counter.user(texts["u1"]))]
    learn_prompt(rates, counter, prompt_tokens=30, system="", parts=first, anchor=None, texts=texts)
    assert rates.base == 30 - (10 + 4)  # what is left beyond the message and its (default) turn cost
    parts = [*first, Part("a1", "assistant", 6), Part("u2", "user", counter.user(texts["u2"]))]
    learn_prompt(rates, counter, prompt_tokens=30 + 6 + 20 + 3, system="", parts=parts,
                 anchor=Anchor(36, first="u1", through="a1"), texts=texts)
    assert rates.turn == 3  # the prompt grew by the anchor, the new turn's 20 tokens of text and 3


def test_a_count_of_only_the_new_turn_is_told_from_a_whole_prompt():
    # web-llm reused its cache: it reports the prefilled new turn only.
    assert full_prompt_tokens(23, reuses_cache=True, anchor_tokens=400, new_tokens=25) == 423
    assert full_prompt_tokens(421, reuses_cache=True, anchor_tokens=400, new_tokens=25) == 421
    assert full_prompt_tokens(23, reuses_cache=False, anchor_tokens=400, new_tokens=25) == 23
    assert full_prompt_tokens(23, reuses_cache=True, anchor_tokens=None, new_tokens=25) == 23
