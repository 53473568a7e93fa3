// The worker's end of the lifeline in static/bridge/engine.js: the page's first message names a Web
// Lock; the worker takes it and holds it for as long as it lives, so the page, queued for the same
// lock, is granted it exactly when the worker is gone. Returns true for that message (web-llm's
// handler must not see it).
export function serveLifeline(message) {
  if (message.data?.kind !== "app.lifeline") return false;
  const port = message.ports[0];
  navigator.locks.request(message.data.name, () => {
    port.postMessage("held");
    port.close();
    return new Promise(() => {});  // never released while the worker lives
  });
  return true;
}
