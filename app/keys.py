"""API keys for cloud endpoints: kept in memory unless the user opts in to saving one.

    keys = KeyStore()
    await keys.save("https://api.openai.com/v1", key)     # opt-in: stored for https://api.openai.com only
    await keys.load("https://api.openai.com/v1/")         # the same origin: that key; any other: None
    await keys.forget("https://api.openai.com/v1")
    await keys.clear()                                    # every saved key

A saved key lives in the app's IndexedDB ``settings`` store under its endpoint's origin (scheme, host,
port), so it is only ever handed to a backend talking to that same origin. Nothing here prints,
logs or shows a key; ``repr`` lists origins only. ``OpenAICompatBackend(..., remember_key=True)``
uses this store.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from app.errors import UsageError
from app.ffi import storage as bridge
from app.ffi.storage import KeyValueBridge

STORE = "settings"
PREFIX = "api-key "
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """``"https://API.openai.com:443/v1"`` -> ``"https://api.openai.com"`` (what a key is bound to)."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise UsageError(f"not an http(s) URL: {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = parts.port if parts.port not in (None, _DEFAULT_PORTS[parts.scheme]) else None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


class KeyStore:
    """Saved API keys by endpoint origin (see the module docstring). ``storage`` is app.ffi.storage's kv API."""

    def __init__(self, storage: KeyValueBridge = bridge) -> None:
        self._storage = storage

    def __repr__(self) -> str:
        return "KeyStore(settings store, keys by origin)"

    async def save(self, url: str, key: str) -> None:
        """Keep ``key`` across reloads, for ``url``'s origin only."""
        if not isinstance(key, str) or not key:
            raise UsageError("an API key must be a non-empty string")
        await self._storage.kv_put(STORE, PREFIX + origin_of(url), key)

    async def load(self, url: str) -> str | None:
        key = await self._storage.kv_get(STORE, PREFIX + origin_of(url))
        return key if isinstance(key, str) and key else None

    async def forget(self, url: str) -> None:
        await self._storage.kv_delete(STORE, PREFIX + origin_of(url))

    async def origins(self) -> list[str]:
        """Origins that have a saved key (never the keys)."""
        return sorted(k[len(PREFIX):] for k in await self._storage.kv_items(STORE) if k.startswith(PREFIX))

    async def clear(self) -> None:
        for origin in await self.origins():
            await self._storage.kv_delete(STORE, PREFIX + origin)
