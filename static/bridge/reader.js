// A reader drains an async iterable at JS speed into a queue; Python (app/ffi/_reader.py) takes
// everything queued so far as one JSON array per bridge crossing. Awaiting a JS promise from Python
// costs a trip through Pyodide's event loop, so one crossing per chunk would make Python the
// bottleneck of fast streams. The first item wakes Python at once; later ones are gathered for up to
// 2 ms (well under a frame), so a fast stream costs one wake-up per batch, a slow one gets each item
// as it comes. Items cross as JSON: a web-llm chunk arrives in Python as a dict, an SSE data text as
// a str.
export function reader(source) {
  const state = { queue: [], done: false, error: null, wake: null, timer: null, first: true };
  const wake = () => {
    state.timer = null;
    if (state.wake) { const w = state.wake; state.wake = null; w(); }
  };
  const soon = () => {
    if (state.first) { state.first = false; wake(); }
    else if (state.timer === null) state.timer = setTimeout(wake, 2);
  };
  const finished = (async () => {
    try { for await (const item of source) { state.queue.push(JSON.stringify(item)); soon(); } }
    catch (e) { state.error = e instanceof Error ? e : new Error(String(e)); }
    finally { state.done = true; if (state.timer !== null) clearTimeout(state.timer); wake(); }
  })();
  const flush = () => {
    if (state.queue.length) { const out = "[" + state.queue.join(",") + "]"; state.queue = []; return out; }
    if (state.error) throw state.error;
    return null;
  };
  return {
    // A wake-up can find the queue already taken (a timer set for items a previous take got): wait on.
    take: async () => {
      while (!state.queue.length && !state.done) await new Promise((resolve) => { state.wake = resolve; });
      return flush();
    },
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
