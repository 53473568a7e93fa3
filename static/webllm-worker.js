// Module worker hosting web-llm's engine. The page creates it lazily (app/ffi.py) when a model is
// first loaded; every request arrives through web-llm's own worker message protocol.
import { WebWorkerMLCEngineHandler } from "./vendor/web-llm/index.js";

const handler = new WebWorkerMLCEngineHandler();
self.onmessage = (message) => handler.onmessage(message);
