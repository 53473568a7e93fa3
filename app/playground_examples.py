"""The Python panel's examples, one click away (each is run by tests/browser/test_playground.py)."""

from __future__ import annotations

STREAM = '''\
# Stream an answer from the model the chat uses, token by token.
stream = await client.chat.completions.create(
    messages=[{"role": "user", "content": "Write a haiku about Python running in a browser."}],
    stream=True,
)
async with stream:  # leaving the block early stops the answer and frees the engine
    async for chunk in stream:
        if chunk.choices:
            print(chunk.choices[0].delta.content or "", end="")
print()
stream.finish_reason
'''

PARSE = '''\
# Extract a typed object from text: the answer is constrained to the model's JSON schema.
from pydantic import BaseModel


class City(BaseModel):
    name: str
    country: str
    population: int


completion = await client.chat.completions.parse(
    response_format=City,
    messages=[{"role": "user", "content": "Lyon is a city in France with about 520,000 people."}],
)
city = completion.choices[0].message.parsed
print(type(city).__name__, city.model_dump())
city
'''

TOOLS = '''\
# Let the model call Python functions: run_tools runs the calls it asks for and sends back results.
def get_weather(city: str) -> str:
    """The weather in a city right now."""
    return {"Paris": "sunny, 21 °C", "Oslo": "snow, -3 °C"}.get(city, "no data")


result = await client.chat.completions.run_tools(
    messages=[{"role": "user", "content": "What is the weather in Paris? Use get_weather."}],
    tools=[get_weather],
)
for call in result.calls:
    print(f"called {call.name}({call.arguments}) -> {call.result!r}")
print("answer:", result.completion.choices[0].message.content)
result.steps
'''

CLASSIFY = '''\
# Classify 20 short texts with a JSON schema (one label each) and show a table.
texts = [
    "I love this phone", "Worst service ever", "The parcel arrived on Tuesday", "Absolutely fantastic",
    "It broke after a day", "The meeting is at noon", "Great value for money", "I want a refund",
    "The store opens at nine", "Best purchase this year", "Terrible battery life", "It is blue",
    "Highly recommended", "Never buying again", "The manual has 20 pages", "Works like a charm",
    "Rude staff", "Delivered in a box", "So happy with it", "Completely useless",
]
schema = {"type": "object", "properties": {"label": {"enum": ["positive", "negative", "neutral"]}},
          "required": ["label"]}
rows = []
for text in texts:
    completion = await client.chat.completions.parse(
        response_format=schema, temperature=0,
        messages=[{"role": "system", "content": "Label the sentiment of the user's text."},
                  {"role": "user", "content": text}],
    )
    rows.append((text, completion.choices[0].message.parsed["label"]))
width = max(len(t) for t, _ in rows)
print(f"{'text':<{width}} | label")
print("-" * width + "-+-" + "-" * 8)
for text, label in rows:
    print(f"{text:<{width}} | {label}")
{label: sum(1 for _, l in rows if l == label) for label in ("positive", "negative", "neutral")}
'''

COMPARE = '''\
# Compare two downloaded models on one prompt: time to first token, tokens/s, the answers.
import time

ready = [m.id for m in models.catalog.all()
         if (await models.status(m.id)).state in ("downloaded", "loaded")][:2]
if len(ready) < 2:
    print(f"Download two models first (Models panel); ready now: {ready or 'none'}")
prompt = [{"role": "user", "content": "In one sentence: why run a language model in the browser?"}]
results = {}
for model_id in ready:
    await models.load(model_id)
    start = time.perf_counter()
    first = None
    stream = await client.chat.completions.create(messages=prompt, stream=True,
                                                  stream_options={"include_usage": True})
    async with stream:
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - start
    total = time.perf_counter() - start
    usage = stream.completion().usage
    tokens = usage.completion_tokens if usage else len(stream.content.split())
    results[model_id] = (first or total, tokens / total if total else 0.0, stream.content.strip())
for model_id, (ttft, rate, answer) in results.items():
    print(f"{model_id}\\n  first token {ttft * 1000:.0f} ms, {rate:.1f} tokens/s\\n  {answer}\\n")
sorted(results, key=lambda m: results[m][0])
'''

EXAMPLES: dict[str, str] = {
    "Stream an answer": STREAM,
    "Extract a pydantic object (parse)": PARSE,
    "Call Python functions as tools (run_tools)": TOOLS,
    "Classify 20 texts into a table": CLASSIFY,
    "Compare two downloaded models": COMPARE,
}
