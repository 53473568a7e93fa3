// The app shell's service worker: after one visit the app starts offline.
//
// `python build.py` writes this file to dist/sw.js (the site's root, so its scope is the whole app,
// also under a GitHub Pages sub-path) with SHELL filled in: a version (a digest of the shell's
// files) and the shell's files (index.html, pyscript.toml, app.zip, static/ with the vendored
// Pyodide, PyScript, web-llm and renderers). A new build is a new sw.js, so the browser installs
// it, it fills a new cache, and on activation the old app-shell caches (and only those) are deleted.
//
// Left alone: web-llm's own caches (webllm/model, webllm/config, webllm/wasm) and every other
// request: model files, cloud endpoints, anything not in the shell pass straight to the network.
// Pages (navigations) and static/chat-config.json are network-first (fresh when online, the cached
// copy offline); the rest of the shell is cache-first (versioned with this file).
// Registered by app/ui/page.py only on http(s), when static/chat-config.json has "offline" set
// (see app/config.py PageConfig.offline).
"use strict";
const SHELL = /*SHELL*/ { version: "dev", files: [] } /*END*/;
const PREFIX = "py-chat-shell-";
const CACHE = PREFIX + SHELL.version;
const BASE = new URL("./", self.location.href);
const FILES = new Set(SHELL.files.map((f) => new URL(f, BASE).href));
const FRESH = new Set([BASE.href, new URL("index.html", BASE).href, new URL("static/chat-config.json", BASE).href]);

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(SHELL.files.map((f) => new Request(new URL(f, BASE), { cache: "reload" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) {
      if (key.startsWith(PREFIX) && key !== CACHE) await caches.delete(key);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  url.search = "";
  url.hash = "";
  const key = request.mode === "navigate" && url.href.startsWith(BASE.href) && !FILES.has(url.href)
    ? new URL("index.html", BASE).href : url.href;
  if (!FILES.has(key) && key !== BASE.href) return;  // not the shell: the network, untouched
  const shellKey = key === BASE.href ? new URL("index.html", BASE).href : key;
  event.respondWith(FRESH.has(key) || request.mode === "navigate"
    ? networkFirst(request, shellKey) : cacheFirst(request, shellKey));
});

async function cacheFirst(request, key) {
  const hit = await caches.match(key, { cacheName: CACHE });
  return hit || fetch(request);
}

async function networkFirst(request, key) {
  try {
    const response = await fetch(request);
    if (response.ok && request.mode !== "navigate") {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(key, copy));
    }
    return response;
  } catch (error) {
    const hit = await caches.match(key, { cacheName: CACHE });
    if (hit) return hit;
    throw error;
  }
}
