"""Mount the chat on the page: read the config and saved settings, build the views, restore the
conversations. Called by :mod:`app.main` after the page says "Ready", so start-up does not wait
for any of it.

``static/chat-config.json`` (optional) configures what answers: see :class:`app.ui.connect.PageConfig`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

from app import ffi
from app.ui.chat import Chat, KvStore, Settings
from app.ui.connect import CONFIG_URL, CloudConfig, Connector, PageConfig
from app.ui.store import Signal
from app.ui.view import App

current: App | None = None  # the mounted app (tests and the host API reach it here)


async def read_config(url: str = CONFIG_URL) -> PageConfig:
    try:
        raw = await ffi.fetch_json(url)
    except Exception:  # no config file: web-llm's prebuilt models, no cloud endpoint
        raw = None
    return PageConfig.from_dict(raw)


async def mount(gpu: Awaitable[Any]) -> App:
    """Build and show the chat; ``gpu`` resolves to the page's WebGPUReport."""
    global current
    config = await read_config()
    settings_store = KvStore("settings")
    saved = await settings_store.get("chat") or {}
    theme = await settings_store.get("theme") or "auto"
    if saved.get("cloud"):  # a saved endpoint (without its key) replaces the configured one
        config = replace(config, cloud=CloudConfig.parse(saved["cloud"]))
    connector = Connector(config)
    chat = Chat(connect=connector.client, kv=KvStore("conversations"),
                settings=Signal(Settings.from_record(saved.get("settings"))))
    await chat.load()
    current = App(chat, connector, settings_store, str(theme))
    ffi.set_attr("chat", "data-state", "ready")
    connector.gpu.set(await gpu)
    return current
