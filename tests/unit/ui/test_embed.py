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
