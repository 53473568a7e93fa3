"""The web-llm engine double: a test build of the engine worker (see engine_double.js).

``serve("/", overlay=OVERLAY)`` serves it in place of ``static/webllm-worker.js``;
``app_config(site.origin)`` is the appConfig naming its models (models.json).

``CHROME_AI`` is a double of Chrome's built-in model (``LanguageModel``, see chrome_ai.js), for
``page.add_init_script(path=CHROME_AI)`` before the page opens.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

HERE = Path(__file__).parent

def _model_files() -> dict[str, Path]:
    """What the app reads of each double model before loading it (its size check, app/models/manager.py):
    config, tensor manifest (both names web-llm releases use) and model library; and the one shard the
    manifest lists (1 MiB of random bytes), so a double model can be downloaded like a real one. An id
    containing "huge" lists a 4 TiB shard (more than any quota), never served."""
    out = Path(tempfile.mkdtemp(prefix="double-model-files-"))
    files: dict[str, Path] = {}

    def put(rel: str, data: bytes) -> None:
        path = out / rel.replace("/", "__")
        path.write_bytes(data)
        files[rel] = path

    config = json.dumps({"model_type": "double", "context_window_size": 4096, "tokenizer_files": []}).encode()
    for record in json.loads((HERE / "models.json").read_text())["model_list"]:
        base = record["model"].replace("{origin}/", "")
        nbytes = 4 << 40 if "huge" in record["model_id"] else 1 << 20
        manifest = json.dumps({"metadata": {"ParamSize": 1}, "records": [
            {"dataPath": "params_shard_0.bin", "format": "raw-shard", "nbytes": nbytes, "records": []}]}).encode()
        if nbytes < 1 << 30:  # a download through the Models panel (or `models.download`) stores it
            put(base + "params_shard_0.bin", random.Random(record["model_id"]).randbytes(nbytes))
        put(base + "mlc-chat-config.json", config)
        put(base + "tensor-cache.json", manifest)
        put(base + "ndarray-cache.json", manifest)
        put(record["model_lib"].replace("{origin}/", ""), b"\0asm\1\0\0\0")
    return files


OVERLAY = {
    "static/webllm-worker.js": HERE / "worker.js",
    "static/engine-double.js": HERE / "engine_double.js",
    **_model_files(),
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
VISION_MODEL = "Double-Vision-q4f32_1-MLC"  # model_type 2 (VLM): web-llm accepts image parts for it
EMBED_MODEL = "Double-Embed-q0f32-MLC-b4"  # model_type 1: hashed bag-of-words vectors (engine_double.js)
EMBED_F16_MODEL = "Double-Embed-q0f16-MLC-b4"  # needs shader-f16


def app_config(origin: str) -> dict:
    """The double's appConfig with its URLs on ``origin`` (the test server, ``http://127.0.0.1:<port>``)."""
    text = (HERE / "models.json").read_text().replace("{origin}", origin.rstrip("/"))
    return {"model_list": json.loads(text)["model_list"]}
