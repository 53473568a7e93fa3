// A reader drains an async iterable at JS speed into a queue; Python (app/ffi/_reader.py) takes
// everything queued so far as one JSON array per bridge crossing.
//
// Nothing waits to be batched: when an item arrives for a waiting Python, its wake-up is posted at
// once as a task of its own (a MessageChannel message, no timer), and Python then takes whatever
// has arrived by the time it runs. A slow stream crosses item by item; a fast one crosses in
// batches only because items pile up while Python is busy. Waking is a plain call of a Python
// function (`next(waker)`), not a promise Python awaits: awaiting a JS promise costs Pyodide two
// callback proxies and a trip through its event loop per crossing.
//
// The next item is asked for before Python is woken for this one, and Python runs in a task after
// this one: a pull-based source (web-llm's worker engine asks its worker for each chunk) has sent
// its next request before Python starts, so the worker makes the next chunk while Python handles
// this one.
//
// `source` is an async iterable or a promise of one; `encode` turns an item into JSON text (a
// web-llm chunk arrives in Python as a dict, an SSE data text as a str).

// Readers that have something for their waiting Python; one task wakes them all.
const due = new Set();
const channel = new MessageChannel();
channel.port1.onmessage = () => {
  const woken = [...due];
  due.clear();
  for (const wake of woken) wake();
};

export function reader(source, encode = JSON.stringify) {
  const state = { queue: [], done: false, error: null, waiter: null };
  const wakeNow = () => {
    const waiter = state.waiter;
    if (waiter === null) return;
    state.waiter = null;
    try { waiter(); } catch (e) { /* the Python side let go of its stream (a destroyed proxy) */ }
  };
  const wake = () => {
    if (state.waiter === null || due.has(wakeNow)) return;
    if (due.size === 0) channel.port2.postMessage(null);
    due.add(wakeNow);
  };
  const finished = (async () => {
    try {
      // A promise of a source (the engine's stream) is awaited; a source itself starts now, in the
      // caller's turn, as it did when read with for await.
      const iterator = (typeof source?.then === "function" ? await source : source)[Symbol.asyncIterator]();
      let next = iterator.next();
      for (;;) {
        const { done, value } = await next;
        if (done) break;
        next = iterator.next();
        state.queue.push(encode(value));
        wake();
      }
    } catch (e) {
      state.error = e instanceof Error ? e : new Error(String(e));
    } finally {
      state.done = true;
      wake();
    }
  })();
  return {
    // Everything queued, as one JSON array text; "" once the source has ended and all was taken.
    // With nothing queued yet: null, and `waker` (a Python function) is called once when something
    // comes or the source ends. Throws the source's error after the items before it.
    next: (waker) => {
      if (state.queue.length) {
        const out = state.queue.length === 1 ? "[" + state.queue[0] + "]" : "[" + state.queue.join(",") + "]";
        state.queue = [];
        return out;
      }
      if (state.error) throw state.error;
      if (state.done) return "";
      state.waiter = waker;
      return null;
    },
    // Python let go of the stream: never call its waker again.
    forget: () => { state.waiter = null; },
    finished: () => finished,
  };
}

// `await obj.a.b.method(...args)`, with a non-Error rejection turned into an Error: web-llm's worker
// engine rejects with plain strings, and in Pyodide 314 awaiting a promise rejected with a non-Error
// never settles on the Python side.
export async function callMethod(obj, path, args) {
  let self = obj;
  const names = path.split(".");
  const last = names.pop();
  for (const name of names) self = self[name];
  try { return await self[last](...args); }
  catch (e) { throw (e instanceof Error ? e : new Error(String(e))); }
}
