// Storage glue for app/ffi.py: the app's own IndexedDB key-value stores, and (below) the stores
// web-llm itself reads model files from, as Python names them. Python never sees a JS object from
// here: values cross as JSON text, so JS null/undefined come back to Python as None.

import {Md5} from "./md5.js";

// MD5 of downloads, off the main thread (static/md5-worker.js): a few workers, files spread over
// them; where workers cannot start, the page hashes in-thread as before. A hasher takes bytes
// (`update`) or a Blob the browser read a segment into (`add`), in the file's order.
const HASH_WORKERS = Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2));
const hashers = [];
let nextHasher = 0;

function inThreadMd5() {
  const md5 = new Md5();
  let queue = Promise.resolve();
  return {
    update: (bytes) => { queue = queue.then(() => { md5.update(bytes); }); },
    add: (blob) => { queue = queue.then(async () => { md5.update(new Uint8Array(await blob.arrayBuffer())); }); },
    hex: () => queue.then(() => md5.hex()),
    drop: () => {},
  };
}

function offThreadMd5() {
  let hasher;
  try {
    if (hashers.length < HASH_WORKERS) {
      const worker = new Worker(new URL("./md5-worker.js", import.meta.url), {type: "module"});
      const h = {worker, waiting: new Map(), failed: null};
      worker.onmessage = ({data}) => {
        const p = h.waiting.get(data.id);
        h.waiting.delete(data.id);
        if (data.error) p?.reject(new Error(data.error)); else p?.resolve(data.hex);
      };
      // A worker that fails (or never starts) fails the hashes it owes and every later one: a
      // download then ends with that error instead of waiting for a digest that never comes.
      worker.onerror = (e) => {
        h.failed = new Error(`the hashing worker failed: ${e.message || "it did not start"}`);
        for (const p of h.waiting.values()) p.reject(h.failed);
        h.waiting.clear();
      };
      hashers.push(h);
    }
    hasher = hashers[nextHasher++ % hashers.length];
  } catch {
    hasher = null;
  }
  if (hasher === null || hasher.failed) return inThreadMd5();
  const id = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  const {worker, waiting} = hasher;
  return {
    // A copy goes to the worker (the page still writes these bytes to the store).
    update: (bytes) => worker.postMessage({id, bytes}),
    add: (blob) => worker.postMessage({id, blob}),  // a handle: the worker reads the bytes itself
    hex: () => new Promise((resolve, reject) => {
      if (hasher.failed) { reject(hasher.failed); return; }
      waiting.set(id, {resolve, reject});
      worker.postMessage({id, end: true});
    }),
    drop: () => worker.postMessage({id, drop: true}),
  };
}

// ------------------------------------------------------------------ the app's own key-value stores

const APP_DB = "webllm-py";
const APP_DB_VERSION = 3;  // 3: `knowledge`
// One object store per purpose; keys are strings, values structured-cloneable data.
// `staging` holds parts of interrupted downloads ({id, etag, modified, total, offset, blob}: see
// "staging" below), keyed "<url>#<part index>"; `sizes` keeps
// what each model's download costs, so the catalog can show it without asking the network again;
// `knowledge` holds the user's files for the chat to answer from (app/knowledge.py: one record per
// file, its chunks and their vectors, written in one transaction).
export const APP_STORES = ["models", "sizes", "usage", "staging", "conversations", "settings", "knowledge"];

// Every rejection that leaves this module is a plain Error keeping the original `name` (and the
// `status`/`received` a caller may branch on): in Pyodide 314, awaiting a promise rejected with a
// non-Error, or with a QuotaExceededError DOMException instance, never settles on the Python side,
// so one IndexedDB quota refusal would hang the awaiting task for good. Python maps the names to
// typed errors (app/ffi/storage.py).
function plainError(e) {
  if (e instanceof Error && Object.getPrototypeOf(e) === Error.prototype) return e;
  const message = e && e.message !== undefined ? String(e.message) : String(e ?? "unknown storage failure");
  const error = new Error(message);
  error.name = (e && e.name) || "Error";
  for (const field of ["status", "received"]) if (e && e[field] !== undefined) error[field] = e[field];
  return error;
}

// `fn` with every rejection (and throw) made plain: what each export is wrapped in.
function plainErrors(fn) {
  return async (...args) => {
    try { return await fn(...args); } catch (e) { throw plainError(e); }
  };
}

function requestPromise(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(plainError(request.error));
  });
}

// ------------------------------------------------------------------ connections and other tabs
//
// Another tab may open a database at a higher version (a newer app, or web-llm release). Every
// connection opened here then closes itself (`versionchange`), so that tab's upgrade is never held
// up, and this tab is told: its storage is closed, and any later use fails at once with a typed
// `StorageClosed` error instead of hanging or reading an outdated shape. A tab whose own open is
// `blocked` by an older tab that does not close (older code without this handler) waits: its open
// settles when that tab closes, and the page is told it is waiting. A failed open is never kept:
// the next use opens again.

export const SUPERSEDED = "This tab closed its storage because a newer version of the app opened; reload.";
export const BLOCKED = "Waiting for another tab of this app (an older version) to close its storage; " +
  "close or reload that tab.";
