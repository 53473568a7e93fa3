// A deterministic stand-in for the compiled model behind web-llm 0.2.86's MLCEngine.
//
// WHAT IS REPLACED (everything else is web-llm's own code, running unchanged in the worker)
//   MLCEngine.prototype.reloadInternal  downloads mlc-chat-config.json, the model library and the
//       weights, compiles the wasm on WebGPU and builds an LLMChatPipeline. Here: the same model
//       record lookup (unknown ids still go to web-llm's own code, which throws its
//       ModelNotFoundError before fetching anything), the same WebGPU adapter / required_features
//       check, progress reports, then a FakePipeline and a lock go into the engine's real maps
//       (loadedModelIdToModelType / ToChatConfig / ToPipeline / ToLock). Nothing is fetched.
//   MLCEngine.prototype.getModelStates  web-llm's own version runs first (model selection and its
//       ModelNotLoaded / SpecifiedModelNotFound / UnclearModelToUse errors); only its final
//       `pipeline instanceof LLMChatPipeline` check cannot pass, that class not being exported, so
//       when it fails for a FakePipeline the selected model's states are returned.
//   FakePipeline implements what MLCEngine calls on an LLMChatPipeline: prefillStep, decodeStep,
//       stopped, triggerStop, getMessage, getFinishReason, getTokenLogprobArray, setSeed,
//       resetChat, get/setConversation(Object), getCurRound*, getSupportedInputKinds, dispose,
//       sync, runtimeStatsText — with LLMChatPipeline's stop rules (stop token, stop strings,
//       max_tokens, context window, ignore_eos), token accounting and conversation updates. The
//       resumable-generation API (extra_body.resumable) and forwardTokensAndSample are not faked.
//
// THE FAKE MODEL. Text is "tokenized" into words with their trailing whitespace. The chat template
// renders a prompt as  <|system|>\n{system}\n  then per message  <|role|>\n{content}\n<|end|>\n  and
// the reply header  <|assistant|>\n ; prompt_tokens = the whitespace-separated words of the part of
// that prompt prefilled this round (first round: 1 + words(system) + sum(words(content) + 2) + 1,
// i.e. words(user text) + 9 for one user message and the default 5-word system message; a
// follow-up that extends the previous conversation reuses the KV cache and counts only the new
// message + header, exactly like web-llm). Each step yields one planned token, then the stop token
// (id 2, decodes to ""); web-llm counts that stop token, so completion_tokens = visible tokens + 1
// when finish_reason is "stop" from the stop token, and = max_tokens when "length".
//
// THE REPLY depends on the request (directives are read from the last message and removed from
// the echoed text):
//   default                "Echo: <last message text>", one word per step
//   [[tokens=N]]           exactly N visible tokens: "t0 t1 ... t<N-1>"
//   [[think=N]]            a thinking model's reply: "<think>\nr0 r1 ... r<N-1>\n</think>\n\n" and then
//                          the answer (as Qwen3 writes it), unless extra_body.enable_thinking is false
//   [[delay=MS]]           wait MS ms (a real timer) in every decode step; without it each step
//                          still yields to the worker's event loop, so interrupts get through
//   [[throw=Name]]         prefill throws what web-llm throws for that failure (see injectedError):
//                          ContextWindowSizeExceededError, DeviceLostError (and, like web-llm's
//                          device.lost handler, the engine unloads), QuotaExceededError (a
//                          DOMException), TypeError ("Failed to fetch"), ShaderF16SupportError,
//                          WebGPUNotAvailableError; any other name: an Error with that name
//   [[throw=Name:K]]       the same, in the decode step after K visible tokens were streamed
//                          (a stream runs lazily: errors from prefill surface at its first chunk)
//   response_format json_object + schema (web-llm passes it as a string): a JSON text valid for
//                          the schema ($ref/$defs, anyOf, enum/const, nested objects, arrays;
//                          strings "x", numbers 1 within min/max, true, first enum value), token by token
//                          (no schema: {"echo": "<text>"})
//   tools on Hermes-2-Pro/Hermes-3 ids (web-llm's functionCallingModelIds): web-llm puts the tools
//                          into the system prompt and asks for a JSON array of calls; the fake
//                          model reads them there and answers [{"name", "arguments"}] calling the
//                          first tool whose name occurs in the last message (else the first tool),
//                          arguments built from its parameters schema. web-llm parses it into
//                          tool_calls itself.
//   images (a model_type 2 record)  each image of the last message is decoded and the reply ends with
//                          " [image WxH]" per image (16 prompt tokens each); a text-only model throws
//                          CannotFindImageEmbedError, though web-llm's own check refuses such a request first
//   extra_body.enable_thinking=false  the reply starts with web-llm's empty <think> block.
//   logprobs + top_logprobs>0  one entry per token (logprob -0.5, alternatives "<alt1>"...).
//
// MODEL IDS (all need a record in appConfig.model_list; see models.json):
//   containing "slow"          loading takes ~1 s (10 progress steps); unload()/reload() abort it
//   containing "fail-network"  reload fails while fetching weights: TypeError "Failed to fetch"
//   containing "fail-quota"    reload fails while caching weights: DOMException QuotaExceededError
//   containing "fail-device"   reload ends with web-llm's DeviceLostError, nothing stays loaded
//   containing "fail-f16"      reload throws web-llm's ShaderF16SupportError (a record listing
//                              required_features is also checked against the real GPU adapter)
//   a record with model_type 1 (web-llm's ModelType.embedding) loads a FakeEmbeddingPipeline instead
//
// EMBEDDINGS. MLCEngine.embedding() (engine.embeddings.create) runs unchanged: its request checks,
// model selection (getModelStates, patched as above for the EmbeddingPipeline check), lock and
// response. It calls embedStep(input) and getCurRoundEmbedTotalTokens / getCurRoundEmbedTokensPerSec
// on the pipeline; FakeEmbeddingPipeline implements them as EmbeddingPipeline does (empty input and
// inputs longer than the context window (512 "tokens": whitespace-separated words) throw web-llm's
// errors; batches of maxBatchSize) and embeds a text as a hashed bag of words: each lower-cased
// word (letters and digits) adds 1 to dimension fnv1a(word) % EMBED_DIMS, and the vector is
// L2-normalised. Texts sharing words get close vectors, identical texts identical ones, so
// retrieval over it is exact and repeatable. [[delay=MS]] in an input makes each batch take MS ms.

