// A deterministic stand-in for web-llm's LLMChatPipeline, driven by the real MLCEngine.
//
// The reply depends only on the request:
//   default                 "Echo: <last message text>", one word per decode step
//   [[tokens=N]]            exactly N tokens "t0 t1 ... t(N-1)"
//   [[delay=MS]]            wait MS ms (a real timer) before each decode step
//   [[throw=Name]]          prefill throws what web-llm throws for that failure:
//                             ContextWindowSizeExceededError, DeviceLostError (the GPU's words),
//                             QuotaExceededError (a DOMException, as the Cache API raises it)
//   response_format json_object + schema
//                           a JSON text that validates against the schema (first anyOf branch,
//                           required properties, first enum value, "x", 1, true), token by token
//   tools (function-calling model ids)
//                           the JSON array web-llm's own parser turns into tool_calls
// max_tokens ends with "length", stop strings with "stop" (text before the stop string), and
// interruptGenerate with "abort", as in web-llm.
//
// reloadInternal for a model id whose record has `double_fail`:
//   "network"  -> runs web-llm's real reloadInternal, whose fetch of the (missing) files fails
//   "device"   -> throws the real DeviceLostError path's message
// Unknown ids run the real reloadInternal too, so web-llm raises its own ModelNotFoundError.

const CONV_TEMPLATE = {
  name: "chatml-double",
  system_template: "<|im_start|>system\n{system_message}<|im_end|>\n",
  system_message: "You are a helpful assistant.",
  system_prefix_token_ids: [],
  add_role_after_system_message: true,
  roles: { user: "<|im_start|>user", assistant: "<|im_start|>assistant", tool: "<|im_start|>user" },
  role_templates: { user: "{user_message}", assistant: "{assistant_message}", tool: "{tool_message}" },
  messages: [],
  seps: ["<|im_end|>\n"],
  role_content_sep: "\n",
  role_empty_sep: "\n",
  stop_str: ["<|im_end|>"],
  stop_token_ids: [2],
  function_string: "",
  use_function_calling: false,
};

function directive(text, name) {
  const m = new RegExp(`\\[\\[${name}=([^\\]]+)\\]\\]`).exec(text);
  return m ? m[1] : undefined;
}

function exampleFor(schema) {
  if (!schema || typeof schema !== "object") return null;
  if (schema.anyOf) return exampleFor(schema.anyOf[0]);
  if (schema.oneOf) return exampleFor(schema.oneOf[0]);
  if (schema.enum) return schema.enum[0];
  if ("const" in schema) return schema.const;
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case "object": {
      const out = {};
      const props = schema.properties || {};
      const keys = schema.required || Object.keys(props);
      for (const key of keys) out[key] = exampleFor(props[key] || {});
      return out;
    }
    case "array": {
      const n = Math.max(1, schema.minItems || 1);
      return Array.from({ length: n }, () => exampleFor(schema.items || {}));
    }
    case "integer": return schema.minimum ?? 1;
    case "number": return schema.minimum ?? 1.5;
    case "boolean": return true;
    case "null": return null;
    case "string": return "x";
    default: return schema.properties ? exampleFor({ ...schema, type: "object" }) : "x";
  }
}

function messageText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.filter((p) => p.type === "text").map((p) => p.text).join("\n");
  return "";
}