const watchers = new Set();
let storageState = null;  // the last thing said: [kind, message], told to late watchers too

function tell(kind, message) {
  storageState = kind === "opened" ? null : [kind, message];
  for (const handler of watchers) {
    try { handler(kind, message); } catch (e) { console.warn("storage watcher failed:", e); }
  }
}

// `handler(kind, message)` hears "blocked" (an open waits for an older tab), "opened" (it is over)
// and "superseded" (a newer version took the database: reload); returns a function removing it.
export function watchStorage(handler) {
  watchers.add(handler);
  if (storageState !== null) handler(...storageState);
  return () => { watchers.delete(handler); };
}

// Open `name` at `version` (`upgrade(db)` runs when it is created or older). `onClosed(newVersion)`
// is called when the connection closed itself for another tab (`newVersion` null: the database is
// being deleted). Rejections are plain Errors; `blocked` does not reject: the open waits.
export function openDatabase(name, version, upgrade, onClosed = () => {}) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name, version);
    let blocked = false;
    request.onupgradeneeded = () => upgrade(request.result);
    request.onsuccess = () => {
      const db = request.result;
      db.onversionchange = (event) => {
        db.close();
        onClosed(event.newVersion);
        if (event.newVersion !== null) tell("superseded", SUPERSEDED);
      };
      if (blocked) tell("opened", `${name} is open`);
      resolve(db);
    };
    request.onerror = () => reject(plainError(request.error));
    request.onblocked = () => {
      blocked = true;
      tell("blocked", BLOCKED);
    };
  });
}

// A cached open: the same connection until it fails or closes. After a newer version took the
// database, every use fails with StorageClosed; after a deletion (or a failed open) the next use
// opens it again.
function connection(name, version, upgrade) {
  let current = null;
  let superseded = false;
  return () => {
    if (superseded) return Promise.reject(failure("StorageClosed", SUPERSEDED));
    if (current === null) {
      const opening = openDatabase(name, version, upgrade, (newVersion) => {
        if (current === opening) current = null;
        if (newVersion !== null) superseded = true;
      });
      current = opening;
      opening.catch(() => { if (current === opening) current = null; });
    }
    return current;
  };
}

const appDatabase = connection(APP_DB, APP_DB_VERSION, (db) => {
  for (const store of APP_STORES) {
    if (!db.objectStoreNames.contains(store)) db.createObjectStore(store);
  }
});

// Runs `work(store)` in one transaction and resolves with its result once the transaction commits,
// so a caller that awaited a write knows it is on disk.
export const inTransaction = plainErrors(async (dbPromise, storeName, mode, work) => {
  const db = await dbPromise;
  return new Promise((resolve, reject) => {
    let tx;
    try {
      tx = db.transaction(storeName, mode);
    } catch (e) {  // closed between the open and now (versionchange): said, not an InvalidStateError
      throw e.name === "InvalidStateError" ? failure("StorageClosed", SUPERSEDED) : e;
    }
    let result;
    tx.oncomplete = () => resolve(result);
    // A failed request's error bubbles here before the abort; a quota refusal may come only as the
    // abort (tx.error then says QuotaExceededError).
    tx.onerror = (event) => reject(plainError((event.target && event.target.error) || tx.error));
    tx.onabort = () => reject(tx.error ? plainError(tx.error) : failure("AbortError", "transaction aborted"));
    Promise.resolve(work(tx.objectStore(storeName))).then((value) => { result = value; },
                                                          (e) => reject(plainError(e)));
  });
});

export const kvGet = plainErrors((store, key) => {
  return inTransaction(appDatabase(), store, "readonly", async (s) => {
    const value = await requestPromise(s.get(key));
    return value === undefined ? "null" : JSON.stringify(value);
  });
});

export const kvPut = plainErrors((store, key, json) => {
  return inTransaction(appDatabase(), store, "readwrite", (s) => { s.put(JSON.parse(json), key); });
});

export const kvDelete = plainErrors((store, key) => {
  return inTransaction(appDatabase(), store, "readwrite", (s) => { s.delete(key); });
});

// Several puts ({key: value}, as JSON text) and deletes ([key]) in one transaction: all or none.
export const kvWrite = plainErrors((store, putsJson, deletesJson) => {
  const puts = JSON.parse(putsJson), deletes = JSON.parse(deletesJson);
  return inTransaction(appDatabase(), store, "readwrite", (s) => {
    for (const key of deletes) s.delete(key);
    for (const [key, value] of Object.entries(puts)) s.put(value, key);
  });
});

// Every entry of a store as JSON text of {key: value}.
export const kvItems = plainErrors((store) => {
  return inTransaction(appDatabase(), store, "readonly", async (s) => {
    const [keys, values] = await Promise.all([requestPromise(s.getAllKeys()), requestPromise(s.getAll())]);
    const out = {};
    keys.forEach((key, i) => { out[key] = values[i]; });
    return JSON.stringify(out);
  });
});

