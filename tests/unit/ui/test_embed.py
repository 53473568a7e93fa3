"""The host API's translation between host messages and the chat (app/ui/embed.py) under CPython."""

from app.ui.chat import Message
from app.ui.embed import HostBridge, host_origin
from app.ui.store import Signal


class FakeChat:
    def __init__(self):
        self.streaming = Signal(None)
        self.sent = []

    async def send(self, text):
        self.sent.append(text)

    async def stop(self):
        self.sent.append("<stop>")


def bridge():
    chat, out, spawned = FakeChat(), [], []
    b = HostBridge(chat, out.append, spawned.append)
    return chat, b, out, spawned


def test_host_origin_accepts_only_an_origin():
    assert host_origin("https://a.example:8443") == "https://a.example:8443"
    assert host_origin("https://a.example/") == "https://a.example"
    assert host_origin("https://a.example/page") is None
    assert host_origin("javascript:alert(1)") is None and host_origin(None) is None


def test_a_streamed_answer_becomes_start_deltas_and_done():
    chat, b, out, _ = bridge()
    reply = Message("assistant", status="streaming")
    chat.streaming.set(reply)
    reply.append("Hel")
    reply.append("lo")
    reply.meta.set({"backend": "webllm", "tokens": 2, "nested": {"x": 1}})
    reply.status.set("done")
    chat.streaming.set(None)
    assert [(m["type"], m.get("text")) for m in out] == [("start", None), ("delta", "Hel"), ("delta", "lo"),
                                                         ("done", "Hello")]
    assert out[-1]["meta"] == {"backend": "webllm", "tokens": 2} and all(m["source"] == "webgpu-chat" for m in out)
    reply.append("!")  # after the end: nothing more is sent
    assert len(out) == 4


def test_errors_and_bad_messages_are_answered_with_error_events():
    chat, b, out, spawned = bridge()
    b.handle({"type": "send", "text": "  "})
    b.handle({"type": "nope"})
    assert [m["error"] for m in out] == ["InvalidRequest", "UsageError"] and not spawned
    b.handle({"type": "send", "text": "hi"})
    assert len(spawned) == 1
    spawned[0].close()
    reply = Message("assistant", status="streaming")
    chat.streaming.set(reply)
    b.handle({"type": "send", "text": "again"})  # busy
    assert out[-1]["error"] == "UsageError"
    reply.meta.set({"error": "NoBackendAvailable", "error_message": "no model"})
    reply.status.set("error")
    chat.streaming.set(None)
    assert out[-1] == {"source": "webgpu-chat", "type": "error", "id": reply.id, "error": "NoBackendAvailable",
                       "message": "no model"}


def test_the_app_runs_only_where_it_may_be_framed():
    from app.ui.embed import refusal

    own, host = "https://me.github.io", "https://blog.example"
    assert refusal(own, [], ()) is None  # its own tab
    assert refusal(own, [own], ()) is None  # framed by itself
    assert "cannot run inside https://evil.example" in refusal(own, ["https://evil.example"], (host,))
    assert refusal(own, [host], (host,)) is None
    # An allowed host framed by a stranger lends it nothing; an unknown framer is a stranger.
    assert "https://evil.example" in refusal(own, [host, "https://evil.example"], (host,))
    assert refusal(own, None, (host,)) is not None


def test_embedded_conversations_live_apart_from_the_users():
    from app.ui.chat import ScopedKv
    from app.ui.embed import conversation_scope
    from tests.unit.conftest import run

    class Memory:
        def __init__(self):
            self.data = {}

        async def put(self, key, value):
            self.data[key] = value

        async def delete(self, key):
            self.data.pop(key, None)

        async def items(self):
            return dict(self.data)

    store = Memory()
    mine = ScopedKv(store, conversation_scope(None))
    blog = ScopedKv(store, conversation_scope("https://blog.example"))
    other = ScopedKv(store, conversation_scope("https://other.example"))

    async def go():
        await mine.put("a1", {"id": "a1"})
        await blog.put("b1", {"id": "b1"})
        return await mine.items(), await blog.items(), await other.items()

    assert run(go()) == ({"a1": {"id": "a1"}}, {"b1": {"id": "b1"}}, {})
    assert set(store.data) == {"a1", "embed:https://blog.example|b1"}


def test_embed_hosts_are_exact_origins():
    import pytest

    from app.config import PageConfig
    from app.errors import UsageError

    config = PageConfig.from_dict({"embed": {"allowed_hosts": ["https://Blog.example/", "http://127.0.0.1:8001"]}})
    assert config.embed_hosts == ("https://blog.example", "http://127.0.0.1:8001")
    assert PageConfig.from_dict({}).embed_hosts == ()
    for bad in (["*"], ["https://*.example"], ["https://blog.example/path"], "https://x", ["ftp://x"]):
        with pytest.raises(UsageError, match="allowed_hosts"):
            PageConfig.from_dict({"embed": {"allowed_hosts": bad}})
