// Every rejection that crosses to Python must be a plain Error: in Pyodide 314, awaiting a promise
// rejected with a non-Error (web-llm's worker rejects with strings) never settles on the Python side,
// nor does one rejected with a QuotaExceededError instance (the DOMException subclass the Prompt API
// uses for overflow). The name is kept, so Python can tell failures apart (app/ffi/*.py).
export function plainError(e) {
  const error = new Error(String(e && e.message !== undefined ? e.message : e));
  error.name = (e && e.name) || "Error";
  return error;
}