// ------------------------------------------------------------------ stores named by Python
//
// web-llm's own model stores. Which store, which names, which keys and what shape each value has
// depend on the web-llm release, and Python decides all of it (app/models/layout.py): each call
// carries a store spec, and this code only opens what the spec names and puts, lists and deletes.
//   {type: "cache", name}                       Cache API: caches.open(name), Request(key) -> Response
//   {type: "indexeddb", database, version, objectStore, keyPath, valueField}
//                                               value {[keyPath]: key, [valueField]: data}
//   {type: "opfs", directory: [names], payloadSuffix, recordSuffix, keyField, sizeField, typeField}
//                                               <directory>/<file><payloadSuffix> + <file><recordSuffix>
// An entry is {key, storetype: "json" | "arraybuffer" (how an IndexedDB value is kept),
// file and record (OPFS: the files' base name and the record's fields)}.

async function cacheExists(name) {
  return "caches" in self && (await caches.has(name));
}

async function databaseExists(name) {
  const known = await indexedDB.databases();
  return known.some((db) => db.name === name);
}

const databases = new Map();
function database(spec) {
  const id = JSON.stringify([spec.database, spec.version, spec.objectStore, spec.keyPath]);
  if (!databases.has(id)) {
    databases.set(id, connection(spec.database, spec.version, (db) => {
      if (!db.objectStoreNames.contains(spec.objectStore)) db.createObjectStore(spec.objectStore, {keyPath: spec.keyPath});
    }));
  }
  return databases.get(id)();
}

async function directory(spec, create) {
  if (!navigator.storage || typeof navigator.storage.getDirectory !== "function") return null;
  try {
    let dir = await navigator.storage.getDirectory();
    for (const name of spec.directory) dir = await dir.getDirectoryHandle(name, {create});
    return dir;
  } catch (e) {
    if (e.name === "NotFoundError") return null;
    throw e;
  }
}

function sizeOf(data) {
  if (data instanceof ArrayBuffer) return data.byteLength;
  if (ArrayBuffer.isView(data)) return data.byteLength;
  if (data instanceof Blob) return data.size;
  return new TextEncoder().encode(JSON.stringify(data)).byteLength;
}

// Every entry of one store as [{key, bytes}], without creating the store.
async function listEntries(spec) {
  const out = [];
  if (spec.type === "cache") {
    if (!(await cacheExists(spec.name))) return out;
    const cache = await caches.open(spec.name);
    for (const request of await cache.keys()) {
      const response = await cache.match(request);
      out.push({key: request.url, bytes: response ? (await response.blob()).size : 0});
    }
  } else if (spec.type === "indexeddb") {
    if (!(await databaseExists(spec.database))) return out;
    await inTransaction(database(spec), spec.objectStore, "readonly", (store) => new Promise((resolve, reject) => {
      // One value at a time: getAll() would hold every shard in memory at once.
      const cursor = store.openCursor();
      cursor.onsuccess = () => {
        const c = cursor.result;
        if (!c) { resolve(); return; }
        out.push({key: c.value[spec.keyPath], bytes: sizeOf(c.value[spec.valueField])});
        c.continue();
      };
      cursor.onerror = () => reject(plainError(cursor.error));
    }));
  } else if (spec.type === "opfs") {
    const dir = await directory(spec, false);
    if (!dir) return out;
    for await (const [name, handle] of dir.entries()) {
      if (!name.endsWith(spec.recordSuffix)) continue;
      const record = JSON.parse(await (await handle.getFile()).text());
      const payload = name.slice(0, -spec.recordSuffix.length) + spec.payloadSuffix;
      let bytes = 0;
      try {
        bytes = (await (await dir.getFileHandle(payload)).getFile()).size;
      } catch (e) { if (e.name !== "NotFoundError") throw e; }
      out.push({key: record[spec.keyField], bytes});
    }
  } else {
    throw new Error(`unknown store type ${spec.type}`);
  }
  return out;
}

export const listStore = plainErrors(async (specJson) => {
  return JSON.stringify(await listEntries(JSON.parse(specJson)));
});

async function removeEntries(spec, entries) {
  if (spec.type === "cache") {
    if (!(await cacheExists(spec.name))) return;
    const cache = await caches.open(spec.name);
    await Promise.all(entries.map((entry) => cache.delete(entry.key)));
  } else if (spec.type === "indexeddb") {
    if (!(await databaseExists(spec.database))) return;
    await inTransaction(database(spec), spec.objectStore, "readwrite", (store) => {
      entries.forEach((entry) => store.delete(entry.key));
    });
  } else if (spec.type === "opfs") {
    const dir = await directory(spec, false);
    if (!dir) return;
    for (const entry of entries) {
      for (const name of [entry.file + spec.recordSuffix, entry.file + spec.payloadSuffix]) {
        try { await dir.removeEntry(name); } catch (e) { if (e.name !== "NotFoundError") throw e; }
      }
    }
  } else {
    throw new Error(`unknown store type ${spec.type}`);
  }
}

export const deleteEntries = plainErrors(async (specJson, entriesJson) => {
  await removeEntries(JSON.parse(specJson), JSON.parse(entriesJson));
});

