// Test build of static/webllm-worker.js (served in its place by the browser tests).
//
// Everything is the real web-llm 0.2.86 — the worker message handler, MLCEngine.chatCompletion,
// request validation, streaming, interruptGenerate, locks, usage and tool-call parsing — except the
// one step that needs a compiled model on a real GPU: MLCEngine.prototype.reloadInternal, which
// downloads the weights, compiles the model library and builds an LLMChatPipeline. Here it installs
// a FakePipeline (engine_double.js) into the engine's own maps instead.
import { MLCEngine, WebWorkerMLCEngineHandler } from "./vendor/web-llm/index.js";
import { installDouble } from "./engine-double.js";

installDouble(MLCEngine);
const handler = new WebWorkerMLCEngineHandler();
self.onmessage = (message) => handler.onmessage(message);
