// The app shell's service worker: after one visit the app starts offline, and a tab runs one app
// version from start to end.
//
// `python build.py` writes this file to dist/sw.js (the site's root, so its scope is the whole app,
// also under a GitHub Pages sub-path) with SHELL filled in: a version (a digest of the shell's
// files) and the shell's files (index.html, pyscript.toml, app.zip, static/ with the vendored
// Pyodide, PyScript, web-llm, renderers and chat-config.json). A new build is a new sw.js.
//
// Versions never mix in a tab:
// - Every shell file, the page itself (navigations) and static/chat-config.json included, is served
//   from ONE versioned cache (`py-chat-shell-<version>`, filled completely at install), and the
//   network is asked only for a file that cache lacks. A tab whose page came from version 1 gets
//   version 1's app.zip, modules and config, whatever has been deployed since. chat-config.json is
//   data, but the build hashes it into the version and its shape follows app/config.py: a changed
//   config is a new version, announced and taken like code, never read by the old code.
// - A new worker does not skipWaiting() on install and nobody calls clients.claim(): it installs
//   its cache and waits while any tab of the old version is open. The page (static/bridge/page.js)
//   sees it installed and waiting and says "A new version is ready — Reload to update"; the button
//   posts {type: "skip-waiting"} here, and the tab reloads on `controllerchange`. A plain reload
//   keeps the old version (the old page is still a client while the new one loads), as does a new
//   tab opened while an old one is open: both run the old version, consistently, and show the banner.
// - skipWaiting() hands every open tab of the old version to the new worker. So that those tabs
//   (which did not ask) keep their version too, each worker remembers which cache served each page
//   (a navigation's resultingClientId -> cache name, kept in the `py-chat-clients` cache, since a
//   worker may be stopped at any time) and serves a page's later requests from that cache; a Web
//   Worker a page starts (web-llm's engine) is remembered with its page's version. An old version's
//   cache is deleted once no open page uses it (at activation and on each navigation).
// - A page that starts (a new tab, a plain reload) gets the newest installed version even while the
//   old worker is still active: each worker records its version when its install begins and when its
//   cache is complete (the `py-chat-versions` cache), and a navigation is served from the newest
//   complete version while a newer worker waits. A newer version's cache is never pruned by an older
//   worker. Taking over is not needed for that: Chromium activates a waiting worker only once the old
//   one has gone idle, which may take minutes (the old worker handling the new page's requests, or a
//   DevTools session, keeps it busy). The page then asks (GET __version, answered here) which version
//   serves it and which is newest, reloads if they differ (a page served by a worker older than
//   this rule), and posts "skip-waiting" so the new worker takes over when the browser lets it.
// - A page that was not controlled (the first visit, before any worker was active) loads from the
//   network like any page without a service worker; it is not claimed.
//
// Left alone: web-llm's own caches (webllm/model, webllm/config, webllm/wasm) and every other
// request: model files, cloud endpoints, anything not in the shell pass straight to the network.
// Registered by app/ui/page.py only on http(s), when static/chat-config.json has "offline" set
// (see app/config.py PageConfig.offline).
"use strict";
const SHELL = /*SHELL*/ { version: "dev", files: [] } /*END*/;
const PREFIX = "py-chat-shell-";
const CACHE = PREFIX + SHELL.version;
const CLIENTS = "py-chat-clients";  // page (client id) -> the shell cache that served it
const VERSIONS = "py-chat-versions";  // shell cache name -> {at: install began, complete}
const BASE = new URL("./", self.location.href);
const INDEX = new URL("index.html", BASE).href;
const FILES = new Set(SHELL.files.map((f) => new URL(f, BASE).href));
const CLIENT_KEYS = new URL("__clients/", BASE).href;  // never fetched: keys of the CLIENTS cache
const VERSION = new URL("__version", BASE).href;  // answered here: which version serves the asking page
const VERSION_KEYS = new URL("__versions/", BASE).href;  // never fetched: keys of the VERSIONS cache
const served = new Map();  // client id -> cache name, in memory while this worker runs

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const at = Date.now();
    await putRecord(VERSIONS, VERSION_KEYS, CACHE, { at, complete: false });  // from now on no older worker prunes this cache
    const cache = await caches.open(CACHE);
    await cache.addAll(SHELL.files.map((f) => new Request(new URL(f, BASE), { cache: "reload" })));
    await putRecord(VERSIONS, VERSION_KEYS, CACHE, { at, complete: true });
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil(prune(null));
});