// Write one whole file into a store, in the shape the spec and entry say.
async function commitEntry(spec, entry, blob, contentType) {
  if (spec.type === "cache") {
    const headers = {"content-length": String(blob.size)};
    if (contentType) headers["content-type"] = contentType;
    await (await caches.open(spec.name)).put(entry.key, new Response(blob, {headers}));
  } else if (spec.type === "indexeddb") {
    const data = entry.storetype === "json" ? JSON.parse(await blob.text()) : await blob.arrayBuffer();
    await inTransaction(database(spec), spec.objectStore, "readwrite", (store) => {
      store.put({[spec.keyPath]: entry.key, [spec.valueField]: data});
    });
  } else if (spec.type === "opfs") {
    const dir = await directory(spec, true);
    // The payload first, then the record: an entry without its record reads as absent.
    const payload = await (await dir.getFileHandle(entry.file + spec.payloadSuffix, {create: true})).createWritable();
    await payload.write(blob);
    await payload.close();
    const record = {...entry.record};
    if (spec.sizeField) record[spec.sizeField] = blob.size;
    if (contentType && spec.typeField) record[spec.typeField] = contentType;
    const writer = await (await dir.getFileHandle(entry.file + spec.recordSuffix, {create: true})).createWritable();
    await writer.write(JSON.stringify(record));
    await writer.close();
  } else {
    throw new Error(`unknown store type ${spec.type}`);
  }
}

// ------------------------------------------------------------------ staging of partial downloads
//
// A staged part is {id, etag, modified, total, offset, blob} under "<url>#<part index>": `id` names
// the download that began the file at byte 0, `etag`/`modified` are the validators and `total` the
// length its first response carried, `offset` where the part's bytes begin. A resume uses only the
// parts that continue one another from byte 0 within one download (same id, no gap): parts written by
// another download of the same URL (a second tab in a browser without Web Locks) are never stitched.

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

// The staged parts a resume may use: all of them when they continue one another from byte 0 within
// one download, else none (a part of an older format, of another download, or after a gap).
function resumableParts(parts) {
  let offset = 0;
  for (const part of parts) {
    const ok = part && part.blob instanceof Blob && part.id && part.id === parts[0].id &&
      part.offset === offset && part.total === parts[0].total;
    if (!ok) return null;
    offset += part.blob.size;
  }
  return parts;
}

async function stagePart(url, index, part) {
  await inTransaction(appDatabase(), "staging", "readwrite", (store) => { store.put(part, `${url}#${index}`); });
}

async function unstage(urls) {
  await inTransaction(appDatabase(), "staging", "readwrite", (store) => {
    urls.forEach((url) => store.delete(stagingKeys(url)));
  });
}

function partSize(value) {
  if (value instanceof Blob) return value.size;  // a part staged before parts carried their download
  return value && value.blob instanceof Blob ? value.blob.size : 0;
}

// {url: bytes staged} for every partially downloaded file.
export const listStaging = plainErrors(async () => {
  return inTransaction(appDatabase(), "staging", "readonly", (store) => new Promise((resolve, reject) => {
    const out = {};
    const cursor = store.openCursor();
    cursor.onsuccess = () => {
      const c = cursor.result;
      if (!c) { resolve(JSON.stringify(out)); return; }
      const url = c.key.slice(0, c.key.lastIndexOf("#"));
      out[url] = (out[url] || 0) + partSize(c.value);
      c.continue();
    };
    cursor.onerror = () => reject(plainError(cursor.error));
  }));
});

export const deleteStaging = plainErrors(async (urlsJson) => {
  await unstage(JSON.parse(urlsJson));
});

// ------------------------------------------------------------------ one file download
//
// Streams `url` into memory, reporting bytes as they arrive; parts are staged in IndexedDB at most
// every STAGE_INTERVAL_MS, so a reload or a dropped connection loses little, and a fast download
// (which needs no resume) is not written twice. A staged file resumes with an HTTP Range request
// carrying If-Range (its strong ETag, else its Last-Modified): a 200 means the file changed (or the
// server ignores ranges) and it starts over from byte 0; a 206 is used only when its Content-Range
// starts at the staged offset and has the staged total, else the staged bytes are dropped and the
// file fetched again whole. Only a whole file, of the expected size and (when the manifest gives
// one) the expected MD5, is committed to the store `spec.store` names.
//
// One download of a file at a time per store, across the origin's tabs: each holds a Web Lock named
// after the store and URL while it fetches, stages and commits. A download that has to wait reports
// it (onWaiting(true)) and, once it holds the lock, first looks whether the file is stored by then.
// Cancel works while waiting (the lock request takes the download's AbortSignal). Without
// navigator.locks, downloads are not serialised (staged parts of two downloads are still never
// stitched, above).

const STAGE_INTERVAL_MS = 2000;
const REPORT_INTERVAL_MS = 100;

function failure(name, message, extra = {}) {
  const error = new Error(message);
  error.name = name;
  return Object.assign(error, extra);
}

function storeName(spec) {
  return spec.type === "cache" ? spec.name : spec.type === "indexeddb" ? spec.database : spec.directory.join("/");
}