const STOP_TOKEN = 2;
const FIRST_WORD_ID = 100;
const IMAGE_TOKENS = 16;
const THINK_BLOCK = "<think>\n\n</think>\n\n";

// The fake model's mlc-chat-config.json (what the real reload would download).
const CHAT_CONFIG = {
  model_type: "double",
  context_window_size: 4096,
  sliding_window_size: -1,
  attention_sink_size: -1,
  prefill_chunk_size: 2048,
  temperature: 0.7,
  top_p: 0.95,
  repetition_penalty: 1.0,
  frequency_penalty: 0.0,
  presence_penalty: 0.0,
  tokenizer_files: [],
  conv_template: {
    name: "double",
    system_template: "<|system|>\n{system_message}\n",
    system_message: "You are a helpful assistant.",
    roles: { user: "<|user|>", assistant: "<|assistant|>", tool: "<|tool|>" },
    seps: ["\n<|end|>\n"],
    role_content_sep: "\n",
    role_empty_sep: "\n",
    stop_str: ["<|end|>"],
    stop_token_ids: [STOP_TOKEN],
    add_role_after_system_message: true,
  },
};

// ---- errors, with the name and text web-llm (or the browser) gives them. web-llm's error classes
// are not exported; what crosses the worker is `${name}: ${message}` (the handler sends
// err.toString()), so the same name and message are what the page observes.
function namedError(name, message) {
  const error = new Error(message);
  error.name = name;
  return error;
}

function injectedError(name, promptTokens = 0, contextWindow = 0) {
  switch (name) {
    case "ContextWindowSizeExceededError":
      return namedError(name, `Prompt tokens exceed context window size: number of prompt tokens: ` +
        `${promptTokens}; context window size: ${contextWindow}\nConsider shortening the prompt, ` +
        "or increase `context_window_size`, or using sliding window via `sliding_window_size`.");
    case "DeviceLostError":
      return namedError(name, "The WebGPU device was lost while loading the model. This issue often " +
        "occurs due to running out of memory (OOM). To resolve this, try reloading with a model " +
        "that has fewer parameters or uses a smaller context length.");
    case "ShaderF16SupportError":
      return namedError(name, "This model requires WebGPU extension shader-f16, which is not enabled " +
        "in this browser. You can try to launch Chrome Canary in command line with flag " +
        '"--enable-dawn-features=allow_unsafe_apis".');
    case "WebGPUNotAvailableError":
      return namedError(name, "WebGPU is not supported in your current environment, but it is " +
        "necessary to run the WebLLM engine. Please make sure that your browser supports WebGPU " +
        "and that it is enabled in your browser settings. You can also consult your browser's " +
        "compatibility chart to see if it supports WebGPU. For more information about WebGPU " +
        "support in your browser, visit https://webgpureport.org/");
    case "QuotaExceededError":  // what Cache.add/put rejects with when storage is full
      return new DOMException("Quota exceeded.", "QuotaExceededError");
    case "TypeError":  // what fetch / Cache.add reject with when the network is down
    case "NetworkError":
      return new TypeError("Failed to fetch");
    default:
      return namedError(name, `${name} (injected by the engine double)`);
  }
}

