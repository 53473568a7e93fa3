"""Which sheet is open: one at a time, costly panels mounted on first open, bad names refused."""

from __future__ import annotations

import pytest

from app.errors import UsageError
from app.ui.sheets import SHEETS, Sheets
from app.ui.store import effect


def test_one_sheet_at_a_time_and_toggle_closes():
    sheets = Sheets()
    seen = []
    eff = effect(lambda: seen.append(sheets.current.get()))
    sheets.show("models")
    sheets.show("settings")
    assert sheets.toggle("settings") is False
    assert sheets.toggle("python") is True
    assert sheets.close() == "python" and sheets.close() is None
    eff.dispose()
    assert seen == [None, "models", "settings", None, "python", None]


def test_first_open_hooks_run_once_and_at_once_when_already_opened():
    sheets = Sheets()
    mounted = []
    sheets.when_first_opened("models", lambda: mounted.append("models"))
    sheets.show("settings")
    assert mounted == []
    sheets.show("models")
    sheets.close()
    sheets.show("models")
    assert mounted == ["models"]
    sheets.when_first_opened("settings", lambda: mounted.append("settings"))  # opened before: runs now
    assert mounted == ["models", "settings"]


def test_an_unknown_sheet_is_refused_before_anything_changes():
    sheets = Sheets()
    sheets.show("device")
    with pytest.raises(UsageError, match="no sheet named 'modles'"):
        sheets.show("modles")
    with pytest.raises(UsageError):
        sheets.when_first_opened("nope", lambda: None)
    assert sheets.current.peek() == "device"
    assert set(SHEETS) == {"conversations", "models", "settings", "python", "device", "files"}
