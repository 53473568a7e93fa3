// Chrome's built-in model (the Prompt API, `LanguageModel`) for app/ffi/prompt_api.py.

// Every rejection that crosses to Python must be a plain Error: in Pyodide 314, awaiting a promise
// rejected with a non-Error (web-llm's worker rejects with strings) never settles on the Python side,
// nor does one rejected with a QuotaExceededError instance (the DOMException subclass the Prompt API
// uses for overflow). The name is kept, so Python can tell failures apart (app/ffi/*.py).
function plainError(e) {
  const error = new Error(String(e && e.message !== undefined ? e.message : e));
  error.name = (e && e.name) || "Error";
  return error;
}

export async function call(op, session, arg, options, controller, progress) {
  try {
    switch (op) {
      case "availability": return await LanguageModel.availability(arg);
      case "create": {
        const opts = Object.assign({}, arg, { signal: controller.signal });
        if (progress) opts.monitor = (m) => m.addEventListener("downloadprogress", (e) => progress(e.loaded));
        return await LanguageModel.create(opts);
      }
      case "prompt": return await session.prompt(arg, Object.assign({}, options, { signal: controller.signal }));
      case "stream": {
        const stream = session.promptStreaming(arg, Object.assign({}, options, { signal: controller.signal }));
        return (async function* () {
          try { for await (const piece of stream) yield piece; } catch (e) { throw plainError(e); }
        })();
      }
      case "measure": {
        const measure = session.measureContextUsage || session.measureInputUsage;  // the older name
        return measure ? await measure.call(session, arg, options) : null;
      }
    }
    throw new TypeError("unknown Prompt API operation " + op);
  } catch (e) {
    throw plainError(e);
  }
}

// `{used: contextUsage, window: contextWindow}` as JSON (older Chrome: inputUsage/inputQuota); null for
// what this browser does not say (an infinite window included).
export function usage(s) {
  const used = s.contextUsage ?? s.inputUsage, window = s.contextWindow ?? s.inputQuota;
  return JSON.stringify({ used: Number.isFinite(used) ? used : null, window: Number.isFinite(window) ? window : null });
}