// The page's "Reload to update" button, and only it, makes a waiting worker take over.
self.addEventListener("message", (event) => {
  if (event.data && event.data.type === "skip-waiting") event.waitUntil(self.skipWaiting());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  url.search = "";
  url.hash = "";
  const navigate = request.mode === "navigate";
  let key = url.href;
  if (key === VERSION) {
    event.respondWith(versionOf(event.clientId));
    return;
  }
  if (key === BASE.href || (navigate && key.startsWith(BASE.href) && !FILES.has(key))) key = INDEX;
  if (!FILES.has(key)) return;  // not the shell: the network, untouched
  event.respondWith(serve(event, key, navigate));
});

async function serve(event, key, navigate) {
  let name = CACHE;  // a page loads from the newest version...
  if (navigate) {
    name = await newest();
    event.waitUntil(remember(event.resultingClientId, name).then(() => prune(event.resultingClientId)));
  } else {
    name = await cacheOf(event.clientId);  // ...and everything after from the version that served it
    if (event.resultingClientId) event.waitUntil(remember(event.resultingClientId, name));  // its workers
  }
  const hit = await caches.match(key, { cacheName: name });
  return hit || fetch(event.request);
}

// {page: the version serving this page, current: this worker's, newest: the one a page loaded now
// gets}: a page that starts and finds `page` and `newest` different reloads (static/bridge/page.js).
async function versionOf(clientId) {
  const body = JSON.stringify({ page: await cacheOf(clientId), current: CACHE, newest: await newest() });
  return new Response(body, { headers: { "content-type": "application/json", "cache-control": "no-store" } });
}

// What a worker must remember outlives it (it may be stopped at any time): JSON records in a
// cache, one per id, under the URL `prefix + id`.
async function putRecord(cacheName, prefix, id, value) {
  await (await caches.open(cacheName)).put(prefix + encodeURIComponent(id), new Response(JSON.stringify(value)));
}

// Every record in a cache: [{id, entry, forget()}].
async function records(cacheName, prefix) {
  const cache = await caches.open(cacheName);
  const found = [];
  for (const request of await cache.keys()) {
    const hit = await cache.match(request);
    found.push({ id: decodeURIComponent(request.url.slice(prefix.length)), entry: hit ? await hit.json() : {},
                 forget: () => cache.delete(request) });
  }
  return found;
}

async function remember(clientId, name) {
  if (!clientId) return;
  served.set(clientId, name);  // before any await: the page's own requests may follow at once
  await putRecord(CLIENTS, CLIENT_KEYS, clientId, { cache: name, at: Date.now() });
}

async function cacheOf(clientId) {
  if (!clientId) return CACHE;
  if (!served.has(clientId)) {
    const hit = await caches.match(CLIENT_KEYS + encodeURIComponent(clientId), { cacheName: CLIENTS });
    served.set(clientId, hit ? (await hit.json()).cache : CACHE);  // unknown: this worker's version
  }
  return served.get(clientId);
}

// Of the recorded versions, those whose install began after this worker's (all of them when this
// worker has no record), oldest first.
function newerThanMine(versions) {
  const mine = versions.find((v) => v.id === CACHE);
  return versions.filter((v) => v.id !== CACHE && (!mine || v.entry.at > mine.entry.at))
    .sort((a, b) => a.entry.at - b.entry.at);
}

// The version a page loaded now should run: while a newer worker waits, the newest version whose
// cache is complete, else this worker's.
async function newest() {
  if (!self.registration.waiting) return CACHE;
  const complete = newerThanMine(await records(VERSIONS, VERSION_KEYS)).filter((v) => v.entry.complete);
  for (const v of complete.reverse()) {
    if (await caches.has(v.id)) return v.id;
  }
  return CACHE;
}

// Forget closed pages, and delete every shell cache that is neither this version's, nor a newer
// version's (installing or waiting), nor used by an open page. `keep`: the page being navigated to
// (not yet among the clients); a page remembered in the last minute counts as open too (another
// navigation may still be under way).
async function prune(keep) {
  const open = new Set((await self.clients.matchAll({ includeUncontrolled: true, type: "all" })).map((c) => c.id));
  if (keep) open.add(keep);
  // The caches are listed before the versions are read: a newer worker records its version before
  // it creates its cache, so a cache listed here is never one whose record is not read below.
  const names = await caches.keys();
  const versions = await records(VERSIONS, VERSION_KEYS);
  const used = new Set([CACHE, ...newerThanMine(versions).map((v) => v.id)]);
  for (const page of await records(CLIENTS, CLIENT_KEYS)) {
    if (open.has(page.id) || Date.now() - (page.entry.at || 0) < 60_000) {
      if (page.entry.cache) used.add(page.entry.cache);
    } else {
      served.delete(page.id);
      await page.forget();
    }
  }
  for (const name of names) {
    if (name.startsWith(PREFIX) && !used.has(name)) await caches.delete(name);
  }
  for (const v of versions) {
    if (!used.has(v.id)) await v.forget();
  }
}
