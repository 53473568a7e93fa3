"""API keys: saved only on opt-in, bound to their endpoint's origin, never shown."""

import pytest

from app.backends.openai_compat import OpenAICompatBackend
from app.errors import UsageError
from app.keys import KeyStore, origin_of
from app.params import ChatRequest
from tests.unit.backends.test_openai_compat import ANSWER, KEY, FakeHttp
from tests.unit.conftest import run

REQUEST = ChatRequest.build(messages=[{"role": "user", "content": "x"}])


class FakeKV:
    """app.ffi's kv_* functions over a dict of stores."""

    def __init__(self):
        self.stores = {"settings": {}}

    async def kv_get(self, store, key):
        return self.stores[store].get(key)

    async def kv_put(self, store, key, value):
        self.stores[store][key] = value

    async def kv_delete(self, store, key):
        self.stores[store].pop(key, None)

    async def kv_items(self, store):
        return dict(self.stores[store])


@pytest.mark.parametrize("url, origin", [
    ("https://API.openai.com/v1", "https://api.openai.com"),
    ("https://api.openai.com:443/v1/", "https://api.openai.com"),
    ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),
    ("http://[::1]:11434/v1", "http://[::1]:11434"),
])
def test_keys_are_bound_to_the_origin(url, origin):
    assert origin_of(url) == origin


def test_saved_only_with_opt_in_and_only_for_its_origin():
    kv = FakeKV()
    keys = KeyStore(storage=kv)
    http = FakeHttp(ANSWER)
    plain = OpenAICompatBackend(preset="openai", api_key=KEY, model="m", keys=keys, http=http)
    run(plain.complete(REQUEST))
    assert kv.stores["settings"] == {}  # no opt-in: memory only
    saved = OpenAICompatBackend(preset="openai", api_key=KEY, model="m", remember_key=True, keys=keys, http=http)
    run(saved.complete(REQUEST))
    assert run(keys.origins()) == ["https://api.openai.com"]
    restored = OpenAICompatBackend(preset="openai", model="m", remember_key=True, keys=keys, http=http)
    run(restored.complete(REQUEST))
    assert http.sent[-1]["headers"]["Authorization"] == f"Bearer {KEY}"
    other = OpenAICompatBackend(preset="openrouter", model="m", remember_key=True, keys=keys, http=http)
    with pytest.raises(UsageError, match="no API key is saved for https://openrouter.ai"):
        run(other.complete(REQUEST))
    assert len(http.sent) == 3  # nothing sent without its key
    run(restored.forget_key())
    assert run(keys.origins()) == []
    with pytest.raises(UsageError):
        run(restored.complete(REQUEST))
    for shown in (repr(saved), repr(restored), repr(keys)):
        assert KEY not in shown


def test_clear_forgets_every_origin():
    keys = KeyStore(storage=FakeKV())
    run(keys.save("https://api.openai.com/v1", "k1"))
    run(keys.save("http://localhost:11434/v1", "k2"))
    assert run(keys.load("https://api.openai.com/other")) == "k1"
    run(keys.clear())
    assert run(keys.origins()) == [] and run(keys.load("http://localhost:11434/v1")) is None
    with pytest.raises(UsageError):
        run(keys.save("https://api.openai.com/v1", ""))
