"""A synthetic web-llm model served on 127.0.0.1, the way Hugging Face serves one.

Files live under ``/<org>/<name>/resolve/main/`` (config, tokenizer, tensor manifest, shards of
random bytes) and the model library under ``/libs/``. The tensor manifest is named the way one
web-llm release reads it: ``manifest="ndarray-cache.json"`` for 0.2.79, ``tensor-cache.json`` (the
default) from 0.2.80; the server has no file of the other name, so asking for it is a 404. The
server answers GET, HEAD, OPTIONS and single HTTP ranges with CORS headers, and counts requests and
body bytes per path, so tests can assert what the browser fetched. Faults are set per path:
``drop_after`` closes the connection at byte n of the file (once); ``hold_after`` sends the file up to
byte n and then waits until ``release()`` (``GET /__holding`` says how many responses wait so; with
both at the same n, the drop comes after the release, once the test knows the page has read those
bytes). Both count from the file's start and
act in the response that reaches byte n (a range request starting at or before it), so they fit a
download in range segments as well as one whole GET.

Each file has a strong ``ETag`` and a ``Last-Modified`` (both exposed to the page), and a range
request is honoured only when its ``If-Range`` (if any) still names the current file, as RFC 9110
says: otherwise the whole file comes back with 200. ``change(path)`` replaces a file by other bytes
of the same size with a new ETag and Last-Modified (the manifest is left as it was, like a server
whose file changed under a remembered plan). More faults: ``restart_range`` answers one range
request for the path with 206 and a ``Content-Range`` from byte 0 (a server that ignores where the
range began); ``ignore_if_range`` answers the range of the current file whatever ``If-Range`` says
(a cache in between that drops the header); ``ignore_ranges`` answers every request for the path
with the whole file (200), as a server without range support does; ``unexposed`` names response
headers the page may not read (left out of ``Access-Control-Expose-Headers``); ``change_at`` changes the file
(as ``change(path, seed=5)``) once a response has sent it up to byte n, the rest of that response
still of the old file; every range request is logged in
``range_headers`` as (path, Range, If-Range).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 64 * 1024


@dataclass
class SyntheticModel:
    name: str
    shards: int = 4
    shard_bytes: int = 1 << 20
    org: str = "synth"
    seed: int = 1
    manifest: str = "tensor-cache.json"
    md5: bool = True  # shard records carry "md5sum", as TVM's dump_tensor_cache writes them
    files: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        base = f"/{self.org}/{self.name}/resolve/main/"
        records = []
        for i in range(self.shards):
            data = rng.randbytes(self.shard_bytes + i * 1000)  # unequal sizes: no count can pass by luck
            self.files[f"{base}params_shard_{i}.bin"] = data
            records.append({"dataPath": f"params_shard_{i}.bin", "format": "raw-shard", "nbytes": len(data),
                            "records": [{"name": f"w{i}", "shape": [len(data) // 4], "dtype": "float32",
                                         "format": "f32-to-bf16", "nbytes": len(data) // 4 * 4, "byteOffset": 0}]})
            if self.md5:
                records[-1]["md5sum"] = hashlib.md5(data).hexdigest()
        self.files[base + self.manifest] = json.dumps({"metadata": {"ParamSize": self.shards},
                                                             "records": records}).encode()
        self.files[base + "mlc-chat-config.json"] = json.dumps({
            "model_type": "llama", "context_window_size": 2048, "tokenizer_files": ["tokenizer.json"],
            "conv_template": {"name": "chatml"}}).encode()
        self.files[base + "tokenizer.json"] = json.dumps({"model": {"vocab": {f"t{i}": i for i in range(500)}}}).encode()
        self.files[f"/libs/{self.name}-webgpu.wasm"] = b"\0asm\1\0\0\0" + rng.randbytes(30_000)

    @property
    def base_path(self) -> str:
        return f"/{self.org}/{self.name}/resolve/main/"

    @property
    def manifest_path(self) -> str:
        return self.base_path + self.manifest

    @property
    def total_bytes(self) -> int:
        return sum(len(v) for v in self.files.values())

    def shard_path(self, i: int) -> str:
        return f"{self.base_path}params_shard_{i}.bin"


class ModelServer:
    def __init__(self, *models: SyntheticModel) -> None:
        self.files: dict[str, bytes] = {}
        for m in models:
            self.files.update(m.files)
        self.original = dict(self.files)
        self._etags: dict[str, tuple[bytes, str]] = {}
        self.versions: Counter[str] = Counter()  # how often each file was changed (its ETag, Last-Modified)
        self.requests: Counter[str] = Counter()
        self.ranges: list[tuple[str, int]] = []  # (path, first byte) of every range request honoured
        self.range_headers: list[tuple[str, str, str | None]] = []  # (path, Range, If-Range) of every one asked
        self.restart_range: set[str] = set()
        self.ignore_if_range: set[str] = set()
        self.ignore_ranges: set[str] = set()
        self.unexposed: set[str] = set()  # response headers not exposed to the page (CORS)
        self.sent: Counter[str] = Counter()
        self.drop_after: dict[str, int] = {}
        self.hold_after: dict[str, int] = {}
        self._released = threading.Event()
        self.change_at: dict[str, int] = {}
        self._lock = threading.Lock()
        self.holding = 0  # responses waiting at their hold_after point now (GET /__holding says it)
        self._by_method: Counter[tuple[str, str]] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def record(self, model: SyntheticModel, **extra) -> dict:
        """The web-llm model record of ``model`` on this server (model URL without resolve/main)."""
        return {"model": f"{self.origin}/{model.org}/{model.name}", "model_id": model.name,
                "model_lib": f"{self.origin}/libs/{model.name}-webgpu.wasm", "vram_required_MB": 300,
                "low_resource_required": True, "overrides": {"context_window_size": 2048}, **extra}

    def url(self, path: str) -> str:
        return self.origin + path

    def _fault(self, faults: dict[str, int], path: str, start: int, length: int) -> int | None:
        """The body offset at which a fault set at byte n of ``path`` acts in a response carrying bytes
        ``start``.. of it (n - start), taken once; None when the fault is not in this response."""
        with self._lock:
            at = faults.get(path)
            if at is None or not start <= at < start + length:
                return None
            del faults[path]
            return at - start

    def release(self) -> None:
        self._released.set()

    def etag(self, path: str) -> str:
        data = self.files[path]
        known = self._etags.get(path)
        if known is None or known[0] is not data:  # hashed once per content, not per request
            known = self._etags[path] = (data, '"' + hashlib.sha256(data).hexdigest()[:20] + '"')
        return known[1]

    def last_modified(self, path: str) -> str:
        from email.utils import formatdate

        return formatdate(1_700_000_000 + 3600 * self.versions[path], usegmt=True)

    def change(self, path: str, seed: int = 99) -> bytes:
        """Serve other bytes of the same size at ``path`` (a new ETag and Last-Modified); returns them."""
        data = random.Random(seed).randbytes(len(self.files[path]))
        with self._lock:
            self.files[path] = data
            self.versions[path] += 1
        return data

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.sent.clear()
            self.ranges.clear()
            self._by_method.clear()
            self.drop_after.clear()
            self.hold_after.clear()
            self.range_headers.clear()
            self.restart_range.clear()
            self.ignore_if_range.clear()
            self.ignore_ranges.clear()
            self.unexposed.clear()
            self.files.update(self.original)
            self.versions.clear()
            self._released = threading.Event()
            self.change_at.clear()

    def body_requests(self) -> Counter[str]:
        """GET requests per path (HEAD and preflights excluded)."""
        return Counter({p: n for (m, p), n in self._by_method.items() if m == "GET"})

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in separate writes: with Nagle's algorithm on, the body would wait
            # for the client's delayed ACK (tens of ms per request), which no real file server does.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _cors(self):
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Headers", "Range, If-Range")
                exposed = ("Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified")
                self.send_header("Access-Control-Expose-Headers",
                                 ", ".join(h for h in exposed if h not in server.unexposed))

            def _peer_closed(self) -> bool:
                try:
                    return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
                except BlockingIOError:
                    return False
                except OSError:
                    return True

            def do_OPTIONS(self):
                self.send_response(204)
                self._cors()
                self.send_header("Access-Control-Allow-Methods", "GET, HEAD")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            def _serve(self, head: bool):
                path = self.path.split("?")[0]
                with server._lock:
                    server.requests[path] += 1
                    server._by_method[(self.command, path)] += 1
                if path == "/__holding":  # for a test's wait (page.wait_for_function), not a model file
                    said = str(server.holding).encode()
                    self.send_response(200)
                    self._cors()
                    self.send_header("Cache-Control", "no-store")
                    self.send_header("Content-Length", str(len(said)))
                    self.end_headers()
                    self.wfile.write(said)
                    return
                data = server.files.get(path)
                if data is None:
                    self.send_response(404)
                    self._cors()
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start = 0
                etag, modified = server.etag(path), server.last_modified(path)
                asked, if_range = self.headers.get("Range"), self.headers.get("If-Range")
                match = None if path in server.ignore_ranges else re.fullmatch(r"bytes=(\d+)-(\d*)", asked or "")
                if asked and not head:
                    with server._lock:
                        server.range_headers.append((path, asked, if_range))
                current = (if_range is None or if_range in (etag, modified)  # RFC 9110 13.1.5, strong
                           or path in server.ignore_if_range)
                if match and current and path in server.restart_range:
                    server.restart_range.discard(path)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")
                    body = data
                elif match and current:
                    start = int(match[1])
                    end = int(match[2]) if match[2] else len(data) - 1
                    with server._lock:
                        server.ranges.append((path, start))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                    body = memoryview(data)[start:end + 1]  # no copy: real servers send from the file
                else:
                    self.send_response(200)
                    body = data
                self._cors()
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", modified)
                ctype = "application/json" if path.endswith(".json") else "application/octet-stream"
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if head:
                    return
                drop = server._fault(server.drop_after, path, start, len(body))
                hold = server._fault(server.hold_after, path, start, len(body))
                swap = server._fault(server.change_at, path, start, len(body))
                sent = 0
                try:
                    while sent < len(body):
                        if swap is not None and sent >= swap:
                            server.change(path, seed=5)  # this response goes on with the old bytes
                            swap = None
                        if hold is not None and sent >= hold:
                            with server._lock:
                                server.holding += 1
                            server._released.wait()
                            with server._lock:
                                server.holding -= 1
                            hold = None
                            if self._peer_closed():  # the page gave up meanwhile: send nothing more
                                self.close_connection = True
                                return
                        if drop is not None and sent >= drop:
                            self.connection.shutdown(socket.SHUT_RDWR)
                            self.close_connection = True
                            return
                        limit = min(len(body), *(n for n in (drop, hold, swap) if n is not None and n > sent), sent + CHUNK)
                        self.wfile.write(body[sent:limit])
                        with server._lock:
                            server.sent[path] += limit - sent
                        sent = limit
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        return Handler
