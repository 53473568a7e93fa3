// A double of Chrome's built-in model (the Prompt API's `LanguageModel` global), for tests only: the
// Chromium these tests run has no built-in model. Injected before the page's own scripts
// (page.add_init_script). It follows the interface documented by the Prompt API explainer
// (github.com/webmachinelearning/prompt-api, README.md): availability() with its four states;
// create({initialPrompts, expectedInputs, expectedOutputs, signal, monitor}) firing `downloadprogress`
// ProgressEvents (loaded 0..1, at least 0 and 1 even without a download); prompt() / promptStreaming()
// (a ReadableStream of text deltas) with {signal, responseConstraint}; contextUsage / contextWindow and
// measureContextUsage(); QuotaExceededError (with requested / quota) when a prompt cannot fit even after
// dropping earlier turns; destroy() rejecting what is in flight with an AbortError; NotSupportedError
// for languages it does not support. Only the model is fake: its answers are deterministic.
//
// Answers: "Echo: <last user text>"; a prompt containing [[count=N]] is answered "1 2 3 ... N"; with a
// responseConstraint, the smallest JSON value of that schema (strings "text", numbers 1, ...).
// Tokens are counted as words, plus one per message (so counts differ from a 4-chars estimate).
//
// Tests steer it through `window.chromeAIDouble` (availability, downloadSteps, contextWindow, delayMs)
// and read what it saw there (prompts, created, live).
(() => {
  const control = {
    availability: "available",  // for supported options: "downloadable" | "downloading" | "available"
    languages: ["en", "es", "ja"],
    downloadSteps: 4,
    contextWindow: 4096,
    delayMs: 0,  // between streamed pieces
    prompts: [],  // [{initialPrompts, input, responseConstraint}] in arrival order
    created: 0,
    live: 0,  // sessions not destroyed yet
  };
  window.chromeAIDouble = control;

  const abortError = (reason) => reason !== undefined ? reason : new DOMException("The operation was aborted.", "AbortError");
  const tokens = (text) => String(text).split(/\s+/).filter(Boolean).length;
  const messagesOf = (input) => typeof input === "string" ? [{role: "user", content: input}] : input;
  const inputTokens = (input, options = {}) => {
    let n = 0;
    for (const m of messagesOf(input)) n += tokens(m.content) + 1;
    if (options.responseConstraint && !options.omitResponseConstraintInput) {
      n += tokens(JSON.stringify(options.responseConstraint).replace(/[{}",:\[\]]/g, " "));
    }
    return n;
  };

  function supported(options = {}) {
    for (const list of [options.expectedInputs || [], options.expectedOutputs || []]) {
      for (const entry of list) {
        if (entry.type !== "text") return false;
        for (const language of entry.languages || []) {
          if (!control.languages.includes(language.split("-")[0])) return false;
        }
      }
    }
    return true;
  }

  function valueOf(schema) {
    switch (schema && schema.type) {
      case "object": {
        const out = {};
        for (const [key, sub] of Object.entries(schema.properties || {})) out[key] = valueOf(sub);
        return out;
      }
      case "array": return [];
      case "string": return schema.enum ? schema.enum[0] : "text";
      case "integer": case "number": return 1;
      case "boolean": return true;
      default: return null;
    }
  }

  function answerOf(input, options) {
    if (options.responseConstraint) return JSON.stringify(valueOf(options.responseConstraint));
    const messages = messagesOf(input);
    const last = [...messages].reverse().find((m) => m.role === "user") || messages[messages.length - 1];
    const count = /\[\[count=(\d+)\]\]/.exec(last.content);
    if (count) return Array.from({length: Number(count[1])}, (_, i) => String(i + 1)).join(" ");
    return "Echo: " + last.content;
  }

  // Word-sized deltas, spaces kept, the way current Chrome streams (each piece new text only).
  const piecesOf = (text) => text.match(/\s*\S+/g) || [text];
  const tick = () => new Promise((resolve) => setTimeout(resolve, control.delayMs));
  const progressEvent = (loaded) => {
    const event = new ProgressEvent("downloadprogress", {loaded, total: 1});
    if (event.loaded !== loaded) {  // older ProgressEvent: integer fields
      Object.defineProperty(event, "loaded", {value: loaded});
      Object.defineProperty(event, "total", {value: 1});
    }
    return event;
  };
  const quotaError = (requested, quota) => {
    const message = `The input is too large: ${requested} tokens requested, ${quota} available.`;
    if (typeof QuotaExceededError === "function") return new QuotaExceededError(message, {requested, quota});
    return Object.assign(new DOMException(message, "QuotaExceededError"), {requested, quota});
  };

  class LanguageModel extends EventTarget {
    #initial = 0;  // tokens of initialPrompts, never dropped
    #turns = [];  // tokens of each prompt/response pair, oldest first
    #window = control.contextWindow;
    #destroyed = false;
    #inFlight = new Set();  // functions that fail what is running with a reason
    #queue = Promise.resolve();

    static async availability(options = {}) {
      return supported(options) ? control.availability : "unavailable";
    }

    static async create(options = {}) {
      if (options.signal && options.signal.aborted) throw abortError(options.signal.reason);
      if (!supported(options)) throw new DOMException("The requested languages are not supported.", "NotSupportedError");
      const initial = options.initialPrompts || [];
      initial.forEach((m, i) => {
        if (m.role === "system" && i !== 0) throw new TypeError("A system prompt must be the first initial prompt.");
      });
      const monitor = new EventTarget();
      if (typeof options.monitor === "function") options.monitor(monitor);
      const downloading = control.availability !== "available";
      const steps = downloading ? control.downloadSteps : 1;
      for (let i = 0; i <= steps; i += 1) {
        await tick();
        if (options.signal && options.signal.aborted) throw abortError(options.signal.reason);
        monitor.dispatchEvent(progressEvent(i / steps));
      }
      control.availability = "available";
      const session = new LanguageModel();
      const used = inputTokens(initial);
      if (used > session.#window) throw quotaError(used, session.#window);
      session.#initial = used;
      control.created += 1;
      control.live += 1;
      if (options.signal) options.signal.addEventListener("abort", () => session.destroy());
      return session;
    }

    get contextUsage() { return this.#initial + this.#turns.reduce((a, b) => a + b, 0); }
    get contextWindow() { return this.#window; }

    #check(input) {
      if (this.#destroyed) throw new DOMException("The session has been destroyed.", "InvalidStateError");
      if (messagesOf(input).some((m) => m.role === "system")) {
        throw new TypeError("A system prompt must be the first message of a session.");
      }
    }

    // Makes room for `needed` tokens by dropping the oldest turns; QuotaExceededError when it cannot.
    #fit(needed) {
      const free = () => this.#window - this.contextUsage;
      if (needed > this.#window - this.#initial) throw quotaError(needed, free());
      let dropped = false;
      while (needed > free()) { this.#turns.shift(); dropped = true; }
      if (dropped) this.dispatchEvent(new Event("contextoverflow"));
    }

    async measureContextUsage(input, options = {}) {
      this.#check(input);
      return inputTokens(input, options);
    }

    async append(input, options = {}) {
      this.#check(input);
      const needed = inputTokens(input);
      this.#fit(needed);
      this.#turns.push(needed);
    }

    // Runs one prompt after those queued before it; `each(piece)` gets the deltas.
    #run(input, options, each) {
      this.#check(input);
      const needed = inputTokens(input, options);
      this.#fit(needed);
      control.prompts.push({input: messagesOf(input), responseConstraint: options.responseConstraint || null});
      const run = this.#queue.then(() => new Promise((resolve, reject) => {
        let failed = null;
        const fail = (reason) => { failed = reason; };
        this.#inFlight.add(fail);
        const onAbort = () => fail(abortError(options.signal.reason));
        if (options.signal) {
          if (options.signal.aborted) onAbort();
          else options.signal.addEventListener("abort", onAbort);
        }
        (async () => {
          const answer = answerOf(input, options);
          for (const piece of piecesOf(answer)) {
            await tick();
            if (failed) break;
            each(piece);
          }
          await tick();
          if (failed) throw failed;  // an aborted prompt leaves no trace in the session
          this.#turns.push(needed + tokens(answer) + 1);
          return answer;
        })().then(resolve, reject).finally(() => {
          this.#inFlight.delete(fail);
          if (options.signal) options.signal.removeEventListener("abort", onAbort);
        });
      }));
      this.#queue = run.catch(() => {});
      return run;
    }

    async prompt(input, options = {}) {
      return this.#run(input, options, () => {});
    }

    promptStreaming(input, options = {}) {
      let run;
      return new ReadableStream({
        start: (controller) => {
          try {
            run = this.#run(input, options, (piece) => controller.enqueue(piece));
          } catch (error) {
            controller.error(error);
            return;
          }
          run.then(() => controller.close(), (error) => controller.error(error));
        },
      });
    }

    destroy() {
      if (this.#destroyed) return;
      this.#destroyed = true;
      control.live -= 1;
      for (const fail of this.#inFlight) fail(abortError());
    }
  }

  Object.defineProperty(window, "LanguageModel", {value: LanguageModel, writable: true, configurable: true});
})();
