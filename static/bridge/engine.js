// The page side of web-llm's worker, and how its death is noticed (app/ffi/engine.py).
//
// A worker can die without a word: an uncaught error, running out of memory, or terminate() from
// outside. web-llm's WebWorkerMLCEngine then waits forever for the answer to what it asked, and so
// would every request after it. Here each worker gets a Life that settles once, the first time any
// of these happens:
//   - the Worker fires `error` (an uncaught error in it, a script that failed to load) or
//     `messageerror` (an answer that could not be received): the worker is terminated, its state
//     being unknown;
//   - its lifeline breaks: the worker holds a Web Lock named for it (static/bridge/lifeline.js) and
//     the page queues for the same lock, which it is granted only when the worker is gone, however
//     it went (terminate() fires no event at all);
//   - the page closes it (close()).
// Every call and every stream read through this module races against that Life, so a request in
// flight fails at once with an "EngineCrashedError: ..." instead of waiting forever.
import { callMethod, reader } from "./reader.js";

class Life {
  constructor(worker) {
    this.worker = worker;
    this.cause = null;
    this.dead = new Promise((_, reject) => { this.reject = reject; });
    this.dead.catch(() => {});  // nobody may be waiting when it settles
    worker.addEventListener("error", (event) => {
      event.preventDefault();  // reported as a typed error in Python, not as an uncaught page error
      this.die(`the model's worker crashed (${event.message || "an uncaught error in the worker"})`);
    });
    worker.addEventListener("messageerror", () => this.die("the model's worker sent a message that could not be read"));
    if (globalThis.navigator?.locks) {
      const name = `webllm-worker-${crypto.randomUUID()}`;
      const channel = new MessageChannel();
      // Only once the worker holds the lock may the page queue for it; being granted it then means
      // the worker is gone.
      channel.port1.onmessage = () => {
        channel.port1.close();
        navigator.locks.request(name, () => this.die("the model's worker stopped (crashed, ran out of memory or was terminated)"));
      };
      worker.postMessage({ kind: "app.lifeline", name }, [channel.port2]);
    }
  }

  die(cause) {
    if (this.cause !== null) return;
    this.cause = cause;
    this.worker.terminate();
    const error = new Error(cause);
    error.name = "EngineCrashedError";
    this.reject(error);
  }

  race(promise) {
    if (this.cause !== null) promise.catch(() => {});
    return Promise.race([promise, this.dead]);
  }
}

// A module worker at `url` and web-llm's WebWorkerMLCEngine over it, watched by a Life.
export function createEngine(webllm, url, engineConfig) {
  const worker = new Worker(url, { type: "module" });
  const life = new Life(worker);
  const engine = new webllm.WebWorkerMLCEngine(worker, engineConfig);
  return {
    engine,
    // Why the worker is gone ("" while it lives): read by Python before each request.
    failure: () => life.cause ?? "",
    close: () => life.die("the model's worker was closed"),
    // `await engine.a.b.method(...args)`, or EngineCrashedError as soon as the worker dies.
    call: (path, args) => life.race(callMethod(engine, path, args)),
    // The chunks of a streaming call, read at once into a reader (static/bridge/reader.js) that
    // Python takes from; each read raced against the worker's death. The call starts now.
    stream: (path, args) => reader(life.race(callMethod(engine, path, args)).then((source) => {
      const iterator = source[Symbol.asyncIterator]();
      return {
        [Symbol.asyncIterator]() { return this; },
        next: () => life.race(iterator.next()),
        return: (value) => (life.cause === null && iterator.return ? life.race(iterator.return(value)) : Promise.resolve({ done: true, value })),
      };
    }), chunkEncoder()),
    // The same, its arguments given as JSON text (cheaper for Python to hand over than objects).
    streamJson(path, argsJson) { return this.stream(path, JSON.parse(argsJson)); },
  };
}

// web-llm chunks as JSON for Python (app/ffi/engine.py ChunkIterator). Most chunks of an answer
// differ from the one before only in their text: such a chunk crosses as that text alone (a JSON
// string), any other (the first, a role or tool-call change, the last with its finish_reason,
// usage, logprobs) crosses whole (a JSON object). Python rebuilds the same chunk from the last whole one.
function chunkEncoder() {
  let shape = null;  // the last whole chunk with its text left out
  return (chunk) => {
    const choice = chunk?.choices?.length === 1 ? chunk.choices[0] : null;
    const text = choice?.delta?.content;
    if (typeof text !== "string" || chunk.usage || choice.finish_reason != null || choice.logprobs != null) {
      shape = null;
      return JSON.stringify(chunk);
    }
    choice.delta.content = "";
    const rest = JSON.stringify(chunk);
    choice.delta.content = text;
    if (rest === shape) return JSON.stringify(text);
    shape = rest;
    return JSON.stringify(chunk);
  };
}
