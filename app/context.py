"""Keep a conversation inside the model's context window: drop the oldest turns, never fail.

    messages, dropped = fit_window(history, window=4096, reserve=512)

Tokens are estimated, on the safe side (more than most tokenizers count: a third of a token per
ASCII character, one and a half per other character, four per message for the template), because
the estimate decides what is left out before a request is sent; the model's own count decides
whether it fails. The system prompt and the newest message are always kept; older turns go first,
whole (a user message with the answers that followed it), so the history still starts with a user.
"""

from __future__ import annotations

import math
from typing import Any

PER_MESSAGE = 4  # role markers and separators of a chat template


def estimate_tokens(text: str) -> int:
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return math.ceil(ascii_chars / 3 + (len(text) - ascii_chars) * 1.5)


def message_tokens(message: dict[str, Any]) -> int:
    content = message.get("content")
    text = content if isinstance(content, str) else " ".join(
        p.get("text", "") for p in content or () if isinstance(p, dict))
    return estimate_tokens(text) + PER_MESSAGE


def fit_window(messages: list[dict[str, Any]], window: int | None, reserve: int = 0
               ) -> tuple[list[dict[str, Any]], int]:
    """``messages`` without their oldest turns so that they and ``reserve`` answer tokens fit ``window``;
    returns them and how many messages were left out (0: all fit, or no window is known)."""
    if not window:
        return messages, 0
    head = [m for m in messages if m.get("role") == "system"][:1] if messages and messages[0].get("role") == "system" else []
    rest = messages[len(head):]
    budget = window - min(reserve, window // 4) - sum(message_tokens(m) for m in head)
    sizes = [message_tokens(m) for m in rest]
    start = 0
    while start < len(rest) - 1 and sum(sizes[start:]) > budget:
        start += 1
        while start < len(rest) - 1 and rest[start].get("role") != "user":
            start += 1  # a turn goes whole: the history after the system prompt starts with a user
    return head + rest[start:], start