// `work()` while holding this file's lock; onWaiting(true) first if another download holds it.
async function withFileLock(store, url, signal, onWaiting, work) {
  const locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
  if (!locks || typeof locks.request !== "function") return work();
  const name = `webllm-py download ${store.type}:${storeName(store)} ${url}`;
  const busy = {};
  // ifAvailable cannot be combined with a signal; the wait below takes the signal.
  const first = await locks.request(name, {ifAvailable: true}, async (lock) => (lock ? {value: await work()} : busy));
  if (first !== busy) return first.value;
  onWaiting(true);
  return locks.request(name, {signal}, async () => {
    onWaiting(false);
    return work();
  });
}

// Size of the entry stored under `entry.key`, or -1 when there is none (nothing is created).
async function storedSize(spec, entry) {
  if (spec.type === "cache") {
    if (!(await cacheExists(spec.name))) return -1;
    const response = await (await caches.open(spec.name)).match(entry.key);
    return response ? (await response.blob()).size : -1;
  } else if (spec.type === "indexeddb") {
    if (!(await databaseExists(spec.database))) return -1;
    return inTransaction(database(spec), spec.objectStore, "readonly", async (store) => {
      const value = await requestPromise(store.get(entry.key));
      return value ? sizeOf(value[spec.valueField]) : -1;
    });
  } else if (spec.type === "opfs") {
    const dir = await directory(spec, false);
    if (!dir) return -1;
    try {
      await dir.getFileHandle(entry.file + spec.recordSuffix);
      return (await (await dir.getFileHandle(entry.file + spec.payloadSuffix)).getFile()).size;
    } catch (e) {
      if (e.name === "NotFoundError") return -1;
      throw e;
    }
  }
  throw new Error(`unknown store type ${spec.type}`);
}

// The validator a resume sends as If-Range: a strong ETag, else Last-Modified (null: none).
function validator(part) {
  if (part.etag && !part.etag.startsWith("W/")) return part.etag;
  return part.modified || null;
}

// Whether a 206 answers the range asked: bytes from `offset` to the end of the file the staged parts
// began (its length, -1 when the first response gave none; and its strong ETag, when both have one).
function rangeFits(response, offset, first) {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec((response.headers.get("content-range") || "").trim());
  if (!match) return false;
  const [start, end, length] = match.slice(1).map(Number);
  const etag = response.headers.get("etag");
  const strong = (tag) => Boolean(tag) && !tag.startsWith("W/");
  if (strong(etag) && strong(first.etag) && etag !== first.etag) return false;
  return start === offset && (first.total < 0 || length === first.total) && end === length - 1;
}

async function get(url, signal, headers = {}) {
  try {
    // Not through the HTTP cache: the file goes into the store, and a second copy on disk costs time.
    return await fetch(url, {signal, headers, cache: "no-store"});
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw failure("NetworkError", `could not fetch ${url}: ${e.message}`);
  }
}

// The response to read `url` from, resuming after `parts` when they still hold: {response, parts}.
async function openFile(url, parts, signal) {
  const offset = parts.reduce((n, p) => n + p.blob.size, 0);
  const ifRange = parts.length ? validator(parts[0]) : null;
  if (offset > 0 && ifRange) {
    const response = await get(url, signal, {Range: `bytes=${offset}-`, "If-Range": ifRange});
    if (response.status === 206 && rangeFits(response, offset, parts[0])) return {response, parts};
    if (!response.ok && response.status !== 416) return {response, parts};  // an HTTP error: kept for later
    await unstage([url]);  // changed, ranges ignored, or a range not the one asked: nothing is stitched
    if (response.status === 200) return {response, parts: []};
    await response.body?.cancel().catch(() => {});
  } else if (parts.length) {
    await unstage([url]);  // no validator: the staged bytes cannot be shown to be this file's
  }
  return {response: await get(url, signal), parts: []};
}

// Whether a 206 holds exactly the segment asked: bytes `offset`..`last` of a file of `total` bytes,
// with the validators of the response that began the file (`origin`; null for the first segment).
// A host that does not expose Content-Range to CORS (the header reads as null) is taken at its 206:
// a single range answered in part is the range asked, and the segment's length is checked after.
function segmentFits(response, offset, last, total, origin) {
  const range = response.headers.get("content-range");
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec((range || "").trim());
  if (range !== null && !match) return false;
  const [start, end, length] = match ? match.slice(1).map(Number) : [offset, last, total];
  if (start !== offset || end !== last || length !== total) return false;
  if (origin === null) return true;
  const strong = (tag) => Boolean(tag) && !tag.startsWith("W/");
  const etag = response.headers.get("etag"), modified = response.headers.get("last-modified");
  if (strong(etag) && strong(origin.etag)) return etag === origin.etag;
  return !(modified && origin.modified && modified !== origin.modified);
}

