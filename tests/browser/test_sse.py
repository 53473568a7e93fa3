"""SSE edge cases, in the page's real fetch + vendored eventsource-parser + OpenAICompatStream, against
a raw-socket server on 127.0.0.1 that writes awkward streams byte for byte."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from tests.browser.conftest import PagePython, open_app

CORS = (b"Access-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: POST, GET\r\n"
        b"Access-Control-Allow-Headers: content-type, authorization\r\n")


def frame(content: str | None = None, finish: str | None = None, eol: str = "\n") -> bytes:
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {} if content is None else {"content": content},
                          "finish_reason": finish}]}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}{eol}{eol}".encode()


def reasoning_frame(text: str) -> bytes:
    """A chunk of a server that parses the thinking itself (vLLM, llama.cpp: ``reasoning_content``)."""
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
             "choices": [{"index": 0, "delta": {"reasoning_content": text}, "finish_reason": None}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def split_inside(body: bytes, *needles: bytes) -> list[bytes]:
    """``body`` cut in the middle of each needle (a multi-byte character, a field name)."""
    cuts = sorted(body.index(n) + len(n) // 2 for n in needles)
    return [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]


DONE = b"data: [DONE]\n\n"
SPLIT_BODY = frame("Héllo") + frame(" wörld 👋") + frame(finish="stop") + DONE
SCENARIOS: dict[str, list[bytes]] = {
    # One frame split mid-line, mid "data:", inside a 2-byte and a 4-byte UTF-8 character.
    "split": split_inside(SPLIT_BODY, "é".encode(), b"data:", "👋".encode(), b"finish_reason"),
    "comments-crlf": [b": keep-alive\r\n\r\n", frame("one", eol="\r\n"), b":ping\r\n\r\n",
                      frame(" two", eol="\r\n"), frame(finish="stop", eol="\r\n"), b"data: [DONE]\r\n\r\n"],
    "done-ends-it": [frame("kept"), frame(finish="stop"), DONE, frame(" never shown")],
    "no-trailing-newline": [frame("last"), frame(" words"), frame(finish="stop"), b"data: [DONE]"],
    "event-error": [frame("Hi"), b'event: error\ndata: {"error": {"message": "upstream overloaded"}}\n\n'],
    "json-error": [frame("Hi"), b'data: {"error": {"message": "Rate limit reached", "code": 429}}\n\n'],
    # Thinking as reasoning_content from the server, or as a <think> block in content (split here).
    "reasoning-field": [reasoning_frame("Let me"), reasoning_frame(" see."), frame("Yes."), frame(finish="stop"), DONE],
    "think-in-content": [frame("<thi"), frame("nk>\nHmm"), frame(", ok.\n</th"), frame("ink>\n\nNo."),
                         frame(finish="stop"), DONE],
}


class RawSSEServer:
    """Answers POST /<scenario>/v1/chat/completions with that scenario's pieces, one TCP write each."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.origin = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket):
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ")
            length = next((int(v) for k, v in (line.split(": ", 1) for line in lines[1:])
                           if k.lower() == "content-length"), 0)
            while len(body) < length:
                body += conn.recv(65536)
            if method == "OPTIONS":
                conn.sendall(b"HTTP/1.1 204 No Content\r\n" + CORS + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                         + CORS + b"Connection: close\r\n\r\n")
            try:
                for piece in SCENARIOS[path.split("/")[1]]:
                    conn.sendall(piece)
                    time.sleep(0.03)  # pacing, so each piece leaves as its own TCP segment (not a wait on the client)
                conn.shutdown(socket.SHUT_WR)
            except OSError:  # broken pipe, reset, not connected: the client stopped reading ([DONE], an error)
                pass

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def sse_server():
    server = RawSSEServer()
    yield server
    server.close()


def test_tricky_streams_yield_exactly_the_right_text_or_typed_error(page, site, sse_server):
    watch = open_app(page, site, allowed=(sse_server.origin,))
    py = PagePython(page)
    py(f"""
from app.client import Client
from app.backends.openai_compat import OpenAICompatBackend

async def collect(name):
    backend = OpenAICompatBackend(base_url="{sse_server.origin}/" + name + "/v1", model="m")
    s = await Client(backend).chat.completions.create(messages=[{{"role": "user", "content": "x"}}], stream=True)
    pieces = []
    try:
        async for chunk in s:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    except Exception as error:
        return ["".join(pieces), s.finish_reason, type(error).__name__, str(error)]
    if s.reasoning:
        return ["".join(pieces), s.finish_reason, "reasoning", s.reasoning]
    return ["".join(pieces), s.finish_reason, None, None]
""")
    got = {name: py(f"await collect({name!r})") for name in SCENARIOS}
    assert got["split"] == ["Héllo wörld 👋", "stop", None, None]
    assert got["comments-crlf"] == ["one two", "stop", None, None]
    assert got["done-ends-it"] == ["kept", "stop", None, None]
    assert got["no-trailing-newline"] == ["last words", "stop", None, None]
    text, finish, error, message = got["event-error"]
    assert (text, finish, error) == ("Hi", None, "ServerError") and "upstream overloaded" in message
    text, finish, error, message = got["json-error"]
    assert (text, finish, error) == ("Hi", None, "RateLimited") and "Rate limit reached" in message
    assert got["reasoning-field"] == ["Yes.", "stop", "reasoning", "Let me see."]
    assert got["think-in-content"] == ["No.", "stop", "reasoning", "Hmm, ok."]
    watch.assert_clean()
