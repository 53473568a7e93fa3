// Storage glue for app/ffi.py: the app's own IndexedDB key-value stores, and (below) the stores
// web-llm itself reads model files from. Python never sees a JS object from here: values cross as
// JSON text, so JS null/undefined come back to Python as None.

// ------------------------------------------------------------------ the app's own key-value stores

const APP_DB = "webllm-py";
const APP_DB_VERSION = 2;
// One object store per purpose; keys are strings, values structured-cloneable data.
// `staging` holds parts of interrupted downloads (Blobs), keyed "<url>#<part index>"; `sizes` keeps
// what each model's download costs, so the catalog can show it without asking the network again.
export const APP_STORES = ["models", "sizes", "usage", "staging", "conversations", "settings"];

let appDb = null;

function requestPromise(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export function openDatabase(name, version, upgrade) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name, version);
    request.onupgradeneeded = () => upgrade(request.result);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
    request.onblocked = () => reject(new Error(`IndexedDB ${name} is held open by another tab`));
  });
}

function appDatabase() {
  if (appDb === null) {
    appDb = openDatabase(APP_DB, APP_DB_VERSION, (db) => {
      for (const store of APP_STORES) {
        if (!db.objectStoreNames.contains(store)) db.createObjectStore(store);
      }
    });
  }
  return appDb;
}