// Splits JSON into small pieces so it streams like tokens.
function pieces(text, size = 4) {
  const out = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

function throwFor(name, promptTokens) {
  switch (name) {
    case "ContextWindowSizeExceededError": {
      const e = new Error(`Prompt tokens exceed context window size: number of prompt tokens: ${promptTokens}; ` +
        "context window size: 4096\nConsider shortening the prompt, or increase `context_window_size`, " +
        "or using sliding window via `sliding_window_size`.");
      e.name = name;
      throw e;
    }
    case "DeviceLostError": {
      const e = new Error("The WebGPU device was lost while loading the model. This issue often occurs due to " +
        "running out of memory (OOM). To resolve this, try reloading with a model that has fewer parameters " +
        "or uses a smaller context length.");
      e.name = name;
      throw e;
    }
    case "QuotaExceededError":
      throw new DOMException("The quota has been exceeded.", "QuotaExceededError");
    default: {
      const e = new Error(`double: ${name}`);
      e.name = name;
      throw e;
    }
  }
}

class FakePipeline {
  constructor(config, modelId) {
    this.config = config;
    this.modelId = modelId;
    this.conversation = null;
    this.resetChat();
  }

  // --- conversation / KV-cache bookkeeping, as LLMChatPipeline does it
  resetChat() {
    this.kvTokens = 0;
    this.finishReason = undefined;
    this.stopTriggered = false;
    this.outputMessage = "";
    if (this.conversation) this.conversation.messages = [];
  }
  setConversation(conv) { this.conversation = conv; }
  getConversationObject() {
    // Before the first request there is no Conversation yet (its class is not exported): an empty
    // one with the fields web-llm compares.
    return this.conversation ?? { messages: [], function_string: "", use_function_calling: false,
      override_system_message: undefined };
  }
  setSeed(seed) { this.seed = seed; }
  getSupportedInputKinds() { return undefined; }
  dispose() {}
  async sync() {}
  async asyncLoadWebGPUPipelines() {}

  // --- generation
  async prefillStep(inputStr, lastMsgRole, inputRoleStr, genConfig) {
    const started = performance.now();
    const text = messageText(inputStr);
    this.conversation.appendMessage(lastMsgRole || "user", text, inputRoleStr);
    this.conversation.appendReplyHeader("assistant");
    const prompt = this.conversation.getPromptArray().join("");
    const promptTokens = prompt.split(/\s+/).filter(Boolean).length;
    const toThrow = directive(text, "throw");
    if (toThrow) {
      this.conversation.messages.pop();
      this.conversation.messages.pop();
      throwFor(toThrow, promptTokens);
    }
    this.genConfig = genConfig || {};
    this.delay = Number(directive(text, "delay") || 0);
    this.tokens = this.plan(text, this.genConfig);
    this.emitted = 0;
    this.outputMessage = "";
    this.stopTriggered = false;
    this.finishReason = undefined;
    this.prefillTokens = Math.max(1, promptTokens - this.kvTokens);
    this.kvTokens = promptTokens;
    this.decodeTokens = 0;
    this.completionTokens = 0;
    this.logprobs = [];
    this.prefillTime = (performance.now() - started) / 1000 || 1e-4;
    this.decodeTime = 0;
    this.emitToken();  // prefill samples the first token, as the real pipeline does
  }

  plan(text, genConfig) {
    const format = genConfig.response_format;
    if (format && format.type === "json_object") {
      const schema = typeof format.schema === "string" ? JSON.parse(format.schema) : format.schema;
      const value = schema ? exampleFor(schema) : { answer: "x" };
      return pieces(JSON.stringify(this.nativeToolCall(value)));
    }
    const n = directive(text, "tokens");
    if (n !== undefined) return Array.from({ length: Number(n) }, (_, i) => `t${i} `);
    const words = `Echo: ${text}`.split(/(?<= )/);
    return words;
  }

  // web-llm's Hermes path lists the tools in the system prompt and asks for [{name, arguments}]:
  // call the first listed tool by its real name.
  nativeToolCall(value) {
    const system = this.conversation.override_system_message || "";
    const name = /"name":\s*"([^"]+)"/.exec(system);
    if (!Array.isArray(value) || !name || !value[0] || !("arguments" in value[0])) return value;
    return [{ name: name[1], arguments: {} }];
  }

  emitToken() {
    if (this.emitted >= this.tokens.length) {
      this.finish("stop");
      return;
    }
    this.outputMessage += this.tokens[this.emitted];
    this.emitted += 1;
    this.completionTokens += 1;
    this.logprobs.push({ token: this.tokens[this.emitted - 1], logprob: -0.5, top_logprobs: [] });
    const stops = [].concat(this.genConfig.stop || []);
    for (const stop of stops) {
      const at = this.outputMessage.indexOf(stop);
      if (at >= 0) {
        this.outputMessage = this.outputMessage.slice(0, at);
        this.finish("stop");
        return;
      }
    }
    if (this.emitted >= this.tokens.length && !this.genConfig.ignore_eos) {
      this.finish("stop");
    } else if (this.genConfig.max_tokens && this.completionTokens >= this.genConfig.max_tokens) {
      this.finish("length");
    } else if (this.emitted >= this.tokens.length) {
      this.finish("length");  // ignore_eos with nothing left to say: the real model would hit max_tokens
    }
  }

  finish(reason) {
    if (this.stopTriggered) return;
    this.stopTriggered = true;
    this.finishReason = reason;
    this.conversation.finishReply(this.outputMessage);
  }

  async decodeStep(genConfig) {
    const started = performance.now();
    if (this.delay > 0) await new Promise((resolve) => setTimeout(resolve, this.delay));
    this.emitToken();
    this.decodeTokens += 1;
    this.decodeTime += (performance.now() - started) / 1000;
  }

  stopped() { return this.stopTriggered; }
  triggerStop() {
    if (this.stopTriggered) return;
    this.stopTriggered = true;
    this.finishReason = "abort";
    this.conversation.finishReply(this.outputMessage);
  }
  getMessage() { return this.outputMessage; }
  getFinishReason() { return this.finishReason; }
  getTokenLogprobArray() { return this.logprobs; }
  getCurRoundCompletionTotalTokens() { return this.completionTokens; }
  getCurRoundDecodingTotalTokens() { return this.decodeTokens; }
  getCurRoundPrefillTotalTokens() { return this.prefillTokens; }
  getCurRoundPrefillTotalTime() { return this.prefillTime; }
  getCurRoundDecodingTotalTime() { return this.decodeTime; }
  getCurRoundPrefillTokensPerSec() { return this.prefillTokens / this.prefillTime; }
  getCurRoundDecodingTokensPerSec() { return this.decodeTime > 0 ? this.decodeTokens / this.decodeTime : 0; }
  getCurRoundGrammarInitTotalTime() { return 0; }
  getCurRoundGrammarPerTokenTotalTime() { return 0; }
  getCurRoundLatencyBreakdown() { return {}; }
}

