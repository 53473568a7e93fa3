#!/usr/bin/env python3
"""Turn this repository into a self-contained static site in ``dist/``.

    python build.py                      build dist/ (npm ci + pip download when needed)
    python build.py serve [--port N]     build if stale, serve dist/ on 127.0.0.1
    python build.py test [PYTEST ARGS]   install test dependencies if missing, build, run pytest
    python build.py bench [--short]      run every script in bench/, write README's "Performance" table
                        [--table]        (only the three scripts the table needs)
    python build.py --web-llm 0.2.79     vendor another web-llm release (any command)
    python build.py --out DIR            build into DIR instead of dist/ (e.g. a second release beside it)

Standard library only; npm and pip run as subprocesses. Nothing in dist/ points outside its own
folder, so it can be served from any sub-path (GitHub Pages project sites).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import shutil
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DIST = ROOT / "dist"
CACHE = ROOT / ".cache"
VENDOR = Path("static") / "vendor"

# Pure-Python (and one pyemscripten) wheels loaded lazily by the app, pinned. Pyodide's npm
# package ships no wheels, so these come from PyPI and replace the entries of pyodide-lock.json.
WHEELS = {
    "micropip": "0.11.1",
    "pydantic": "2.14.4",
    "pydantic-core": "2.50.5",
    "typing-extensions": "4.16.0",
    "annotated-types": "0.8.0",
    "typing-inspection": "0.4.5",
}
PYODIDE_PLATFORM = "pyemscripten_2026_0_wasm32"
PYODIDE_FILES = ("pyodide.mjs", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip")
TEST_REQUIREMENTS = ROOT / "tests" / "requirements.txt"


class BuildError(Exception):
    """A build step failed in a way the user can fix; the message says how."""


# --------------------------------------------------------------------------- tools


def _need(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BuildError(f"`{tool}` was not found on PATH. {hint}")
    return path


def _run(cmd: list[str], **kw) -> None:
    try:
        subprocess.run(cmd, check=True, **kw)
    except FileNotFoundError as exc:
        raise BuildError(f"could not run {cmd[0]!r}: {exc}") from exc
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"`{' '.join(cmd)}` failed with exit code {exc.returncode}") from exc


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- npm


def npm_install() -> Path:
    """``npm ci`` unless node_modules already matches package-lock.json."""
    _need("node", "Install Node.js 18+ (e.g. `apt-get install nodejs npm`).")
    npm = _need("npm", "Install npm (it ships with Node.js).")
    lock = ROOT / "package-lock.json"
    if not lock.exists():
        raise BuildError("package-lock.json is missing: run `npm install` once and commit it.")
    stamp = ROOT / "node_modules" / ".build-stamp"
    want = _sha256(lock)
    if not stamp.exists() or stamp.read_text() != want:
        print("build: npm ci", flush=True)
        _run([npm, "ci", "--no-audit", "--no-fund"], cwd=ROOT)
        stamp.write_text(want)
    return ROOT / "node_modules"


def web_llm_dir(version: str | None) -> Path:
    """The web-llm package to vendor: the pinned one, or ``version`` installed aside."""
    modules = npm_install()
    if version is None:
        return modules / "@mlc-ai" / "web-llm"
    prefix = CACHE / f"web-llm-{version}"
    pkg = prefix / "node_modules" / "@mlc-ai" / "web-llm"
    if not (pkg / "lib" / "index.js").exists():
        print(f"build: npm install @mlc-ai/web-llm@{version}", flush=True)
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "package.json").write_text('{"private": true}')
        _run([_need("npm", "Install npm."), "install", "--no-audit", "--no-fund", "--no-save",
              "--ignore-scripts", f"@mlc-ai/web-llm@{version}"], cwd=prefix)
    return pkg


# --------------------------------------------------------------------------- wheels


def download_wheels() -> list[Path]:
    """Fetch the pinned wheels from PyPI into .cache/wheels (once)."""
    dest = CACHE / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    missing = [n for n, v in WHEELS.items() if not _find_wheel(dest, n, v)]
    if missing:
        print(f"build: pip download {' '.join(missing)}", flush=True)
        base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                "--only-binary=:all:", "--python-version", "3.14", "-d", str(dest)]
        for name in missing:
            spec = f"{name}=={WHEELS[name]}"
            extra = []
            if name == "pydantic-core":
                extra = ["--platform", PYODIDE_PLATFORM, "--implementation", "cp", "--abi", "cp314"]
            _run(base + extra + [spec])
    return [_find_wheel(dest, n, v) for n, v in WHEELS.items()]  # type: ignore[misc]


def _find_wheel(folder: Path, name: str, version: str) -> Path | None:
    stem = name.replace("-", "_")
    hits = sorted(folder.glob(f"{stem}-{version}-*.whl"))
    return hits[0] if hits else None


def adjust_lock(lock: dict, wheels: list[Path]) -> dict:
    """Keep only the packages we vendor, pointing at the wheels we ship with their real hashes.

    Pyodide checks each wheel against the lock's sha256, so the lock must describe the files in
    dist/ exactly; packages we do not ship are dropped so a missing one fails by name, at once.
    """
    packages = {}
    for wheel in wheels:
        name, version = wheel.name.split("-")[:2]
        key = _lock_key(name)  # keyed like Pyodide's own lock: normalised, '-' separated
        old = lock["packages"].get(key) or lock["packages"].get(name) or {}
        packages[key] = {
            "name": old.get("name", key),
            "version": version,
            "file_name": wheel.name,
            "install_dir": "site",
            "sha256": _sha256(wheel),
            "package_type": "package",
            "imports": old.get("imports", [name]),
            "depends": list(old.get("depends", [])),
            "unvendored_tests": False,
        }
    for entry in packages.values():
        entry["depends"] = [d for d in entry["depends"] if _lock_key(d) in packages]
    return {**lock, "packages": packages}


def _lock_key(name: str) -> str:
    return name.replace("_", "-").lower()


# --------------------------------------------------------------------------- build


def sources() -> list[Path]:
    files = [ROOT / "index.html", ROOT / "pyscript.toml", ROOT / "package-lock.json", ROOT / "build.py"]
    for folder in ("app", "static"):
        files += [p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


CONFIG_ATTR = 'config="./pyscript.toml"'
CONFIG_PRELOAD = '  <link rel="preload" href="./pyscript.toml" as="fetch" crossorigin>\n'


def inline_config(page: str, toml_file: Path) -> str:
    """``index.html`` with ``pyscript.toml`` in its ``<script type="py">`` as inline JSON: PyScript
    then neither fetches the file nor imports its TOML parser before it starts Pyodide (both were on
    start-up's critical path). pyscript.toml stays the one place the configuration is written.

    Its ``plugins`` exclusions are also given to MicroPython's side of PyScript (an ``<mpy-config>``):
    PyScript loads the plugins once per interpreter type, and a type without a configuration loads
    them all, so the page fetched and ran the editor, terminal, game and donkey plugins anyway."""
    import html
    import tomllib

    if CONFIG_ATTR not in page or CONFIG_PRELOAD not in page or "</body>" not in page:
        raise BuildError(f"index.html no longer names its configuration as {CONFIG_ATTR}")
    settings = tomllib.loads(toml_file.read_text())
    config = json.dumps(settings, separators=(",", ":"))
    mpy = json.dumps({"plugins": settings.get("plugins", [])}, separators=(",", ":"))
    page = page.replace(CONFIG_PRELOAD, "").replace(CONFIG_ATTR, f'config="{html.escape(config)}"')
    return page.replace("</body>", f"  <mpy-config hidden>{html.escape(mpy, quote=False)}</mpy-config>\n</body>", 1)


# Build time, in Node with the vendored Pyodide: not copied into the site.
PYTHON_BUILD = "python-build.mjs"
BUILD_ONLY = (PYTHON_BUILD,)


def python_build(pyodide: Path, bytecode: Path) -> None:
    """One start of the vendored Pyodide, in Node (static/python-build.mjs), makes what spares the page
    Python work in every visit: a memory snapshot of the started interpreter (``python-snapshot.gz``
    beside Pyodide; the page restores it, static/python-start.js) and the app's modules compiled to
    bytecode by that same Python (``bytecode/app/.../__pycache__/*.pyc``, for :func:`zip_app`)."""
    node = _need("node", "Install Node.js 18+ (e.g. `apt-get install nodejs npm`).")
    _run([node, str(ROOT / "static" / PYTHON_BUILD), str(pyodide), str(ROOT), str(pyodide / "python-snapshot.gz"),
          str(bytecode), *app_stdlib_imports()])


def app_stdlib_imports() -> list[str]:
    """The standard-library modules the app imports anywhere (found in its source): the snapshot
    holds them imported, so the page does not import them again in every visit (~0.1 s of the
    chat's mount beyond what Pyodide itself imports)."""
    import ast

    names: set[str] = set()
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return sorted(n for n in names if n.split(".")[0] in sys.stdlib_module_names and n != "__future__")


def zip_app(dest: Path, bytecode: Path | None = None) -> None:
    """The ``app`` package as one archive: one request at start-up instead of one per module; with
    ``bytecode`` (:func:`python_build`), each module's .pyc beside its source."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((ROOT / "app").rglob("*.py")):
            zf.write(path, path.relative_to(ROOT).as_posix())
        if bytecode is not None:
            for path in sorted(bytecode.rglob("*.pyc")):
                zf.write(path, path.relative_to(bytecode).as_posix())


def build(web_llm: str | None = None, force: bool = False, out: Path | None = None) -> Path:
    """Build the site into ``out`` (default dist/) unless it is fresh; returns its folder.

    Two outputs (``build(out=dist)`` and ``build("0.2.79", out=other)``) live side by side, each with
    its own stamp, so tests can serve two web-llm releases in one session without rebuilding either.
    """
    out = Path(out) if out is not None else DIST
    stamp_file = out / ".stamp"
    want = _digest(sources()) + f":{web_llm}"
    if not force and stamp_file.exists() and stamp_file.read_text() == want:
        return out

    modules = npm_install()
    wllm = web_llm_dir(web_llm)
    wheels = download_wheels()

    tmp = out.parent / f"{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    shutil.copy2(ROOT / "pyscript.toml", tmp / "pyscript.toml")
    shutil.copytree(ROOT / "static", tmp / "static", ignore=shutil.ignore_patterns("vendor", *BUILD_ONLY))

    vendor = tmp / VENDOR
    pyo = vendor / "pyodide"
    pyo.mkdir(parents=True)
    for name in PYODIDE_FILES:
        shutil.copy2(modules / "pyodide" / name, pyo / name)
    for wheel in wheels:
        shutil.copy2(wheel, pyo / wheel.name)
    lock = json.loads((modules / "pyodide" / "pyodide-lock.json").read_text())
    (pyo / "pyodide-lock.json").write_text(json.dumps(adjust_lock(lock, wheels), indent=1))
    with tempfile.TemporaryDirectory() as bytecode:
        python_build(pyo, Path(bytecode))
        zip_app(tmp / "app.zip", Path(bytecode))

    shutil.copytree(modules / "@pyscript" / "core" / "dist", vendor / "pyscript",
                    ignore=shutil.ignore_patterns("*.map"))
    (vendor / "web-llm").mkdir()
    shutil.copy2(wllm / "lib" / "index.js", vendor / "web-llm" / "index.js")
    # SSE framing for OpenAI-compatible endpoints (loaded only when a cloud backend streams).
    shutil.copytree(modules / "eventsource-parser" / "dist", vendor / "eventsource-parser",
                    ignore=shutil.ignore_patterns("*.map", "*.d.ts"))
    vendor_renderer(modules, vendor)
    package, folder, files = PDF_READER
    (vendor / folder).mkdir()
    for rel in files:
        shutil.copy2(modules / package / rel, vendor / folder / Path(rel).name)

    versions = {
        "pyodide": _pkg_version(modules / "pyodide"),
        "python": lock["info"]["python"],
        "@pyscript/core": _pkg_version(modules / "@pyscript" / "core"),
        "@mlc-ai/web-llm": _pkg_version(wllm),
        "eventsource-parser": _pkg_version(modules / "eventsource-parser"),
        **{name: _pkg_version(modules / name) for name in RENDERER},
        PDF_READER[0]: _pkg_version(modules / PDF_READER[0]),
        "wheels": {w.name.split("-")[0]: w.name.split("-")[1] for w in wheels},
    }
    (vendor / "VERSIONS.json").write_text(json.dumps(versions, indent=2) + "\n")
    (tmp / "index.html").write_text(inline_config((ROOT / "index.html").read_text(), ROOT / "pyscript.toml"))
    app_icons(tmp / "static" / "icons")
    service_worker(tmp)

    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    stamp_file.write_text(want)
    print(f"build: {_shown(out)} ready (web-llm {versions['@mlc-ai/web-llm']}, "
          f"pyodide {versions['pyodide']}, pyscript {versions['@pyscript/core']})", flush=True)
    return out


def _shown(folder: Path) -> str:
    try:
        return f"{folder.relative_to(ROOT)}/"
    except ValueError:
        return f"{folder}/"


# --------------------------------------------------------------------------- icons


ACCENT = (0x3C, 0x5B, 0xD6)
ICONS = {"icon-192.png": (192, False), "icon-512.png": (512, False), "icon-maskable-512.png": (512, True)}


def _png(width: int, height: int, rows: list[bytes]) -> bytes:
    """An 8-bit RGBA PNG of ``rows`` (each ``width * 4`` bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + row for row in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _inside_round_rect(u: float, v: float, x0: float, y0: float, x1: float, y1: float, r: float) -> bool:
    cx, cy = min(max(u, x0 + r), x1 - r), min(max(v, y0 + r), y1 - r)
    return x0 <= u <= x1 and y0 <= v <= y1 and (u - cx) ** 2 + (v - cy) ** 2 <= r * r


def icon(size: int, maskable: bool) -> bytes:
    """The app's icon, drawn here (nothing downloaded): a white speech bubble with three dots on the
    accent colour; ``maskable`` fills the square and keeps the drawing in the central safe zone."""
    scale, offset = (0.8, 0.1) if maskable else (1.0, 0.0)
    white, clear, accent = (255, 255, 255, 255), (0, 0, 0, 0), (*ACCENT, 255)
    rows = []
    for y in range(size):
        row = bytearray()
        for x in range(size):
            u, v = (x + 0.5) / size, (y + 0.5) / size
            if not maskable and not _inside_round_rect(u, v, 0, 0, 1, 1, 0.22):
                row += bytes(clear)
                continue
            su, sv = (u - offset) / scale, (v - offset) / scale  # drawing coordinates
            pixel = accent
            bubble = _inside_round_rect(su, sv, 0.2, 0.24, 0.8, 0.66, 0.12)
            tail = 0.3 <= su <= 0.46 and 0.6 <= sv <= 0.8 and (su - 0.3) >= (sv - 0.6) * 0.8
            if bubble or tail:
                pixel = white
                if any((su - cx) ** 2 + (sv - 0.45) ** 2 <= 0.045 ** 2 for cx in (0.36, 0.5, 0.64)):
                    pixel = accent
            row += bytes(pixel)
        rows.append(bytes(row))
    return _png(size, size, rows)


def app_icons(folder: Path) -> None:
    """static/icons/: what static/manifest.webmanifest and index.html name (the browser's "Install")."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (size, maskable) in ICONS.items():
        (folder / name).write_bytes(icon(size, maskable))


def service_worker(site: Path) -> None:
    """static/sw.js -> sw.js at the site's root (scope: the whole app), with the app shell's files
    and a version (their digest) filled in: a new build is a new worker with a new cache."""
    template = (site / "static" / "sw.js").read_text()
    (site / "static" / "sw.js").unlink()
    files = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode() + b"\0" + (site / name).read_bytes())
    shell = json.dumps({"version": digest.hexdigest()[:16], "files": files})
    start, end = template.index("/*SHELL*/"), template.index("/*END*/") + len("/*END*/")
    (site / "sw.js").write_text(template[:start] + shell + template[end:])


# Rendering model output (loaded by static/render.js on first use): npm package -> (folder in
# static/vendor, files copied from the package).
RENDERER = {
    "marked": ("marked", ["lib/marked.esm.js", "LICENSE"]),
    "dompurify": ("dompurify", ["dist/purify.es.mjs", "LICENSE"]),
    "@highlightjs/cdn-assets": ("highlight", ["es/highlight.min.js", "styles/github.min.css",
                                              "styles/github-dark.min.css", "LICENSE"]),
    # Math (static/math.js, imported only when an answer has math): the ES module, its stylesheet
    # and the woff2 fonts (the first format its @font-face rules name, which every browser that
    # runs this app reads; the woff/ttf fallbacks are never fetched).
    "katex": ("katex", ["dist/katex.mjs", "dist/katex.min.css", "LICENSE"]),
}
RENDERER_FONTS = {"katex": ("dist/fonts", "*.woff2")}
# The PDF text extractor of the Files sheet (static/pdf.js, imported only when a PDF is added): pdf.js's
# ES module and its worker (run as a module Worker of this origin: worker-src 'self').
PDF_READER = ("pdfjs-dist", "pdfjs", ["build/pdf.min.mjs", "build/pdf.worker.min.mjs", "LICENSE"])


def vendor_renderer(modules: Path, vendor: Path) -> None:
    """marked, DOMPurify, highlight.js's browser build and KaTeX, flat in one folder each (KaTeX's
    fonts in ``fonts/`` beside its stylesheet, where its ``url(fonts/...)`` looks)."""
    for package, (folder, files) in RENDERER.items():
        (vendor / folder).mkdir()
        for rel in files:
            shutil.copy2(modules / package / rel, vendor / folder / Path(rel).name)
        if package in RENDERER_FONTS:
            rel, pattern = RENDERER_FONTS[package]
            (vendor / folder / "fonts").mkdir()
            fonts = sorted((modules / package / rel).glob(pattern))
            if not fonts:
                raise BuildError(f"{package}: no {pattern} under {rel}")
            for font in fonts:
                shutil.copy2(font, vendor / folder / "fonts" / font.name)


def _pkg_version(folder: Path) -> str:
    return json.loads((folder / "package.json").read_text())["version"]


# --------------------------------------------------------------------------- serve


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    """Serves ``root`` under ``prefix`` (e.g. ``/repo-name/``); records every request path."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
        ".json": "application/json", ".toml": "application/toml", ".whl": "application/zip",
    }

    def __init__(self, *args, prefix: str = "/", log: list | None = None,
                 overlay: dict[str, Path] | None = None, **kw):
        self.prefix = prefix
        self.log = log
        self.overlay = overlay or {}
        super().__init__(*args, **kw)

    def translate_path(self, path: str) -> str:
        if not path.startswith(self.prefix):
            return "/nonexistent"
        rel = path[len(self.prefix):].split("?", 1)[0].split("#", 1)[0]
        if rel in self.overlay:  # tests swap single files (e.g. the engine worker) without a rebuild
            return str(self.overlay[rel])
        return super().translate_path("/" + rel)

    def do_GET(self):  # noqa: N802 (http.server naming)
        if self.log is not None:
            self.log.append(self.path)
        if self.path == self.prefix.rstrip("/") and self.prefix != "/":
            self.send_response(301)
            self.send_header("Location", self.prefix)
            self.end_headers()
            return
        super().do_GET()

    def end_headers(self):
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, *args):  # quiet: tests and the CLI print what matters
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A browser closing its connections early is normal; anything else is worth printing.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


def make_server(root: Path, port: int = 0, prefix: str = "/", log: list | None = None,
                overlay: dict[str, Path] | None = None) -> Server:
    """A threaded static server on 127.0.0.1 (port 0: any free port).

    ``overlay`` maps a path relative to ``prefix`` (``"static/webllm-worker.js"``) to a file served
    in its place.
    """
    if not prefix.startswith("/") or not prefix.endswith("/"):
        raise BuildError(f"prefix must start and end with '/', got {prefix!r}")
    handler = functools.partial(StaticHandler, directory=str(root), prefix=prefix, log=log,
                                overlay=overlay)
    return Server(("127.0.0.1", port), handler)


def serve(port: int, web_llm: str | None, prefix: str) -> None:
    root = build(web_llm)
    server = make_server(root, port, prefix)
    print(f"Serving dist/ at http://127.0.0.1:{server.server_address[1]}{prefix}  (Ctrl+C to stop)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def start_in_thread(server: Server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- test


def install_test_deps() -> None:
    """pip install tests/requirements.txt unless every pinned version is already installed."""
    from importlib import metadata

    pins = [line.split("#")[0].strip() for line in TEST_REQUIREMENTS.read_text().splitlines()]
    pins = [p for p in pins if p]
    def installed(pin: str) -> bool:
        name, _, version = pin.partition("==")
        name = name.split("[")[0]
        try:
            return metadata.version(name) == version
        except metadata.PackageNotFoundError:
            return False
    if not all(installed(p) for p in pins):
        print("build: pip install -r tests/requirements.txt", flush=True)
        _run([sys.executable, "-m", "pip", "install", "--quiet", "-r", str(TEST_REQUIREMENTS)])


SYSTEM_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
APP_BROWSERS = ("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
                "/Applications/Chromium.app/Contents/MacOS/Chromium")


def _playwright_chromium() -> str | None:
    """The Chromium ``python -m playwright install chromium`` put in place, if it did."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as pw:
            path = pw.chromium.executable_path
    except Exception:  # noqa: BLE001 - no driver, no browser: not found
        return None
    return path if path and Path(path).exists() else None


def find_browser() -> str:
    """The browser the tests drive: ``CHROMIUM`` if set, else a system Chromium or Chrome, else
    Playwright's own Chromium. BuildError saying how to get one when there is none."""
    chosen = os.environ.get("CHROMIUM")
    if chosen:
        if not Path(chosen).exists():
            raise BuildError(f"CHROMIUM={chosen} does not exist")
        return chosen
    for name in SYSTEM_BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    for path in APP_BROWSERS:
        if Path(path).exists():
            return path
    found = _playwright_chromium()
    if found:
        return found
    raise BuildError("no Chromium or Chrome found: `apt-get install -y chromium` (Debian/Ubuntu), or "
                     "`python -m playwright install chromium`, or set CHROMIUM=/path/to/chrome")


def test(args: list[str], web_llm: str | None) -> int:
    install_test_deps()
    browser = find_browser()
    build(web_llm)
    # The tests' dist fixture builds the same release; conftest.py launches the browser found here.
    env = {**os.environ, "WEB_LLM": web_llm or "", "CHROMIUM": browser}
    return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env)


# --------------------------------------------------------------------------- bench

BENCH = ROOT / "bench"
README = ROOT / "README.md"
TABLE_START = "<!-- performance table: python3 build.py bench -->"
TABLE_END = "<!-- end of performance table -->"
# The scripts whose figures make the table (each writes them with --json), then the others.
TABLE_SCRIPTS = ("stream_overhead", "startup", "download")


def bench_scripts() -> list[Path]:
    """Every benchmark script: bench/*.py but the shared helpers (bench/_*.py)."""
    scripts = sorted(p for p in BENCH.glob("*.py") if not p.name.startswith("_"))
    return sorted(scripts, key=lambda p: (p.stem not in TABLE_SCRIPTS, TABLE_SCRIPTS.index(p.stem)
                                          if p.stem in TABLE_SCRIPTS else 0, p.stem))


def performance_table(figures: dict[str, dict]) -> str:
    """README's "Performance" table from the figures of stream_overhead, startup and download."""
    s, st, d = figures["stream_overhead"], figures["startup"], figures["download"]
    rows = [
        ("streaming: Python client / plain JS loop, chunks/s (one chunk object per delta)", ">= 0.99",
         f"{s['ratio python']:.2f} ({s['python chunks/s']:.0f} vs {s['js chunks/s']:.0f} chunks/s)"),
        ("streaming: Python reading batches (`stream.batches()`, as the chat does) / JS loop", ">= 0.99",
         f"{s['ratio python batches']:.2f} ({s['python batches chunks/s']:.0f} vs {s['js chunks/s']:.0f} chunks/s)"),
        ("first chunk: time added by the Python client", "<= +1 ms", f"{s['added first chunk ms']:+.2f} ms"),
        ("worst case, 2 streams at once: Python / JS, chunks/s of both", "(reported)",
         f"{s['ratio python x2']:.2f} ({s['python x2 chunks/s']:.0f} vs {s['js x2 chunks/s']:.0f} chunks/s)"),
        ("cold start: navigation -> ready, ours / stock PyScript page", "<= 1.0",
         f"{st['ratio cold']:.2f} ({st['ours cold ms']:.0f} vs {st['stock cold ms']:.0f} ms)"),
        ("warm start (reload)", "<= 1.0", f"{st['ratio warm']:.2f} ({st['ours warm ms']:.0f} vs {st['stock warm ms']:.0f} ms)"),
        ("ours: navigation -> the chat takes a message, cold / warm", "(reported)",
         f"{st['ours cold chat ms']:.0f} / {st['ours warm chat ms']:.0f} ms"),
        (f"download of a {d['mb']:.0f} MB model: ours (every shard's md5sum checked) / web-llm's strategy "
         "(no checks), time", "<= 1.0", f"{d['ratio']:.2f} ({d['ours_ms']:.0f} vs {d['webllm_ms']:.0f} ms)"),
        ("download, a manifest without md5sum (nothing to hash on either side)", "<= 1.0",
         f"{d['ratio_no_md5']:.2f} ({d['ours_no_md5_ms']:.0f} vs {d['webllm_ms']:.0f} ms)"),
    ]
    lines = [TABLE_START, "", "| figure | goal | result |", "|---|---|---|"]
    lines += [f"| {name} | {goal} | {result} |" for name, goal, result in rows]
    lines += ["", f"Streams of {s['chunks']} tokens from the engine double, as fast as it goes; medians of "
                  f"{s['runs']} (streaming), {st['runs']} (start-up) and {d['runs']} (download) runs of each side, "
                  "both sides alternating in one process; a ratio is that of the two medians.",
              f"Machine: {s['machine']}. Versions: {s['versions']}.", "", TABLE_END]
    return "\n".join(lines)


def bench(short: bool, table_only: bool = False) -> int:
    """Run every benchmark script (``--short``: each in its quick mode, README untouched;
    ``table_only``: only the scripts the table needs); with full runs, write the figures of the
    table scripts into README's "Performance" table."""

    install_test_deps()
    env = {**os.environ, "CHROMIUM": find_browser()}
    build()
    failed = []
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for script in bench_scripts():
            if table_only and script.stem not in TABLE_SCRIPTS:
                continue
            cmd = [sys.executable, str(script.relative_to(ROOT))] + (["--short"] if short else [])
            if script.stem in TABLE_SCRIPTS:
                cmd += ["--json", str(Path(tmp) / f"{script.stem}.json")]
            print(f"\n$ {' '.join(cmd[1:])}", flush=True)
            if subprocess.call(cmd, cwd=ROOT, env=env) != 0:
                failed.append(script.name)
            elif script.stem in TABLE_SCRIPTS:
                figures[script.stem] = json.loads((Path(tmp) / f"{script.stem}.json").read_text())
    if set(TABLE_SCRIPTS) <= figures.keys():  # the table needs its three scripts, not the others
        table = performance_table(figures)
        print("\n" + table)
        if not short:
            text = README.read_text()
            if TABLE_START not in text or TABLE_END not in text:
                raise BuildError(f"README.md has no {TABLE_START!r} ... {TABLE_END!r} block to rewrite")
            head, rest = text.split(TABLE_START, 1)
            README.write_text(head + table + rest.split(TABLE_END, 1)[1])
            print("bench: README.md Performance table rewritten")
    if failed:
        print(f"\nbench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web-llm", metavar="VERSION", help="vendor this @mlc-ai/web-llm release")
    parser.add_argument("--force", action="store_true", help="rebuild even if dist/ is fresh")
    parser.add_argument("--out", type=Path, help="build into this folder instead of dist/ (build only)")
    sub = parser.add_subparsers(dest="command")
    s = sub.add_parser("serve", help="build if stale and serve dist/ on 127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--prefix", default="/", help="serve under this sub-path, e.g. /repo-name/")
    sub.add_parser("test", help="run the test suite (extra args go to pytest)")
    b = sub.add_parser("bench", help="run every benchmark script; rewrite README's Performance table")
    b.add_argument("--short", action="store_true", help="each script in its quick mode (README untouched)")
    b.add_argument("--table", action="store_true", help="only the scripts the Performance table needs")
    args, rest = parser.parse_known_args(argv)
    if args.out is not None and args.command is not None:
        parser.error("--out is for building only")
    try:
        if args.command == "test":
            return test(rest, args.web_llm)
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if args.command == "bench":
            return bench(args.short, args.table)
        if args.command == "serve":
            serve(args.port, args.web_llm, args.prefix)
        else:
            build(args.web_llm, force=args.force, out=args.out)
        return 0
    except BuildError as exc:
        print(f"build: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