// Runs `work(store)` in one transaction and resolves with its result once the transaction commits,
// so a caller that awaited a write knows it is on disk.
export async function inTransaction(dbPromise, storeName, mode, work) {
  const db = await dbPromise;
  return new Promise((resolve, reject) => {
    const tx = db.transaction(storeName, mode);
    let result;
    tx.oncomplete = () => resolve(result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
    Promise.resolve(work(tx.objectStore(storeName))).then((value) => { result = value; }, reject);
  });
}

export function kvGet(store, key) {
  return inTransaction(appDatabase(), store, "readonly", async (s) => {
    const value = await requestPromise(s.get(key));
    return value === undefined ? "null" : JSON.stringify(value);
  });
}

export function kvPut(store, key, json) {
  return inTransaction(appDatabase(), store, "readwrite", (s) => { s.put(JSON.parse(json), key); });
}

export function kvDelete(store, key) {
  return inTransaction(appDatabase(), store, "readwrite", (s) => { s.delete(key); });
}

// Every entry of a store as JSON text of {key: value}.
export function kvItems(store) {
  return inTransaction(appDatabase(), store, "readonly", async (s) => {
    const [keys, values] = await Promise.all([requestPromise(s.getAllKeys()), requestPromise(s.getAll())]);
    const out = {};
    keys.forEach((key, i) => { out[key] = values[i]; });
    return JSON.stringify(out);
  });
}

// ------------------------------------------------------------------ web-llm's model stores
//
// web-llm keeps model files in one of three stores, each split into the scopes "webllm/config",
// "webllm/wasm" and "webllm/model", keyed by the file's full URL (see its ArtifactCache,
// ArtifactIndexedDBCache and OPFSStore). Writing the same entries in the same shape is what makes
// web-llm's own hasModelInCache() true after a download here, and a later load fetch nothing.
//   cache:     caches.open(scope), Request(url) -> Response
//   indexeddb: database named after the scope, version 1, store "urls" {keyPath: "url"};
//              value {url, data}: data is the parsed JSON for the tensor manifest, else an ArrayBuffer
//   opfs:      <root>/tvmjs-opfs-store/<scope parts>/<sha256(url)>.bin + .record.json {url, nbytes}

const OPFS_ROOT = "tvmjs-opfs-store";

async function cacheExists(scope) {
  return "caches" in self && (await caches.has(scope));
}

async function webllmDbExists(scope) {
  const known = await indexedDB.databases();
  return known.some((db) => db.name === scope);
}

const webllmDbs = new Map();
function webllmDb(scope) {
  if (!webllmDbs.has(scope)) {
    webllmDbs.set(scope, openDatabase(scope, 1, (db) => {
      if (!db.objectStoreNames.contains("urls")) db.createObjectStore("urls", {keyPath: "url"});
    }));
  }
  return webllmDbs.get(scope);
}

async function opfsDir(scope, create) {
  if (!navigator.storage || typeof navigator.storage.getDirectory !== "function") return null;
  try {
    let dir = await (await navigator.storage.getDirectory()).getDirectoryHandle(OPFS_ROOT, {create});
    for (const part of scope.split("/").filter((p) => p)) {
      dir = await dir.getDirectoryHandle(encodeURIComponent(part), {create});
    }
    return dir;
  } catch (e) {
    if (e.name === "NotFoundError") return null;
    throw e;
  }
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

function sizeOf(data) {
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  if (data instanceof Blob) return data.size;
  return new TextEncoder().encode(JSON.stringify(data)).byteLength;
}

// Every entry of one store and scope as [{url, bytes}], without creating the store.
async function listEntries(backend, scope) {
  const out = [];
  if (backend === "cache") {
    if (!(await cacheExists(scope))) return out;
    const cache = await caches.open(scope);
    for (const request of await cache.keys()) {
      const response = await cache.match(request);
      out.push({url: request.url, bytes: response ? (await response.blob()).size : 0});
    }
  } else if (backend === "indexeddb") {
    if (!(await webllmDbExists(scope))) return out;
    await inTransaction(webllmDb(scope), "urls", "readonly", (store) => new Promise((resolve, reject) => {
      // One value at a time: getAll() would hold every shard in memory at once.
      const cursor = store.openCursor();
      cursor.onsuccess = () => {
        const c = cursor.result;
        if (!c) { resolve(); return; }
        out.push({url: c.value.url, bytes: sizeOf(c.value.data)});
        c.continue();
      };
      cursor.onerror = () => reject(cursor.error);
    }));
  } else if (backend === "opfs") {
    const dir = await opfsDir(scope, false);
    if (!dir) return out;
    for await (const [name, handle] of dir.entries()) {
      if (!name.endsWith(".record.json")) continue;
      const record = JSON.parse(await (await handle.getFile()).text());
      let bytes = 0;
      try {
        bytes = (await (await dir.getFileHandle(name.replace(/\.record\.json$/, ".bin"))).getFile()).size;
      } catch (e) { if (e.name !== "NotFoundError") throw e; }
      out.push({url: record.url, bytes});
    }
  } else {
    throw new Error(`unknown cache backend ${backend}`);
  }
  return out;
}

export async function listStore(backend, scope) {
  return JSON.stringify(await listEntries(backend, scope));
}

export async function deleteEntries(backend, scope, urlsJson) {
  const urls = JSON.parse(urlsJson);
  if (backend === "cache") {
    if (!(await cacheExists(scope))) return;
    const cache = await caches.open(scope);
    await Promise.all(urls.map((url) => cache.delete(url)));
  } else if (backend === "indexeddb") {
    if (!(await webllmDbExists(scope))) return;
    await inTransaction(webllmDb(scope), "urls", "readwrite", (store) => { urls.forEach((u) => store.delete(u)); });
  } else if (backend === "opfs") {
    const dir = await opfsDir(scope, false);
    if (!dir) return;
    for (const url of urls) {
      const base = await sha256Hex(url);
      for (const name of [`${base}.record.json`, `${base}.bin`]) {
        try { await dir.removeEntry(name); } catch (e) { if (e.name !== "NotFoundError") throw e; }
      }
    }
  }
}

// Write one whole file into web-llm's store, in the shape web-llm reads back.
async function commitEntry(backend, scope, url, blob, storetype, contentType) {
  if (backend === "cache") {
    const headers = {"content-length": String(blob.size)};
    if (contentType) headers["content-type"] = contentType;
    await (await caches.open(scope)).put(url, new Response(blob, {headers}));
  } else if (backend === "indexeddb") {
    const data = storetype === "json" ? JSON.parse(await blob.text()) : await blob.arrayBuffer();
    await inTransaction(webllmDb(scope), "urls", "readwrite", (store) => { store.put({url, data}); });
  } else if (backend === "opfs") {
    const dir = await opfsDir(scope, true);
    const base = await sha256Hex(url);
    // The payload first, then the record: web-llm treats an entry without a record as absent.
    const payload = await (await dir.getFileHandle(`${base}.bin`, {create: true})).createWritable();
    await payload.write(blob);
    await payload.close();
    const record = await (await dir.getFileHandle(`${base}.record.json`, {create: true})).createWritable();
    const meta = {url, nbytes: blob.size};
    if (contentType) meta.contentType = contentType;
    await record.write(JSON.stringify(meta));
    await record.close();
  } else {
    throw new Error(`unknown cache backend ${backend}`);
  }
}

// ------------------------------------------------------------------ staging of partial downloads

function stagingKeys(url) {
  // Keys "<url>#<n>" sort between "<url>#" and "<url>#\uffff".
  return IDBKeyRange.bound(`${url}#`, `${url}#\uffff`);
}

async function stagedParts(url) {
  return inTransaction(appDatabase(), "staging", "readonly", async (store) => {
    const range = stagingKeys(url);
    const [keys, values] = await Promise.all([requestPromise(store.getAllKeys(range)),
                                              requestPromise(store.getAll(range))]);
    // Numeric order of part indexes (string order would put #10 before #2).
    return keys.map((k, i) => [Number(k.slice(url.length + 1)), values[i]])
      .sort((a, b) => a[0] - b[0]).map(([, v]) => v);
  });
}

async function stagePart(url, index, blob) {
  await inTransaction(appDatabase(), "staging", "readwrite", (store) => { store.put(blob, `${url}#${index}`); });
}

async function unstage(urls) {
  await inTransaction(appDatabase(), "staging", "readwrite", (store) => {
    urls.forEach((url) => store.delete(stagingKeys(url)));
  });
}

// {url: bytes staged} for every partially downloaded file.
export async function listStaging() {
  return inTransaction(appDatabase(), "staging", "readonly", (store) => new Promise((resolve, reject) => {
    const out = {};
    const cursor = store.openCursor();
    cursor.onsuccess = () => {
      const c = cursor.result;
      if (!c) { resolve(JSON.stringify(out)); return; }
      const url = c.key.slice(0, c.key.lastIndexOf("#"));
      out[url] = (out[url] || 0) + c.value.size;
      c.continue();
    };
    cursor.onerror = () => reject(cursor.error);
  }));
}

export async function deleteStaging(urlsJson) {
  await unstage(JSON.parse(urlsJson));
}

// ------------------------------------------------------------------ one file download
//
// Streams `url` into memory, reporting bytes as they arrive; parts are staged in IndexedDB at most
// every STAGE_INTERVAL_MS, so a reload or a dropped connection loses little, and a fast download
// (which needs no resume) is not written twice. A staged file resumes with an HTTP Range request.
// Only a whole file, of the expected size, is committed to web-llm's store.

const STAGE_INTERVAL_MS = 2000;
const REPORT_INTERVAL_MS = 100;

function failure(name, message, extra = {}) {
  const error = new Error(message);
  error.name = name;
  return Object.assign(error, extra);
}

export function startDownload(spec, onProgress) {
  const {url, backend, scope, storetype, expected} = JSON.parse(spec);
  const controller = new AbortController();
  const run = async () => {
    let staged = await stagedParts(url);
    let offset = staged.reduce((n, b) => n + b.size, 0);
    const headers = offset > 0 ? {Range: `bytes=${offset}-`} : {};
    let response;
    try {
      response = await fetch(url, {signal: controller.signal, headers});
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw failure("NetworkError", `could not fetch ${url}: ${e.message}`);
    }
    if (!response.ok) throw failure("HttpError", `GET ${url} answered ${response.status}`, {status: response.status});
    if (offset > 0 && response.status !== 206) {
      // The server ignored the range: start this file over.
      await unstage([url]);
      staged = []; offset = 0;
    }
    onProgress(offset, true);  // bytes already held (staged), reported as this file's new count
    const contentType = response.headers.get("content-type");
    const reader = response.body.getReader();
    let index = staged.length, pending = [], pendingBytes = 0, got = offset, reported = offset;
    // Bytes are reported at most every REPORT_INTERVAL_MS, and never left unreported longer.
    let reportTimer = null;
    const report = () => {
      reportTimer = null;
      if (got !== reported) { onProgress(got - reported, false); reported = got; }
    };
    // The file as a stream: staged parts first, then bytes as they arrive (counted, and kept until
    // staged). Written straight into the store, so a file is never assembled twice in memory.
    const replay = staged.slice();
    const body = new ReadableStream({
      async pull(c) {
        if (replay.length) { c.enqueue(new Uint8Array(await replay.shift().arrayBuffer())); return; }
        const {done, value} = await reader.read();
        if (done) { c.close(); return; }
        pending.push(value); pendingBytes += value.byteLength; got += value.byteLength;
        if (reportTimer === null) reportTimer = setTimeout(report, REPORT_INTERVAL_MS);
        c.enqueue(value);
      },
      cancel(reason) { return reader.cancel(reason); },
    }, {highWaterMark: 16});  // read ahead of the store: the network never waits on one chunk's write
    // Staging runs on a timer, not per chunk, so a stalled stream is staged too. Parts get their
    // index when taken, so they stay in order however the writes interleave.
    let staging = Promise.resolve();
    const stage = () => {
      if (!pendingBytes) return staging;
      const blob = new Blob(pending);
      pending = []; pendingBytes = 0;
      const n = index++;
      staging = staging.then(() => stagePart(url, n, blob));
      return staging;
    };
    const timer = setInterval(stage, STAGE_INTERVAL_MS);
    try {
      await writeEntry(backend, scope, url, body, storetype, contentType);
    } catch (e) {
      if (e.name === "QuotaExceededError") throw failure(e.name, e.message);  // a plain Error: see ffi.py
      await stage();  // keep what arrived, for the resume
      if (controller.signal.aborted) throw failure("AbortError", `download of ${url} cancelled`);
      throw failure("NetworkError", `the connection dropped while fetching ${url}: ${e.message}`, {received: got});
    } finally {
      clearInterval(timer);
      clearTimeout(reportTimer);
      report();
    }
    await staging;
    if (expected >= 0 && got !== expected) {
      await deleteEntries(backend, scope, JSON.stringify([url]));
      await unstage([url]);
      throw failure("SizeMismatch", `${url}: expected ${expected} bytes, received ${got}`, {received: got});
    }
    await unstage([url]);
    return got;
  };
  const promise = run();
  promise.catch(() => {});  // the caller awaits it; keep an early rejection from being "unhandled"
  return {wait: () => promise, cancel: () => controller.abort()};
}

// A whole file from a stream into web-llm's store. The Cache API takes the stream as it comes; the
// other stores need the whole file first (IndexedDB keeps an ArrayBuffer or parsed JSON).
async function writeEntry(backend, scope, url, stream, storetype, contentType) {
  if (backend === "cache") {
    const headers = contentType ? {"content-type": contentType} : {};
    await (await caches.open(scope)).put(url, new Response(stream, {headers}));
  } else {
    await commitEntry(backend, scope, url, await new Response(stream).blob(), storetype, contentType);
  }
}

// Content-Length of `url` from a HEAD request (-1 when the server does not say).
export async function headSize(url) {
  let response;
  try {
    response = await fetch(url, {method: "HEAD"});
  } catch (e) {
    throw failure("NetworkError", `could not reach ${url}: ${e.message}`);
  }
  if (!response.ok) throw failure("HttpError", `HEAD ${url} answered ${response.status}`, {status: response.status});
  const length = response.headers.get("content-length");
  return length === null ? -1 : Number(length);
}

export async function fetchText(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw failure("NetworkError", `could not reach ${url}: ${e.message}`);
  }
  if (!response.ok) throw failure("HttpError", `GET ${url} answered ${response.status}`, {status: response.status});
  return response.text();
}

export async function estimate() {
  const e = await navigator.storage.estimate();
  const persisted = navigator.storage.persisted ? await navigator.storage.persisted() : false;
  return JSON.stringify({usage: e.usage ?? 0, quota: e.quota ?? 0, persisted});
}

export async function persist() {
  return navigator.storage.persist ? await navigator.storage.persist() : false;
}

// A small file already in hand (the config and tensor manifest read while planning), committed
// without fetching it again, so the stored manifest is the one the plan was made from.
export async function commitText(backend, scope, url, text, storetype) {
  await commitEntry(backend, scope, url, new Blob([text]), storetype, "application/json");
}
