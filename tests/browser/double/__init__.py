"""The web-llm engine double: a test build of the engine worker (see engine_double.js).

``serve("/", overlay=OVERLAY)`` serves it in place of ``static/webllm-worker.js``;
``app_config(site.origin)`` is the appConfig naming its models (models.json).

``CHROME_AI`` is a double of Chrome's built-in model (``LanguageModel``, see chrome_ai.js), for
``page.add_init_script(path=CHROME_AI)`` before the page opens.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent

OVERLAY = {
    "static/webllm-worker.js": HERE / "worker.js",
    "static/engine-double.js": HERE / "engine_double.js",
}

CHROME_AI = HERE / "chrome_ai.js"

CHAT_MODEL = "Double-Chat-q4f32_1-MLC"
TINY_CONTEXT_MODEL = "Double-Tiny-Context-q4f32_1-MLC"  # context_window_size 32
TOOLS_MODEL = "Hermes-3-Llama-3.1-8B-q4f32_1-MLC"  # in web-llm's functionCallingModelIds
SLOW_MODEL = "Double-slow-q4f32_1-MLC"
FAIL_NETWORK_MODEL = "Double-fail-network-q4f32_1-MLC"
FAIL_QUOTA_MODEL = "Double-fail-quota-q4f32_1-MLC"
FAIL_DEVICE_MODEL = "Double-fail-device-q4f32_1-MLC"
FAIL_F16_MODEL = "Double-fail-f16-q4f16_1-MLC"


def app_config(origin: str) -> dict:
    """The double's appConfig with its URLs on ``origin`` (the test server, ``http://127.0.0.1:<port>``)."""
    text = (HERE / "models.json").read_text().replace("{origin}", origin.rstrip("/"))
    return {"model_list": json.loads(text)["model_list"]}
