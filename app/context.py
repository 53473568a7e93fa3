"""How many tokens the next request takes, and keeping a conversation inside the model's context window.

    counter = Counter(rates)                               # a model's calibration (Rates), or none yet
    plan = plan_request(system, parts, window=4096, reserve=512, anchor=anchor)
    plan.tokens, plan.dropped                              # what the meter shows; what is left out
    messages, dropped = fit_window(history, window=4096, reserve=512)   # the safe estimate alone

Counting is exact where the engine said and estimated for the rest. After an answer the engine
reports ``prompt_tokens`` P for exactly the messages sent and ``completion_tokens`` C for the answer:
P + C is what that conversation occupies (the *anchor*), so the next request is P + C + the new turn
(its text estimated, plus the template's cost of a turn). Where no anchor applies (a new conversation,
turns left out since, another system prompt) each part is counted alone: an answer by its C, the rest
estimated. The estimate is calibrated per model (:class:`Rates`): tokens per character from the
answers it wrote (C against their text), the template's cost of a user turn from the growth of the
prompt between two requests, and the fixed cost of a prompt (the system template, a default system
message the engine adds) from a first request. Uncalibrated, it errs on the safe side (more than most
tokenizers count: a third of a token per ASCII character, one and a half per other character, four
per message for the template), because it decides what is left out before a request is sent.

web-llm reuses its KV cache when a request extends the previous one, and then reports as
``prompt_tokens`` only the part it prefilled (the new turn): :func:`full_prompt_tokens` tells the two
apart by which the reported number is nearer to.

The system prompt and the newest message are always kept; older turns go first, whole (a user
message with the answers that followed it), so the history still starts with a user.
Plain Python: unit-tested under CPython.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PER_MESSAGE = 4  # role markers and separators of a chat template, before calibration
MIN_CHARS = 40  # answer characters seen before tokens per character is trusted
NEAR = 0.85  # the meter warns from this share of the window on


def estimate_tokens(text: str) -> int:
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return math.ceil(ascii_chars / 3 + (len(text) - ascii_chars) * 1.5)


def message_tokens(message: dict[str, Any]) -> int:
    return estimate_tokens(_text(message)) + PER_MESSAGE


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else " ".join(
        p.get("text", "") for p in content or () if isinstance(p, dict))


@dataclass
class Rates:
    """What one model's tokenizer and chat template were seen to do (learned from usage).

    ``chars``/``tokens``: answer text against its completion tokens (less the end-of-turn token);
    ``turn``: template tokens a user turn adds besides its text (role markers, separators, the reply
    header); ``base``: tokens every prompt has besides its messages (system template, a default
    system message). None: not seen yet."""

    chars: int = 0
    tokens: int = 0
    turn: float | None = None
    base: float | None = None

    def per_char(self) -> float | None:
        return self.tokens / self.chars if self.chars >= MIN_CHARS and self.tokens > 0 else None

    def learn_answer(self, text: str, completion_tokens: int) -> None:
        """An answer of ``completion_tokens`` (the engine's count, its end-of-turn token included)."""
        if text and completion_tokens > 1:
            self.chars += len(text)
            self.tokens += completion_tokens - 1


class Counter:
    """Tokens of text and messages for one model: calibrated by its :class:`Rates` when it has any."""

    def __init__(self, rates: Rates | None = None) -> None:
        self.rates = rates or Rates()

    def text(self, text: str) -> int:
        rate = self.rates.per_char()
        if rate is None:
            return estimate_tokens(text)
        return round(len(text) * rate)

    def turn(self) -> int:
        turn = self.rates.turn
        return PER_MESSAGE if turn is None else round(turn)

    def base(self) -> int:
        base = self.rates.base
        return PER_MESSAGE if base is None else round(base)

    def user(self, text: str) -> int:
        """A user turn: its text and the template around it (the reply header included)."""
        return self.text(text) + self.turn()

    def answer(self, text: str, completion_tokens: int | None = None) -> int:
        """An earlier answer: what the engine counted when it wrote it, else its text and an end token."""
        return completion_tokens if completion_tokens else self.text(text) + 1

    def system(self, text: str) -> int:
        """The fixed part of a prompt and the system prompt (``text``, "" for none)."""
        return self.base() + (self.text(text) if text else 0)


@dataclass(frozen=True)
class Part:
    """One message of a request, counted: ``key`` names it (a message id; "" for the draft)."""

    key: str
    role: str
    tokens: int


@dataclass(frozen=True)
class Anchor:
    """What an earlier request and its answer occupy, exactly (P + C): valid for a request that sends
    the same system prompt and the same messages up to and including that answer (``through``)."""

    tokens: int
    first: str  # the first message that request sent (after the system prompt)
    through: str  # the answer


@dataclass
class Plan:
    """The next request: its tokens (exact part + estimate), the window, what is left out."""

    tokens: int
    window: int | None
    sent: list[str] = field(default_factory=list)  # keys of the parts sent, in order
    dropped: list[str] = field(default_factory=list)  # keys of the oldest parts left out
    exact: bool = False  # an anchor counted the history

    @property
    def level(self) -> str:
        """"ok", "near" (the window is nearly full) or "over" (more than fits, or nothing fits)."""
        if not self.window:
            return "ok"
        if self.tokens > self.window or self.dropped:
            return "over"
        return "near" if self.tokens >= NEAR * self.window else "ok"


def count(system: int, parts: list[Part], anchor: Anchor | None = None) -> tuple[int, bool]:
    """Tokens of a request of ``system`` tokens then ``parts``; exact up to the anchor when it
    applies (its first part is the first sent and its answer is among them)."""
    keys = [p.key for p in parts]
    if anchor is not None and keys and keys[0] == anchor.first and anchor.through in keys:
        after = keys.index(anchor.through) + 1
        return anchor.tokens + sum(p.tokens for p in parts[after:]), True
    return system + sum(p.tokens for p in parts), False


def plan_request(system: int, parts: list[Part], *, window: int | None, reserve: int = 0,
                 anchor: Anchor | None = None) -> Plan:
    """The request that fits ``window`` with room for ``reserve`` answer tokens (at most a quarter of
    the window): the oldest whole turns go first; the newest part always stays."""
    tokens, exact = count(system, parts, anchor)
    if not window:
        return Plan(tokens, window, [p.key for p in parts], [], exact)
    budget = window - min(reserve, window // 4)
    start = 0
    while start < len(parts) - 1 and tokens > budget:
        start += 1
        while start < len(parts) - 1 and parts[start].role != "user":
            start += 1  # a turn goes whole: the history after the system prompt starts with a user
        tokens, exact = count(system, parts[start:], anchor)
    return Plan(tokens, window, [p.key for p in parts[start:]], [p.key for p in parts[:start]], exact)


def full_prompt_tokens(reported: int, *, reuses_cache: bool, anchor_tokens: int | None, new_tokens: int) -> int:
    """The prompt tokens of a whole request, from what the engine reported for it.

    ``anchor_tokens``: what the conversation occupied after the previous answer (None: no anchor);
    ``new_tokens``: the estimate of what this request adds to it. An engine that ``reuses_cache``
    (web-llm) prefills, and reports, only that addition when the request extends its previous one:
    a number nearer to the addition than to the whole is such a report."""
    if not reuses_cache or anchor_tokens is None:
        return reported
    if abs(reported - new_tokens) < abs(reported - (anchor_tokens + new_tokens)):
        return anchor_tokens + reported
    return reported


def learn_prompt(rates: Rates, counter: Counter, *, prompt_tokens: int, system: str, parts: list[Part],
                 anchor: Anchor | None, texts: dict[str, str]) -> None:
    """Calibrate the template costs from a request's full ``prompt_tokens``. With an anchor, what the
    prompt grew by beyond it is the new user turn(s): their text and ``turn`` each. Without one, what is
    left after every message is the fixed ``base``. ``texts``: each part's text, by key."""
    keys = [p.key for p in parts]
    if anchor is not None and keys and keys[0] == anchor.first and anchor.through in keys:
        new = parts[keys.index(anchor.through) + 1:]
        users = [p for p in new if p.role == "user"]
        if users:
            others = sum(p.tokens for p in new if p.role != "user")
            grown = prompt_tokens - anchor.tokens - others - sum(counter.text(texts.get(p.key, "")) for p in users)
            rates.turn = max(0.0, grown / len(users))
        return
    messages = sum(counter.text(texts.get(p.key, "")) + counter.turn() if p.role == "user" else p.tokens
                   for p in parts)
    rates.base = max(0.0, prompt_tokens - messages - (counter.text(system) if system else 0))


def fit_window(messages: list[dict[str, Any]], window: int | None, reserve: int = 0
               ) -> tuple[list[dict[str, Any]], int]:
    """``messages`` without their oldest turns so that they and ``reserve`` answer tokens fit ``window``
    by the safe estimate; returns them and how many messages were left out (0: all fit, or no window)."""
    if not window:
        return messages, 0
    head = messages[:1] if messages and messages[0].get("role") == "system" else []
    rest = messages[len(head):]
    parts = [Part(str(i), str(m.get("role")), message_tokens(m)) for i, m in enumerate(rest)]
    plan = plan_request(sum(message_tokens(m) for m in head), parts, window=window, reserve=reserve)
    return head + rest[len(plan.dropped):], len(plan.dropped)
