// One HTTP request for app/ffi/http.py: an HTTP response as SSE `data:` texts (framing by the
// vendored eventsource-parser), or its whole body when it is not a stream. A non-2xx answer becomes
// an Error named HttpError with its status. The parser is imported only for a stream.

export async function* request(url, init, controller, sse) {
  const response = await fetch(url, Object.assign({}, init, { signal: controller.signal }));
  if (!response.ok) {
    const error = new Error(await response.text());
    error.name = "HttpError";
    error.status = response.status;
    error.retryAfter = response.headers.get("retry-after");
    throw error;
  }
  if (!sse) { yield await response.text(); return; }
  const { EventSourceParserStream } = await import("../vendor/eventsource-parser/stream.js");
  const events = response.body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream());
  for await (const event of events) {
    if (event.data === "[DONE]") return;
    if (event.event === "error") {
      const error = new Error(event.data); error.name = "HttpError"; error.status = 500; throw error;
    }
    yield event.data;
  }
}