// A large file (at least two segments) in HTTP Range segments of `segment` bytes, each read by the
// browser itself into a Blob (`response.blob()`): its bytes never pass through this page's
// JavaScript, which for a fast connection costs a third of the download's time (bench/download.py).
// Bytes are reported per segment, the segments received are staged on the same timer as a stream's
// parts (and when the download stops), and a resume continues after the staged parts with If-Range.
// Every segment must answer 206 with the Content-Range asked and the validators of the file's first
// response; otherwise the staged bytes are dropped and the file is streamed whole from a plain GET.
// Returns {size} once the file is committed, {response} when the server sent the whole file (a 200:
// it ignores ranges, or If-Range said the file changed) for the stream path to read, or {} to start
// over with the stream path.
// Files that go in segments take turns, SEGMENTED_AT_ONCE at a time (smaller files stream beside
// them): a segment in flight is lost whole when the connection drops, so this bounds what a cut costs
// to SEGMENTED_AT_ONCE segments. Two were as fast as four on the local benchmark (bench/download.py).
const SEGMENTED_AT_ONCE = 2;
let segmentedRunning = 0;
const segmentedWaiting = [];

async function segmentedTurn(signal) {
  while (segmentedRunning >= SEGMENTED_AT_ONCE) {
    await new Promise((resolve, reject) => {
      const waiter = () => { signal.removeEventListener("abort", cancelled); resolve(); };
      const cancelled = () => {
        segmentedWaiting.splice(segmentedWaiting.indexOf(waiter), 1);
        reject(failure("AbortError", "download cancelled before it began"));
      };
      segmentedWaiting.push(waiter);
      signal.addEventListener("abort", cancelled, {once: true});
    });
  }
  segmentedRunning += 1;
  return () => {
    segmentedRunning -= 1;
    segmentedWaiting.shift()?.();
  };
}

async function segmentedFile(url, store, entry, expected, expectedMd5, segment, staged, controller, onProgress) {
  const signal = controller.signal;
  if (signal.aborted) throw failure("AbortError", `download of ${url} cancelled`);
  const done = await segmentedTurn(signal);
  try {
    return await segmentedFileNow(url, store, entry, expected, expectedMd5, segment, staged, controller, onProgress);
  } finally {
    done();
  }
}