// ---- small helpers
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One macrotask (not clamped like setTimeout(0)): lets the worker handle incoming messages, such
// as interruptGenerate, between steps, as the real pipeline does while it waits for the GPU.
const ticks = new MessageChannel();
const waiting = [];
ticks.port1.onmessage = () => waiting.shift()();
const nextTask = () => new Promise((resolve) => { waiting.push(resolve); ticks.port2.postMessage(null); });

const words = (text) => text.match(/\s*\S+\s*/g) ?? [];
const countWords = (text) => (text.match(/\S+/g) ?? []).length;
const jsonTokens = (text) => text.match(/"(?:[^"\\]|\\.)*"|[{}[\]:,]|[^"{}[\]:,]+/g) ?? [];

// web-llm's getImageDataFromURL up to the decode: [width, height] of the image at `url`.
async function decodedSize(url) {
  const response = await fetch(url, { mode: "cors" });
  const bitmap = await createImageBitmap(await response.blob());
  const size = [bitmap.width, bitmap.height];
  bitmap.close();
  return size;
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.filter((p) => p.type === "text").map((p) => p.text).join(" ");
  return "";
}

function readDirectives(text) {
  const found = {};
  for (const [, key, value] of text.matchAll(/\[\[(\w+)=([^\]]*)\]\]/g)) found[key] = value;
  const clean = text.replace(/\s*\[\[\w+=[^\]]*\]\]\s*/g, " ").trim();
  const [throwName, throwAfter] = (found.throw ?? "").split(":");
  return {
    clean,
    tokens: found.tokens === undefined ? undefined : Number(found.tokens),
    think: found.think === undefined ? undefined : Number(found.think),
    delay: Number(found.delay ?? 0),
    throwName: throwName || undefined,
    throwAfter: throwAfter === undefined ? undefined : Number(throwAfter),
  };
}

