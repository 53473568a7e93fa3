// The page's door from Python to JavaScript modules (app/ffi/_core.py). Python cannot write
// `import(url)`, and building a function from a string (js.Function / eval) is what the page's
// Content-Security-Policy forbids, so this module does it: index.html loads it as an external module
// script before PyScript's core.js, and module scripts run in document order, so `globalThis.pyBridge`
// exists before any Python runs. The modules Python calls synchronously (DOM events, the page URL,
// embedding, the service worker) are static imports here, fetched in parallel with PyScript; everything
// else (the stream reader, HTTP, the Prompt API, storage, rendering) is imported on first use.
import "./pyscript.js";  // first: PyScript itself, made to start without eval (see there)
import * as dom from "./dom.js";
import * as page from "./page.js";

// A new version of the app waiting in the service worker is taken now, before anything runs
// (static/bridge/page.js takeWaitingVersion; static/sw.js).
page.takeWaitingVersion();

globalThis.pyBridge = Object.freeze({
  importModule: (url) => import(url),
  dom,
  page,
});
