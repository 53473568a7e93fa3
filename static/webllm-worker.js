// Module worker hosting web-llm's engine. The page creates it lazily (static/bridge/engine.js) when a
// model is first loaded; every request arrives through web-llm's own worker message protocol, except
// the lifeline by which the page notices the worker's death (static/bridge/lifeline.js).
import { WebWorkerMLCEngineHandler } from "./vendor/web-llm/index.js";
import { serveLifeline } from "./bridge/lifeline.js";

const handler = new WebWorkerMLCEngineHandler();
self.onmessage = (message) => serveLifeline(message) || handler.onmessage(message);
