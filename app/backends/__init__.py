"""Backends: each translates a validated :class:`~app.params.ChatRequest` for one engine and streams."""