async function segmentedFileNow(url, store, entry, expected, expectedMd5, segment, staged, controller, onProgress) {
  const signal = controller.signal;
  const blobs = staged.map((p) => p.blob);
  let offset = blobs.reduce((n, b) => n + b.size, 0);
  let origin = staged.length ? {id: staged[0].id, etag: staged[0].etag, modified: staged[0].modified,
                                 total: staged[0].total} : null;
  if (origin !== null && (origin.total !== expected || !validator(origin))) {
    await unstage([url]);  // not this file's size, or no validator to show the staged bytes are its own
    blobs.length = 0;
    offset = 0;
    origin = null;
  }
  onProgress(offset, true);
  const md5 = expectedMd5 ? offThreadMd5() : null;
  blobs.forEach((b) => md5?.add(b));
  let contentType = null;
  let index = blobs.length, stagedCount = blobs.length, stagedBytes = offset;
  let staging = Promise.resolve();
  let stageFailure = null;
  const stage = () => {
    if (stageFailure || stagedCount === blobs.length) return staging;
    const part = {...origin, offset: stagedBytes, blob: new Blob(blobs.slice(stagedCount))};
    stagedBytes += part.blob.size;
    stagedCount = blobs.length;
    const n = index++;
    staging = staging.then(() => (stageFailure ? undefined : stagePart(url, n, part))).catch((e) => {
      if (stageFailure) return;
      stageFailure = plainError(e);  // the quota: the download ends with it
      controller.abort();
    });
    return staging;
  };
  const startOver = async (result) => {
    md5?.drop();
    await staging;
    await unstage([url]);
    return result;
  };
  let resuming = origin !== null;  // the first request after staged parts carries If-Range
  const timer = setInterval(stage, STAGE_INTERVAL_MS);
  try {
    while (offset < expected) {
      // One segment at a time: a request for the next one sent before this one's bytes are in
      // (more connections at once) made the download slower, not faster (bench/download.py).
      const last = Math.min(expected, offset + segment) - 1;
      const headers = {Range: `bytes=${offset}-${last}`};
      if (resuming) headers["If-Range"] = validator(origin);  // a 200 then says the file changed
      const response = await get(url, signal, headers);
      if (response.status === 200) return await startOver({response});
      if (!response.ok && response.status !== 416) {
        await response.body?.cancel().catch(() => {});
        throw failure("HttpError", `GET ${url} answered ${response.status}`, {status: response.status});
      }
      if (response.status !== 206 || !segmentFits(response, offset, last, expected, origin)) {
        await response.body?.cancel().catch(() => {});
        return await startOver({});
      }
      if (origin === null) {
        origin = {id: crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`,
                  etag: response.headers.get("etag"), modified: response.headers.get("last-modified"),
                  total: expected};
      }
      contentType = contentType ?? response.headers.get("content-type");
      const blob = await response.blob();
      if (blob.size !== last - offset + 1) return await startOver({});  // not the range asked (its header unread)
      blobs.push(blob);
      offset += blob.size;
      resuming = false;
      md5?.add(blob);
      onProgress(blob.size, false);
    }
  } catch (e) {
    clearInterval(timer);
    md5?.drop();
    await staging;
    if (stageFailure) throw stageFailure;
    await stage();  // keep what arrived, for the resume
    if (stageFailure) throw stageFailure;
    if (signal.aborted) throw failure("AbortError", `download of ${url} cancelled`);
    if (e.name === "HttpError" || e.name === "NetworkError") throw e;
    throw failure("NetworkError", `the connection dropped while fetching ${url}: ${e.message}`, {received: offset});
  } finally {
    clearInterval(timer);
  }
  await staging;  // never rejects: a refused part is in stageFailure (the file is whole regardless)
  if (md5) {
    const digest = await md5.hex();
    if (digest !== expectedMd5.toLowerCase()) {
      await unstage([url]);
      throw failure("ChecksumMismatch", `${url}: the downloaded bytes have md5 ${digest}, the ` +
                    `model's manifest says ${expectedMd5}; nothing of this file was stored`);
    }
  }
  try {
    await writeEntry(store, entry, new Blob(blobs), contentType);
  } catch (e) {
    if (e.name === "QuotaExceededError") throw plainError(e);
    await stage();  // the file is whole: kept for the next try
    throw e;
  }
  await unstage([url]);
  return {size: offset};
}

export function startDownload(spec, onProgress, onWaiting) {
  const {url, store, entry, expected, md5: expectedMd5, segment = 0} = JSON.parse(spec);
  const controller = new AbortController();
  const waiting = (flag) => { if (onWaiting) onWaiting(flag); };
  const fetchFile = async () => {
    // Stored meanwhile (by another tab, or a twin id's download in this one)? Then it is done.
    const have = await storedSize(store, entry);
    const parsed = store.type === "indexeddb" && entry.storetype === "json";
    if (have >= 0 && (expected < 0 || have === expected || parsed)) {
      await unstage([url]);
      onProgress(have, true);
      return have;
    }
    const staged = resumableParts(await stagedParts(url));
    if (staged === null) await unstage([url]);
    let opened = null, held = staged || [];
    if (segment > 0 && expected >= 2 * segment) {
      const outcome = await segmentedFile(url, store, entry, expected, expectedMd5, segment, held,
                                          controller, onProgress);
      if (outcome.size !== undefined) return outcome.size;
      held = [];  // dropped: the file is streamed from byte 0
      if (outcome.response) opened = {response: outcome.response, parts: []};  // the whole file came
    }
    opened = opened || await openFile(url, held, controller.signal);
    const {response} = opened;
    let parts = opened.parts;
    if (!response.ok) throw failure("HttpError", `GET ${url} answered ${response.status}`, {status: response.status});
    if (response.status !== 200 && !parts.length) {
      await response.body?.cancel().catch(() => {});
      throw failure("HttpError", `GET ${url} answered ${response.status} to a request for the whole file`,
                    {status: response.status});
    }
    const offset = parts.reduce((n, p) => n + p.blob.size, 0);
    const length = response.headers.get("content-length");
    // What every part of this download carries: set by the response that began the file at byte 0.
    const origin = parts.length ? {id: parts[0].id, etag: parts[0].etag, modified: parts[0].modified, total: parts[0].total}
      : {id: crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`,
         etag: response.headers.get("etag"), modified: response.headers.get("last-modified"),
         total: length === null ? -1 : Number(length)};
    onProgress(offset, true);  // bytes already held (staged), reported as this file's new count
    const contentType = response.headers.get("content-type");
    const reader = response.body.getReader();
    const md5 = expectedMd5 ? offThreadMd5() : null;
    let index = parts.length, pending = [], pendingBytes = 0, got = offset, reported = offset, stagedBytes = offset;
    let rejected = null;  // the whole file is not the one the manifest describes: nothing of it is kept
    // Bytes are reported at most every REPORT_INTERVAL_MS, and never left unreported longer.
    let reportTimer = null;
    const report = () => {
      reportTimer = null;
      if (got !== reported) { onProgress(got - reported, false); reported = got; }
    };
    // The file as a stream: staged parts first, then bytes as they arrive (counted, hashed, and kept
    // until staged). Written straight into the store, so a file is never assembled twice in memory;
    // a file of the wrong size or checksum errors the stream at its end, so the store keeps nothing.
    const replay = parts.map((p) => p.blob);
    parts = null;
    const body = new ReadableStream({
      async pull(c) {
        if (replay.length) {
          const bytes = new Uint8Array(await replay.shift().arrayBuffer());
          if (md5) md5.update(bytes);
          c.enqueue(bytes);
          return;
        }
        const {done, value} = await reader.read();
        if (done) {
          if (expected >= 0 && got !== expected) {
            rejected = failure("SizeMismatch", `${url}: expected ${expected} bytes, received ${got}`, {received: got});
          } else if (md5) {
            const digest = await md5.hex();
            if (digest !== expectedMd5.toLowerCase()) {
              rejected = failure("ChecksumMismatch", `${url}: the downloaded bytes have md5 ${digest}, the ` +
                                 `model's manifest says ${expectedMd5}; nothing of this file was stored`);
            }
          }
          if (rejected) c.error(rejected); else c.close();
          return;
        }
        pending.push(value); pendingBytes += value.byteLength; got += value.byteLength;
        if (md5) md5.update(value);
        if (reportTimer === null) reportTimer = setTimeout(report, REPORT_INTERVAL_MS);
        c.enqueue(value);
      },
      cancel(reason) { return reader.cancel(reason); },
    }, {highWaterMark: 16});  // read ahead of the store: the network never waits on one chunk's write
    // Staging runs on a timer, not per chunk, so a stalled stream is staged too. Parts get their
    // index and offset when taken, so they stay in order however the writes interleave. A refused
    // part (the quota) ends the download at once with that error: the network is dropped, so the
    // store's write fails and nothing waits on a stream that will never be staged.
    let staging = Promise.resolve();
    let stageFailure = null;
    const stage = () => {
      if (stageFailure || rejected || !pendingBytes) return staging;
      const part = {...origin, offset: stagedBytes, blob: new Blob(pending)};
      stagedBytes += pendingBytes;
      pending = []; pendingBytes = 0;
      const n = index++;
      staging = staging.then(() => (stageFailure ? undefined : stagePart(url, n, part))).catch((e) => {
        if (stageFailure) return;
        stageFailure = plainError(e);
        controller.abort();
        reader.cancel(stageFailure).catch(() => {});
      });
      return staging;
    };
    const timer = setInterval(stage, STAGE_INTERVAL_MS);
    try {
      await writeEntry(store, entry, body, contentType);
    } catch (e) {
      clearInterval(timer);
      md5?.drop();
      await staging;
      if (rejected) {
        await removeEntries(store, [entry]);
        await unstage([url]);
        throw rejected;
      }
      if (stageFailure) throw stageFailure;
      if (e.name === "QuotaExceededError") throw plainError(e);
      await stage();  // keep what arrived, for the resume
      if (stageFailure) throw stageFailure;
      if (controller.signal.aborted) throw failure("AbortError", `download of ${url} cancelled`);
      throw failure("NetworkError", `the connection dropped while fetching ${url}: ${e.message}`, {received: got});
    } finally {
      clearInterval(timer);
      clearTimeout(reportTimer);
      report();
    }
    await staging;  // never rejects: a refused part is in stageFailure (the file is whole regardless)
    if (expected >= 0 && got !== expected) {  // checked in the stream already; kept as the last word
      await removeEntries(store, [entry]);
      await unstage([url]);
      throw failure("SizeMismatch", `${url}: expected ${expected} bytes, received ${got}`, {received: got});
    }
    await unstage([url]);
    return got;
  };
  const run = () => withFileLock(store, url, controller.signal, waiting, fetchFile);
  const promise = run().catch((e) => { throw plainError(e); });
  promise.catch(() => {});  // the caller awaits it; keep an early rejection from being "unhandled"
  return {wait: () => promise, cancel: () => controller.abort()};
}

