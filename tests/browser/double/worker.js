// Test build of static/webllm-worker.js: the browser tests serve this file in its place, and
// engine_double.js at static/engine-double.js.
//
// Everything below is web-llm 0.2.86 running for real (the worker message handler, MLCEngine's
// reload/unload, chatCompletion, request validation, streaming, interruptGenerate, locks, usage,
// tool-call parsing) except what needs a compiled model on a GPU: installEngineDouble() replaces
// MLCEngine.prototype.reloadInternal (download + compile + LLMChatPipeline) with one that puts a
// FakePipeline into the engine's own maps. See the top of engine_double.js.
import { MLCEngine, WebWorkerMLCEngineHandler } from "./vendor/web-llm/index.js";
import { installEngineDouble } from "./engine-double.js";
import { serveLifeline } from "./bridge/lifeline.js";

installEngineDouble(MLCEngine);
const handler = new WebWorkerMLCEngineHandler();
self.onmessage = (message) => serveLifeline(message) || handler.onmessage(message);