export function installDouble(MLCEngine) {
  const realReload = MLCEngine.prototype.reloadInternal;
  MLCEngine.prototype.reloadInternal = async function (modelId, chatOpts) {
    const record = (this.appConfig?.model_list || []).find((m) => m.model_id === modelId);
    if (!record || record.double_fail === "network") {
      return realReload.call(this, modelId, chatOpts);  // web-llm's own lookup / fetch errors
    }
    if (record.double_fail === "device") throwFor("DeviceLostError", 0);
    const config = { conv_template: CONV_TEMPLATE, context_window_size: 4096, ...record.overrides, ...chatOpts };
    this.initProgressCallback?.({ progress: 0.5, timeElapsed: 0, text: "double: loading" });
    this.loadedModelIdToModelType.set(modelId, record.model_type ?? 0);
    this.loadedModelIdToChatConfig.set(modelId, config);
    this.loadedModelIdToPipeline.set(modelId, new FakePipeline(config, modelId));
    this.loadedModelIdToLock.set(modelId, new Lock());
    this.initProgressCallback?.({ progress: 1, timeElapsed: 0, text: "double: loaded" });
  };

  // getModelStates checks `pipeline instanceof LLMChatPipeline`, a class web-llm does not export.
  // Let its real model selection run; only when that class check fails for our FakePipeline do we
  // hand back the selected model's states.
  const realStates = MLCEngine.prototype.getLLMStates;
  MLCEngine.prototype.getLLMStates = function (requestName, modelId) {
    try {
      return realStates.call(this, requestName, modelId);
    } catch (error) {
      if (error.name !== "IncorrectPipelineLoadedError") throw error;
      const selected = modelId ?? [...this.loadedModelIdToPipeline.keys()][0];
      const pipeline = this.loadedModelIdToPipeline.get(selected);
      if (!(pipeline instanceof FakePipeline)) throw error;
      return [selected, pipeline, this.loadedModelIdToChatConfig.get(selected)];
    }
  };

  // Native tool calling: web-llm rewrites the request for Hermes models (system prompt + a schema of
  // an array of calls); the fake model answers that schema, which is exactly the array web-llm's
  // parser expects. Nothing else to patch.
}

// web-llm's CustomLock is not exported; a FIFO lock with the same acquire/release interface.
class Lock {
  constructor() { this.queue = []; this.held = false; }
  async acquire() {
    if (!this.held) { this.held = true; return; }
    await new Promise((resolve) => this.queue.push(resolve));
  }
  async release() {
    const next = this.queue.shift();
    if (next) next(); else this.held = false;
  }
}