// A whole file, from a stream or a Blob, into a store. The Cache API takes the stream as it comes
// (and a Blob without reading it); the others need the whole file first (IndexedDB keeps an
// ArrayBuffer or parsed JSON).
async function writeEntry(store, entry, body, contentType) {
  if (store.type === "cache") {
    const headers = contentType ? {"content-type": contentType} : {};
    await (await caches.open(store.name)).put(entry.key, new Response(body, {headers}));
  } else {
    await commitEntry(store, entry, body instanceof Blob ? body : await new Response(body).blob(), contentType);
  }
}

// Content-Length of `url` from a HEAD request (-1 when the server does not say).
export const headSize = plainErrors(async (url) => {
  let response;
  try {
    response = await fetch(url, {method: "HEAD"});
  } catch (e) {
    throw failure("NetworkError", `could not reach ${url}: ${e.message}`);
  }
  if (!response.ok) throw failure("HttpError", `HEAD ${url} answered ${response.status}`, {status: response.status});
  const length = response.headers.get("content-length");
  return length === null ? -1 : Number(length);
});

export const fetchText = plainErrors(async (url) => {
  let response;
  try {
    response = await fetch(url);
  } catch (e) {
    throw failure("NetworkError", `could not reach ${url}: ${e.message}`);
  }
  if (!response.ok) throw failure("HttpError", `GET ${url} answered ${response.status}`, {status: response.status});
  return response.text();
});

export const estimate = plainErrors(async () => {
  const e = await navigator.storage.estimate();
  const persisted = navigator.storage.persisted ? await navigator.storage.persisted() : false;
  return JSON.stringify({usage: e.usage ?? 0, quota: e.quota ?? 0, persisted});
});

export const persist = plainErrors(async () => {
  return navigator.storage.persist ? await navigator.storage.persist() : false;
});

// A small file already in hand (the config and tensor manifest read while planning), committed
// without fetching it again, so the stored manifest is the one the plan was made from.
export const commitText = plainErrors(async (specJson, entryJson, text) => {
  await commitEntry(JSON.parse(specJson), JSON.parse(entryJson), new Blob([text]), "application/json");
});
