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

// Register the app-shell service worker, only on http(s) and, unless `evenAutomated`, not in a
// browser driven by automation; its outcome is logged.
export function registerServiceWorker(url, evenAutomated) {
  if (!/^https?:$/.test(location.protocol) || !("serviceWorker" in navigator)) return false;
  if (navigator.webdriver && !evenAutomated) return false;
  navigator.serviceWorker.register(new URL(url, document.baseURI).href)
    .catch((e) => console.warn("service worker not registered:", e.message));
  return true;
}
