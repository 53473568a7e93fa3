// The page's URL, its embedding page and its service worker, for app/ffi/page.py.

// The page URL's query parameters (first value of each), as JSON.
export function query() {
  return JSON.stringify(Object.fromEntries(new URLSearchParams(location.search)));
}

// Whether this page is framed by a page of `origin` (location.ancestorOrigins where the browser has
// it; elsewhere the referrer's origin).
export function parentOriginMatches(origin) {
  if (window.parent === window) return false;
  const a = location.ancestorOrigins;
  if (a && a.length) return a[0] === origin;
  try { return new URL(document.referrer).origin === origin; } catch (e) { return false; }
}

// Where this page runs, as JSON: {own, ancestors}. ancestors: the framing pages' origins, nearest
// first ([] in its own tab); where the browser has no location.ancestorOrigins, only the parent's
// origin from the referrer, and null when even that is unknown (app/ui/embed.py refuses then).
export function framing() {
  const own = location.origin;
  if (window.parent === window) return JSON.stringify({ own, ancestors: [] });
  const a = location.ancestorOrigins;
  if (a) return JSON.stringify({ own, ancestors: Array.from(a) });
  let parent = null;
  try { parent = document.referrer ? [new URL(document.referrer).origin] : null; } catch (e) { parent = null; }
  return JSON.stringify({ own, ancestors: parent });
}

// A "message" listener passing to `handler` (as JSON) only messages from window.parent whose origin is
// `origin` and whose `source` field is `tag`.
export function hostListener(origin, tag, handler) {
  return (event) => {
    if (event.origin !== origin || event.source !== window.parent) return;
    const d = event.data;
    if (!d || typeof d !== "object" || d.source !== tag) return;
    let text;
    try { text = JSON.stringify(d); } catch (e) { return; }
    handler(text);
  };
}

export function postToParent(text, origin) {
  window.parent.postMessage(JSON.parse(text), origin);
}

// The app-shell service worker (static/sw.js says how versions are kept apart). A new version
// installed while this page runs waits; `onUpdate("waiting")` says so, and `onUpdate("activated")`
// says another tab let it take over (this page still runs, and is served, its own version). Only
// after `applyUpdate()` (the user asked), or when the page has only just started
// (`takeWaitingVersion()`), does the page reload.
let registration = null;
let updateAsked = false;
let onControllerChange = null;
// The waiting worker whose version this page already runs (the active worker served it the newest
// version): neither it waiting nor it taking over is news for this page.
let ownVersion = null;
let started = Promise.resolve();

const TAKE_OVER_WAIT_MS = 3000;

function reloadWhenTakenOver() {
  updateAsked = true;
  if (onControllerChange === null) {
    onControllerChange = () => location.reload();
    navigator.serviceWorker.addEventListener("controllerchange", onControllerChange);
  }
}

// Called by boot.js before PyScript starts: a page that starts (a reload, a new tab) runs the newest
// installed version. The active worker serves a page the newest version itself (static/sw.js), so
// this page reloads only if it did not (`page` is not `newest`: it was loaded just before the new
// version was installed, or by a worker without that rule, which does not answer `newest`). A worker
// that waits is asked to take over, which the browser does when the old worker is idle; this page
// does not wait for that.
export function takeWaitingVersion() {
  try {  // an opaque origin (a sandboxed frame) may not even look at navigator.serviceWorker
    if (!("serviceWorker" in navigator) || !navigator.serviceWorker.controller) return;
  } catch (e) {
    return;
  }
  started = Promise.all([
    navigator.serviceWorker.getRegistration(),
    fetch(new URL("__version", document.baseURI), { cache: "no-store" })
      .then((answer) => (answer.ok ? answer.json() : null)).catch(() => null),
  ]).then(([reg, version]) => {
    if (version && version.newest && version.page !== version.newest) {
      location.reload();
      return;
    }
    if (!reg || !reg.waiting) return;
    if (version && version.newest && version.page !== version.current) {
      ownVersion = reg.waiting;  // the old worker served this page the waiting version
    } else {
      reloadWhenTakenOver();  // an older worker's page: it reloads once the new worker took over
    }
    reg.waiting.postMessage({ type: "skip-waiting" });
  }).catch((e) => console.warn("service worker not reached:", e.message));
}

// Register the worker, only on http(s) and, unless `evenAutomated`, not in a browser driven by
// automation; its outcome is logged. Returns whether registration was started.
export function registerServiceWorker(url, evenAutomated, onUpdate) {
  if (!/^https?:$/.test(location.protocol) || !("serviceWorker" in navigator)) return false;
  if (navigator.webdriver && !evenAutomated) return false;
  const container = navigator.serviceWorker;
  const controlled = container.controller !== null;  // not on a first visit: nothing to update then
  container.addEventListener("controllerchange", () => {
    if (!updateAsked && controlled && container.controller !== ownVersion) onUpdate("activated");
  });
  container.register(new URL(url, document.baseURI).href).then(async (reg) => {
    registration = reg;
    await started;
    const announce = () => {
      if (reg.waiting && reg.waiting !== ownVersion && controlled && !updateAsked) onUpdate("waiting");
    };
    announce();
    reg.addEventListener("updatefound", () => {
      const worker = reg.installing;
      if (worker) worker.addEventListener("statechange", () => { if (worker.state === "installed") announce(); });
    });
    // Browsers look for a new sw.js on navigations; a tab left open looks again when shown.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") reg.update().catch(() => {});
    });
  }).catch((e) => console.warn("service worker not registered:", e.message));
  return true;
}

// The user asked for the new version: a waiting worker is told to take over and this page reloads
// when it does, or after TAKE_OVER_WAIT_MS if the browser has not let it yet (the reload is then
// served the new version by the old worker); with none waiting (another tab let it take over
// already, or there is no worker) the page reloads at once.
export function applyUpdate() {
  const waiting = registration && registration.waiting;
  if (!waiting) {
    location.reload();
    return;
  }
  reloadWhenTakenOver();
  waiting.postMessage({ type: "skip-waiting" });
  setTimeout(() => location.reload(), TAKE_OVER_WAIT_MS);
}
