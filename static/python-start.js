// PyScript's interpreter module (pyscript.toml `interpreter`): the vendored Pyodide, started from the
// memory snapshot build.py made of it (static/python-build.mjs) instead of initialising the
// interpreter in every visit. Restoring a snapshot skips CPython's start and Pyodide's own imports:
// about 0.2-0.4 s instead of 1.1-1.3 s here. PyScript calls loadPyodide() as it would Pyodide's.
//
// When the snapshot cannot be used (missing, damaged, or made for another Pyodide build: Pyodide
// checks the build id) Python starts the ordinary way, a little later, and the page says nothing
// but the console. Either way performance has a "python-start" measure ({snapshot: true|false}) that
// the Device sheet shows (app/main.py).

import {loadPyodide as loadVendored, version} from "./vendor/pyodide/pyodide.mjs";

export {version};

const INDEX_URL = new URL("./vendor/pyodide/", import.meta.url).href;
const SNAPSHOT_URL = new URL("./vendor/pyodide/python-snapshot.gz", import.meta.url).href;
const GZIP = [0x1f, 0x8b];

// Fetched as soon as PyScript imports this module, while it reads its configuration.
let snapshot = readSnapshot().catch((error) => {
  console.warn(`Python starts without its snapshot: ${error.message}`);
  return null;
});

async function readSnapshot() {
  const response = await fetch(SNAPSHOT_URL);
  if (!response.ok) throw new Error(`GET ${SNAPSHOT_URL} answered ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  // A server may have undone the gzip already (Content-Encoding); otherwise the page does.
  if (bytes[0] !== GZIP[0] || bytes[1] !== GZIP[1]) return bytes;
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

export async function loadPyodide(options = {}) {
  const started = performance.now();
  // PyScript gives this module's folder as indexURL; Pyodide's files are in the vendored one.
  const settings = {...options, indexURL: INDEX_URL};
  const bytes = await snapshot;
  snapshot = Promise.resolve(null);
  let restored = false;
  let pyodide = null;
  if (bytes !== null) {
    try {
      pyodide = await loadVendored({...settings, _loadSnapshot: bytes});
      likeAFreshStart(pyodide);
      restored = true;
      release(bytes);
    } catch (error) {
      console.warn(`Python starts without its snapshot: ${error.message}`);
      pyodide = null;
    }
  }
  if (pyodide === null) pyodide = await loadVendored(settings);
  performance.measure("python-start", {start: started, end: performance.now(), detail: {snapshot: restored}});
  return pyodide;
}

// Pyodide keeps the options it started with, the snapshot's 30 MiB with them, for the page's life:
// once its memory holds them, the buffer is detached (transferred away), which frees it.
function release(bytes) {
  const buffer = bytes.buffer;
  if (typeof buffer.transfer === "function") buffer.transfer(0);
  else structuredClone(buffer, {transfer: [buffer]});
}

// What the snapshot froze that a fresh start takes from this visit: the random module's state (every
// visit would draw the same numbers) and the language (LANG and the locale follow the browser's, as
// Emscripten sets them: "en-US" -> "en_US.UTF-8").
function likeAFreshStart(pyodide) {
  const sys = pyodide.pyimport("sys");
  const os = pyodide.pyimport("os");
  const locale = pyodide.pyimport("locale");
  const random = sys.modules.get("random");
  try {
    random?.seed();
    os.environ.set("LANG", `${(globalThis.navigator?.language ?? "C").replace("-", "_")}.UTF-8`);
    locale.setlocale(locale.LC_CTYPE, "");
  } finally {
    for (const proxy of [random, locale, os, sys]) proxy?.destroy();
  }
}
