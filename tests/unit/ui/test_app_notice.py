"""What the banner above the app says about a new version and about this tab's storage."""

from app.ui.app_notice import NOTICES, STORAGE_SUPERSEDED, UPDATE_READY, notice_for


def test_a_waiting_or_taken_new_version_offers_reload_to_update():
    for event in ("waiting", "activated"):
        shown = notice_for(None, event)
        assert shown is not None and shown.text == UPDATE_READY and shown.button == "Reload to update"


def test_storage_closed_for_a_newer_version_outranks_the_update_and_stays():
    shown = notice_for(notice_for(None, "waiting"), "superseded")
    assert shown is not None and shown.text == STORAGE_SUPERSEDED and shown.button == "Reload"
    assert notice_for(shown, "waiting") is shown
    assert notice_for(shown, "opened") is shown  # only a wait ends with "opened"


def test_a_blocked_open_is_said_without_a_button_and_cleared_when_it_opens():
    blocked = notice_for(None, "blocked")
    assert blocked is not None and blocked.button is None and "older version" in blocked.text
    assert notice_for(blocked, "opened") is None
    assert notice_for(notice_for(None, "waiting"), "opened") == NOTICES["waiting"]


def test_unknown_events_change_nothing():
    assert notice_for(None, "something-else") is None
    assert notice_for(NOTICES["blocked"], "something-else") is NOTICES["blocked"]