// A value that validates against a JSON schema (the subset pydantic and tool definitions use).
function exampleOf(schema, root, depth = 0) {
  if (schema === true || schema === undefined || schema === null || depth > 12) return null;
  if (schema.$ref) {
    const target = schema.$ref.replace(/^#\/?/, "").split("/").filter(Boolean)
      .reduce((node, key) => node?.[decodeURIComponent(key)], root);
    return exampleOf(target, root, depth + 1);
  }
  if ("const" in schema) return schema.const;
  if (Array.isArray(schema.enum)) return schema.enum[0];
  const branches = schema.anyOf ?? schema.oneOf;
  if (Array.isArray(branches)) {
    return exampleOf(branches.find((b) => b.type !== "null") ?? branches[0], root, depth + 1);
  }
  if (Array.isArray(schema.allOf)) return exampleOf(Object.assign({}, ...schema.allOf), root, depth + 1);
  let type = Array.isArray(schema.type) ? (schema.type.find((t) => t !== "null") ?? "null") : schema.type;
  type ??= schema.properties ? "object" : schema.items ? "array" : "string";
  switch (type) {
    case "object": {
      const out = {};
      for (const [key, sub] of Object.entries(schema.properties ?? {})) out[key] = exampleOf(sub, root, depth + 1);
      for (const key of schema.required ?? []) if (!(key in out)) out[key] = "x";
      return out;
    }
    case "array": {
      const prefix = (schema.prefixItems ?? []).map((s) => exampleOf(s, root, depth + 1));
      const count = Math.max(schema.minItems ?? 1, prefix.length);
      const upTo = Math.min(count, schema.maxItems ?? count);
      while (prefix.length < upTo) prefix.push(exampleOf(schema.items ?? {}, root, depth + 1));
      return prefix;
    }
    case "integer":
    case "number": {
      let n = 1;
      if (schema.minimum !== undefined) n = Math.max(n, Math.ceil(schema.minimum));
      if (schema.exclusiveMinimum !== undefined) n = Math.max(n, Math.floor(schema.exclusiveMinimum) + 1);
      if (schema.maximum !== undefined) n = Math.min(n, Math.floor(schema.maximum));
      if (schema.exclusiveMaximum !== undefined) n = Math.min(n, Math.ceil(schema.exclusiveMaximum) - 1);
      return n;
    }
    case "boolean": return true;
    case "null": return null;
    default: {
      const formats = { "date-time": "2024-01-01T00:00:00Z", date: "2024-01-01", time: "00:00:00",
        email: "x@example.com", uri: "https://example.com/", uuid: "00000000-0000-4000-8000-000000000000" };
      if (formats[schema.format]) return formats[schema.format];
      return "x".repeat(Math.max(1, schema.minLength ?? 1));
    }
  }
}

// web-llm's Hermes prompt lists the tools as JSON between <tools> and </tools>.
function toolsInPrompt(systemMessage) {
  const found = /<tools>\s*(\[[\s\S]*?\])\s*<\/tools>/.exec(systemMessage ?? "");
  try { return found ? JSON.parse(found[1]) : undefined; } catch { return undefined; }
}

// Stand-in for the initial Conversation an LLMChatPipeline builds for itself (the class is not
// exported); web-llm only compares it with the request's and then replaces it via setConversation.
const emptyConversation = () => ({
  messages: [], function_string: "", use_function_calling: false, override_system_message: undefined,
  isTextCompletion: false, reset() { this.messages = []; },
  getStopStr: () => CHAT_CONFIG.conv_template.stop_str,
  getStopTokens: () => CHAT_CONFIG.conv_template.stop_token_ids,
});

class FakePipeline {
  constructor(engine, modelId, config, vision = false) {
    this.engine = engine;
    this.vision = vision;  // a VLM record (model_type 2): the real pipeline then has an image_embed kernel
    this.modelId = modelId;
    this.config = config;
    this.contextWindowSize = config.context_window_size ?? -1;
    this.slidingWindowSize = config.sliding_window_size ?? -1;
    this.vocabulary = [];  // token id - FIRST_WORD_ID -> text
    this.filledKVCacheLength = 0;
    this.stopTriggered = false;
    this.finishReason = undefined;
    this.disposed = false;
    this.setConversation(emptyConversation());
    this.resetRuntimeStats();
    this.resetRound();
  }

  // ---- tokenizer of the fake model
  tokenId(text) {
    let at = this.vocabulary.indexOf(text);
    if (at < 0) at = this.vocabulary.push(text) - 1;
    return FIRST_WORD_ID + at;
  }
  decode(ids) {
    return ids.map((id) => (id >= FIRST_WORD_ID ? this.vocabulary[id - FIRST_WORD_ID] : "")).join("");
  }

  // ---- state, as LLMChatPipeline keeps it
  resetRuntimeStats() {
    this.prefillTotalTime = 0; this.prefillTotalTokens = 0;
    this.decodingTotalTime = 0; this.decodingTotalTokens = 0;
  }
  resetRound() {
    this.outputIds = []; this.outputMessage = ""; this.tokenLogprobArray = [];
    this.curRoundDecodingTotalTokens = 0; this.curRoundCompletionTotalTokens = 0;
    this.curRoundPrefillTotalTokens = 0; this.curRoundPrefillTotalTime = 0; this.curRoundDecodingTotalTime = 0;
    this.plan = []; this.planned = 0; this.visible = 0; this.script = readDirectives("");
  }
  resetChat(keepStats = false) {
    this.conversation.reset();
    this.finishReason = undefined;
    if (!keepStats) this.resetRuntimeStats();
    this.filledKVCacheLength = 0;
  }
  getConversationObject() { return this.conversation; }
  setConversation(conversation) {
    this.conversation = conversation;
    this.stopStr = conversation.getStopStr();
    this.stopTokens = conversation.getStopTokens();
  }
  // Like LLMChatPipeline: {"image"} when the model has an image_embed kernel, else undefined (text only;
  // web-llm then decides by the record's model_type).
  getSupportedInputKinds() { return this.vision ? new Set(["image"]) : undefined; }
  setSeed(seed) { this.seed = seed; }
  dispose() { this.disposed = true; }
  async sync() {}
  async asyncLoadWebGPUPipelines() {}
  forwardTokensAndSample() { throw new Error("forwardTokensAndSample is not supported by the engine double"); }

  // ---- generation
  async prefillStep(input, role, roleName, genConfig) {
    this.checkUsable();
    const started = performance.now();
    this.resetRuntimeStats();
    this.resetRound();
    this.stopTriggered = false;
    const conv = this.conversation;
    const text = textOf(input);
    this.script = readDirectives(text);
    if (conv.isTextCompletion) {
      conv.prompt = input;
    } else {
      conv.appendMessage(role, input, roleName);
      if (genConfig?.enable_thinking === false) {
        this.outputIds.push(...words(THINK_BLOCK).map((w) => this.tokenId(w)));
        conv.appendEmptyThinkingReplyHeader("assistant", THINK_BLOCK);
      } else {
        conv.appendReplyHeader("assistant");
      }
    }
    const prompts = conv.isTextCompletion ? conv.getPromptArrayTextCompletion()
      : this.filledKVCacheLength === 0 ? conv.getPromptArray() : conv.getPromptArrayLastRound();
    // Images: what LLMChatPipeline does before its image_embed kernel. No kernel: CannotFindImageEmbedError;
    // else every image is fetched and decoded as web-llm's getImageDataFromURL does (fetch + createImageBitmap),
    // so a URL or data the real engine could not read fails here the same way.
    const images = prompts.flat().filter((part) => typeof part !== "string");
    if (images.length && !this.vision) {
      throw namedError("CannotFindImageEmbedError", "Received image input but model does not have kernel " +
        "image_embed. Make sure to only pass in image to a vision model.");
    }
    const seen = new Map();
    for (const image of images) seen.set(image.url, seen.get(image.url) ?? await decodedSize(image.url));
    this.inputImages = (Array.isArray(input) ? input : []).filter((p) => p.type === "image_url")
      .map((p) => seen.get(p.image_url.url));
    const promptTokens = prompts.flat().reduce(
      (n, part) => n + (typeof part === "string" ? countWords(part) : IMAGE_TOKENS), 0);
    if (this.slidingWindowSize === -1 && promptTokens + this.filledKVCacheLength > this.contextWindowSize) {
      throw injectedError("ContextWindowSizeExceededError", promptTokens, this.contextWindowSize);
    }
    await nextTask();
    if (this.script.throwName && this.script.throwAfter === undefined) {
      this.fail(this.script.throwName, promptTokens);
    }
    this.filledKVCacheLength += promptTokens;
    this.plan = this.planReply(this.script.clean, genConfig);
    const token = this.sample(genConfig);
    const seconds = Math.max((performance.now() - started) / 1e3, 1e-4);
    this.prefillTotalTime += seconds; this.prefillTotalTokens += promptTokens;
    this.curRoundPrefillTotalTime += seconds; this.curRoundPrefillTotalTokens += promptTokens;
    this.commit(token, genConfig);
  }

  async decodeStep(genConfig) {
    if (this.stopTriggered) throw Error("Cannot run decode when stopped");
    const started = performance.now();
    await (this.script.delay > 0 ? sleep(this.script.delay) : nextTask());
    this.checkUsable();
    if (this.script.throwName && this.script.throwAfter !== undefined && this.visible >= this.script.throwAfter) {
      this.fail(this.script.throwName, 0);
    }
    this.filledKVCacheLength += 1;
    const token = this.sample(genConfig);
    const seconds = (performance.now() - started) / 1e3;
    this.decodingTotalTime += seconds; this.decodingTotalTokens += 1;
    this.curRoundDecodingTotalTime += seconds; this.curRoundDecodingTotalTokens += 1;
    this.commit(token, genConfig);
  }

  checkUsable() {
    if (this.disposed) throw new Error("The engine double's model was unloaded during generation.");
  }

  fail(name, promptTokens) {
    // web-llm's device.lost handler unloads every model: later requests get ModelNotLoadedError.
    if (name === "DeviceLostError") void this.engine.unload();
    throw injectedError(name, promptTokens, this.contextWindowSize);
  }

  // A thinking model (Qwen3) writes its reasoning in a <think> block before the answer, unless
  // enable_thinking is false (then web-llm prefilled an empty block and it answers at once).
  planReply(text, genConfig) {
    const reply = this.planAnswer(text, genConfig);
    const n = this.script.think;
    if (n === undefined || genConfig?.enable_thinking === false) return reply;
    const reasoning = Array.from({ length: n }, (_, i) => (i < n - 1 ? `r${i} ` : `r${i}\n`));
    return ["<think>\n", ...reasoning, "</think>\n\n", ...reply];
  }

  planAnswer(text, genConfig) {
    const format = genConfig?.response_format;
    if (format?.type === "json_object") {
      const schema = typeof format.schema === "string" ? JSON.parse(format.schema) : (format.schema ?? undefined);
      const tools = toolsInPrompt(this.conversation.override_system_message);
      let value;
      if (tools && schema?.type === "array") {
        const functions = tools.map((t) => t.function ?? t);
        const chosen = functions.find((f) => text.includes(f.name)) ?? functions[0];
        const parameters = chosen.parameters ?? { type: "object", properties: {} };
        value = [{ name: chosen.name, arguments: exampleOf(parameters, parameters) }];
      } else {
        value = schema ? exampleOf(schema, schema) : { echo: text };
      }
      return jsonTokens(JSON.stringify(value));
    }
    if (this.script.tokens !== undefined) {
      const n = this.script.tokens;
      return Array.from({ length: n }, (_, i) => (i < n - 1 ? `t${i} ` : `t${i}`));
    }
    // A vision model also says what it saw of each image of the message: "[image 1344x1008]".
    const saw = (this.inputImages ?? []).map(([w, h]) => ` [image ${w}x${h}]`).join("");
    return words(`Echo: ${text}${saw}`);
  }

  // The planned tokens one by one, then the stop token (forever: ignore_eos keeps sampling it).
  sample(genConfig) {
    const token = this.planned < this.plan.length ? this.tokenId(this.plan[this.planned++]) : STOP_TOKEN;
    const top = genConfig?.top_logprobs ?? 0;
    if (genConfig?.logprobs && top > 0) {
      const entry = (text, logprob) => ({ token: text, bytes: Array.from(new TextEncoder().encode(text)), logprob });
      const text = this.decode([token]);
      this.tokenLogprobArray.push({
        ...entry(text, -0.5),
        top_logprobs: Array.from({ length: top }, (_, i) => (i === 0 ? entry(text, -0.5) : entry(`<alt${i}>`, -2 - i))),
      });
    }
    return token;
  }

  // LLMChatPipeline's rules for a sampled token: stop token, stop strings, max_tokens, context
  // window; the stopping token is counted in curRoundCompletionTotalTokens.
  commit(token, genConfig) {
    const maxTokens = genConfig?.max_tokens ?? Infinity;
    const ignoreEos = genConfig?.ignore_eos ?? false;
    const stopStrs = ignoreEos ? [] : this.stopStr.concat(genConfig?.stop ? genConfig.stop : []);
    const stopTokens = ignoreEos ? [] : this.stopTokens;
    if (stopTokens.includes(token)) this.stop("stop");
    else this.outputIds.push(token);
    let message = this.decode(this.outputIds);
    for (const stopStr of stopStrs) {
      const at = message.lastIndexOf(stopStr);
      if (at !== -1) {
        message = message.slice(0, at);
        this.stop("stop");
        break;
      }
    }
    this.outputMessage = message;
    if (this.outputIds.length >= maxTokens) this.stop("length");
    if (this.slidingWindowSize === -1 && this.filledKVCacheLength === this.contextWindowSize) this.stop("length");
    if (this.stopTriggered && !this.conversation.isTextCompletion) this.conversation.finishReply(this.outputMessage);
    this.curRoundCompletionTotalTokens += 1;
    if (token !== STOP_TOKEN) this.visible += 1;
  }

  stop(reason) {
    this.stopTriggered = true;
    this.finishReason = reason;
  }

  triggerStop() {
    if (this.stopTriggered) return;
    this.stop("abort");
    if (!this.conversation.isTextCompletion) this.conversation.finishReply(this.outputMessage);
  }

  stopped() { return this.stopTriggered; }
  getMessage() { return this.outputMessage; }
  getFinishReason() { return this.finishReason; }
  getTokenLogprobArray() { return this.tokenLogprobArray; }
  getCurRoundDecodingTotalTokens() { return this.curRoundDecodingTotalTokens; }
  getCurRoundCompletionTotalTokens() { return this.curRoundCompletionTotalTokens; }
  getCurRoundPrefillTotalTokens() { return this.curRoundPrefillTotalTokens; }
  getCurRoundDecodingTotalTime() { return this.curRoundDecodingTotalTime; }
  getCurRoundPrefillTotalTime() { return this.curRoundPrefillTotalTime; }
  getCurRoundGrammarInitTotalTime() { return 0; }
  getCurRoundGrammarPerTokenTotalTime() { return 0; }
  getCurRoundLatencyBreakdown() {
    return { logitProcessorTime: [], logitBiasTime: [], penaltyTime: [], sampleTime: [], totalTime: [], grammarBitmaskTime: [] };
  }
  getCurRoundPrefillTokensPerSec() { return this.curRoundPrefillTotalTokens / this.curRoundPrefillTotalTime; }
  getCurRoundDecodingTokensPerSec() { return this.curRoundDecodingTotalTokens / this.curRoundDecodingTotalTime; }
  runtimeStatsText() {
    return `prefill: ${(this.prefillTotalTokens / this.prefillTotalTime).toFixed(4)} tokens/sec, ` +
      `decoding: ${(this.decodingTotalTokens / this.decodingTotalTime).toFixed(4)} tokens/sec`;
  }
}

const EMBED_DIMS = 384;  // snowflake-arctic-embed-s's width
const EMBED_CONTEXT = 512;

function fnv1a(text) {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

export function bagOfWordsVector(text) {
  const vector = new Array(EMBED_DIMS).fill(0);
  for (const word of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) vector[fnv1a(word) % EMBED_DIMS] += 1;
  const norm = Math.hypot(...vector);
  return norm === 0 ? vector : vector.map((x) => x / norm);
}

class FakeEmbeddingPipeline {
  constructor(config, maxBatchSize) {
    this.config = config;
    this.contextWindowSize = EMBED_CONTEXT;
    this.maxBatchSize = maxBatchSize;
    this.curRoundEmbedTotalTokens = 0;
    this.curRoundEmbedTotalTime = 0;
    this.batches = 0;
  }

  async embedStep(input) {
    this.curRoundEmbedTotalTokens = 0;
    this.curRoundEmbedTotalTime = 0;
    const started = performance.now();
    if (input.length === 0) throw namedError("EmbeddingInputEmptyError", "Embedding input cannot be empty string or empty token array.");
    const texts = typeof input === "string" ? [input] : input.map((x) => (Array.isArray(x) ? x.join(" ") : String(x)));
    for (const text of texts) {
      const size = countWords(text);
      if (size > this.contextWindowSize) {
        throw namedError("EmbeddingExceedContextWindowSizeError", `The embedding model you are using only supports up to ${this.contextWindowSize} context size.` +
          `However, an input in the batch has size ${size}.`);
      }
      this.curRoundEmbedTotalTokens += size;
    }
    // [[delay=MS]] in a text: each batch takes MS ms (a real timer), so a test can cancel mid-way.
    const delay = Math.max(0, ...texts.map((t) => Number(/\[\[delay=(\d+)\]\]/.exec(t)?.[1] ?? 0)));
    const result = [];
    for (let begin = 0; begin < texts.length; begin += this.maxBatchSize) {
      await (delay > 0 ? sleep(delay) : nextTask());  // one GPU round trip per batch
      this.batches += 1;
      for (const text of texts.slice(begin, begin + this.maxBatchSize)) result.push(bagOfWordsVector(text));
    }
    this.curRoundEmbedTotalTime = Math.max((performance.now() - started) / 1e3, 1e-4);
    return result;
  }

  getCurRoundEmbedTotalTime() { return this.curRoundEmbedTotalTime; }
  getCurRoundEmbedTotalTokens() { return this.curRoundEmbedTotalTokens; }
  getCurRoundEmbedTokensPerSec() { return this.curRoundEmbedTotalTokens / this.curRoundEmbedTotalTime; }
  dispose() {}
  async sync() {}
  async asyncLoadWebGPUPipelines() {}
}

// web-llm's CustomLock is not exported: a FIFO lock with the same acquire()/release().
class Lock {
  constructor() { this.held = false; this.queue = []; }
  async acquire() {
    if (!this.held) { this.held = true; return; }
    await new Promise((resolve) => this.queue.push(resolve));
  }
  async release() {
    if (!this.held) throw Error("InternalError: expect lock is acquired upon release()");
    const next = this.queue.shift();
    if (next) next(); else this.held = false;
  }
}

let adapterPromise;
const gpuAdapter = () => (adapterPromise ??= navigator.gpu ? navigator.gpu.requestAdapter() : Promise.resolve(null));

async function fakeReload(engine, modelId, chatOpts, record) {
  const started = performance.now();
  const signal = engine.reloadController?.signal;
  const report = (progress, text) => engine.initProgressCallback?.({
    progress, timeElapsed: Math.round((performance.now() - started) / 1e3), text });
  engine.loadedModelIdToModelType.set(modelId, record.model_type ?? 0);
  const config = { ...CHAT_CONFIG, ...record.overrides, ...chatOpts };
  engine.loadedModelIdToChatConfig.set(modelId, config);
  if (record.model_lib === undefined) {
    throw namedError("MissingModelError", `Missing \`model_lib\` for the model with ID "${modelId}". ` +
      "Please ensure that `model_lib` is provided in `model_list` for each model. This URL is " +
      "essential for downloading the WASM library necessary to run the model.");
  }
  const adapter = await gpuAdapter();
  if (!adapter) throw injectedError("WebGPUNotAvailableError");
  for (const feature of record.required_features ?? []) {
    if (!adapter.features.has(feature)) {
      throw feature === "shader-f16" ? injectedError("ShaderF16SupportError")
        : namedError("FeatureSupportError", `This model requires feature ${feature}, which is not yet supported by this browser.`);
    }
  }
  if (modelId.includes("fail-f16")) throw injectedError("ShaderF16SupportError");
  const shards = 10;
  const megabytes = Math.ceil(record.vram_required_MB ?? 100);
  report(0, "Start to fetch params");
  for (let i = 1; i <= shards; i++) {
    await (/slow/i.test(modelId) ? sleep(100) : nextTask());
    signal?.throwIfAborted();  // unload() aborts a reload with its reason, as the real fetches do
    if (i === 3 && modelId.includes("fail-network")) throw injectedError("TypeError");
    if (i === 3 && modelId.includes("fail-quota")) throw injectedError("QuotaExceededError");
    const percent = Math.floor((100 * i) / shards);
    report(i / shards, `Fetching param cache[${i}/${shards}]: ${Math.ceil((megabytes * i) / shards)}MB fetched. ` +
      `${percent}% completed, ${Math.round((performance.now() - started) / 1e3)} secs elapsed.`);
  }
  if (modelId.includes("fail-device")) {
    await engine.unload();
    throw injectedError("DeviceLostError");
  }
  const embedding = record.model_type === 1;  // ModelType.embedding
  const batch = Number(/-b(\d+)$/.exec(modelId)?.[1] ?? 4);
  engine.loadedModelIdToPipeline.set(modelId, embedding ? new FakeEmbeddingPipeline(config, batch)
    : new FakePipeline(engine, modelId, config, record.model_type === 2));
  engine.loadedModelIdToLock.set(modelId, new Lock());
  const gpu = adapter.info?.description || adapter.info?.vendor || "engine double";
  report(1, `Finish loading on WebGPU - ${gpu}`);
}

export function installEngineDouble(MLCEngine) {
  const proto = MLCEngine.prototype;
  const realReloadInternal = proto.reloadInternal;
  proto.reloadInternal = async function (modelId, chatOpts) {
    const record = this.appConfig.model_list.find((m) => m.model_id === modelId);
    // web-llm's own code looks the record up first and throws ModelNotFoundError, fetching nothing.
    if (record === undefined) return realReloadInternal.call(this, modelId, chatOpts);
    return fakeReload(this, modelId, chatOpts, record);
  };

  const realGetModelStates = proto.getModelStates;
  proto.getModelStates = function (requestName, modelType, modelId) {
    try {
      return realGetModelStates.call(this, requestName, modelType, modelId);
    } catch (error) {
      if (error?.name !== "IncorrectPipelineLoadedError") throw error;
      // The model web-llm selected: request.model, or the only one loaded.
      const selected = modelId || [...this.loadedModelIdToPipeline.keys()][0];
      const pipeline = this.loadedModelIdToPipeline.get(selected);
      const chatConfig = this.loadedModelIdToChatConfig.get(selected);
      const expected = modelType === 0 ? FakePipeline : FakeEmbeddingPipeline;  // ModelType.LLM / embedding
      if (!(pipeline instanceof expected) || chatConfig === undefined ||
          !this.loadedModelIdToLock.has(selected)) throw error;
      const record = this.appConfig.model_list.find((m) => m.model_id === selected);
      if (modelType !== 0 && record?.model_type !== 1) {
        throw namedError("EmbeddingUnsupportedModelError", `Trying to run embeddings.create() with ${selected}, which does not have ModelRecord.model_type === ModelType.embedding in the model record. Either make sure an embedding model is loaded, or specify the model type in ModelRecord.`);
      }
      return [selected, pipeline, chatConfig];
    }
  };
}
