"""Code carried in a link's fragment (``#py=<base64url>``) for the Python panel: cheap to import, so
the page can see at start-up whether to open the panel without loading the panel itself."""

from __future__ import annotations

import base64
import binascii

FRAGMENT_KEY = "py="


def encode_link(source: str) -> str:
    """The fragment that carries ``source`` in a link (UTF-8, base64url, no padding)."""
    return FRAGMENT_KEY + base64.urlsafe_b64encode(source.encode()).decode().rstrip("=")


def decode_link(fragment: str) -> str | None:
    """The code a fragment carries, or None (not ours, or not valid)."""
    if not fragment.startswith(FRAGMENT_KEY):
        return None
    data = fragment[len(FRAGMENT_KEY):]
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        return None
