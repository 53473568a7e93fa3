// Storage glue for app/ffi.py: the app's own IndexedDB key-value stores, and (below) the stores
// web-llm itself reads model files from. Python never sees a JS object from here: values cross as
// JSON text, so JS null/undefined come back to Python as None.

// ------------------------------------------------------------------ the app's own key-value stores

const APP_DB = "webllm-py";
const APP_DB_VERSION = 1;
// One object store per purpose; keys are strings, values structured-cloneable data.
// `staging` holds parts of interrupted downloads (Blobs), keyed "<url>#<part index>".
export const APP_STORES = ["models", "usage", "staging", "conversations", "settings"];

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
