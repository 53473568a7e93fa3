"""The context meter under the composer and what happens when a conversation outgrows the model's window,
in the page, against the real web-llm module and worker with the engine double (whose prompt_tokens are
the words of the templated prompt, like a tokenizer's count; see tests/browser/double/engine_double.js)."""

from __future__ import annotations

import json
import re

from tests.browser.conftest import READY_TIMEOUT_MS
from tests.browser.double import CHAT_MODEL, app_config
from tests.browser.ui_helpers import READ_STORED, answers, close_sheet, open_chat, open_sheet, shot, ui_site

QUESTIONS = [
    "Which rivers flow through the old towns of central Europe, and which of them is the longest one?",
    "Tell me more about the second of those rivers, its source, the cities along it and where it ends.",
    "How do ships get past the rapids on such a river, and since when have people built locks for that?",
]
DRAFT = "And which of these rivers can large ships still sail up today, all the way from the open sea?"


def small_window_site(serve, tmp_dir, window: int):
    """ui_site, with the double's chat model given a context window of ``window`` tokens."""
    site = ui_site(serve, tmp_dir)
    config_file = tmp_dir / "chat-config.json"
    config = json.loads(config_file.read_text())
    for record in config["app_config"]["model_list"]:
        if record["model_id"] == CHAT_MODEL:
            record["overrides"] = {"context_window_size": window}
    config_file.write_text(json.dumps(config))
    return site


def send(page, text: str, nth: int) -> None:
    """Send ``text`` and wait until the ``nth`` answer (0-based) is done."""
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")
    answer = answers(page).nth(nth)
    answer.and_(page.locator(":not([data-status=streaming])")).wait_for(timeout=60_000)
    assert answer.get_attribute("data-status") == "done", answer.locator(".meta").inner_text()


def meter_tokens(page) -> int:
    return int(page.get_attribute("#context-meter", "data-tokens") or 0)


def type_draft(page, text: str) -> int:
    """Type ``text`` into the message box and return the meter's count once it has counted it."""
    before = page.get_attribute("#context-meter", "data-tokens")
    page.fill("#prompt", text)
    page.wait_for_function("before => document.querySelector('#context-meter').dataset.tokens !== before", arg=before)
    return meter_tokens(page)


def last_reported_usage(page) -> tuple[int, int]:
    """prompt/completion tokens the engine reported for the newest request (the Device sheet's Activity line)."""
    open_sheet(page, "device")
    line = page.locator('#activity-list li[data-event="gen_ai.request.end"]').first.inner_text()
    close_sheet(page, "device")
    found = re.search(r"· (\d+)/(\d+) tokens", line)
    assert found, line
    return int(found.group(1)), int(found.group(2))


def test_the_meter_agrees_with_the_engines_prompt_tokens_for_the_request_sent(page, serve, tmp_path_factory):
    site = ui_site(serve, tmp_path_factory.mktemp("meter"))
    w = open_chat(page, site)
    for i, text in enumerate(QUESTIONS):
        send(page, text, i)
    # A fresh page: web-llm's worker starts again, so the next request is prefilled whole and its
    # prompt_tokens count the whole request (within one page it reuses its cache and counts the new turn).
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.locator("#messages .msg-assistant").nth(2).wait_for()
    empty = meter_tokens(page)
    assert re.fullmatch(r"[\d,]+ / 4,096 tokens", page.inner_text("#context-meter")), page.inner_text("#context-meter")
    shown = type_draft(page, DRAFT)
    assert shown > empty  # it follows the draft as it is typed
    shot(page, "context-meter")
    page.press("#prompt", "Enter")
    answers(page).nth(3).and_(page.locator("[data-status=done]")).wait_for(timeout=60_000)
    prompt_tokens, _ = last_reported_usage(page)
    print(f"meter {shown} / engine prompt_tokens {prompt_tokens}")
    assert abs(shown - prompt_tokens) <= 0.02 * prompt_tokens, (shown, prompt_tokens)
    # The first message of a new conversation is estimated alone, at the rates learned from the answers.
    page.locator("#new-chat").click()
    first = type_draft(page, QUESTIONS[0])
    page.press("#prompt", "Enter")
    answers(page).nth(0).and_(page.locator("[data-status=done]")).wait_for(timeout=60_000)
    prompt_tokens, _ = last_reported_usage(page)
    print(f"first message: meter {first} / engine prompt_tokens {prompt_tokens}")
    assert abs(first - prompt_tokens) <= 0.1 * prompt_tokens, (first, prompt_tokens)
    w.assert_clean()


def test_drop_oldest_keeps_answering_and_says_what_was_left_out(page, serve, tmp_path_factory):
    site = small_window_site(serve, tmp_path_factory.mktemp("drop"), 200)
    w = open_chat(page, site)
    for i in range(6):
        send(page, f"{QUESTIONS[i % 3]} ({i})", i)
    assert answers(page).count() == 6
    assert answers(page).nth(5).locator(".body").inner_text().endswith("(5)")
    assert "earlier messages left out to fit the model's context window" in answers(page).nth(5).locator(".meta").inner_text()
    type_draft(page, DRAFT)
    meter = page.locator("#context-meter")
    assert re.search(r"/ 200 tokens · oldest \d+ messages left out$", meter.inner_text()), meter.inner_text()
    assert meter.get_attribute("data-level") == "over"
    assert page.inner_text("#chat-notice").strip() == ""
    w.assert_clean()


def test_summarise_pins_a_summary_keeps_answering_and_the_summary_survives_a_reload(page, serve, tmp_path_factory):
    site = small_window_site(serve, tmp_path_factory.mktemp("summarise"), 300)
    w = open_chat(page, site)
    open_sheet(page, "settings")
    page.select_option("#setting-context-policy", "summarise")
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#settings-saved", has_text="Saved.").wait_for()
    close_sheet(page, "settings")
    for i in range(7):
        send(page, f"{QUESTIONS[i % 3]} ({i})", i)
    assert answers(page).count() == 7
    assert answers(page).nth(6).locator(".body").inner_text().endswith("(6)")
    summaries = page.locator("#messages .msg-summary")
    assert summaries.count() >= 1
    newest = summaries.last
    title = newest.locator("summary").text_content()
    found = re.fullmatch(r"Summary of (\d+) earlier messages", title)
    assert found, title
    n = int(found.group(1))
    assert n >= 2
    assert not newest.locator(".body").is_visible()  # collapsed until opened
    newest.locator("summary").click()
    assert newest.locator(".body").inner_text().strip()
    assert f"a summary of {n} earlier messages sent instead of them" in answers(page).nth(6).locator(".meta").inner_text()
    meter = page.locator("#context-meter")
    assert re.search(rf"summary of {n} messages", meter.inner_text()), meter.inner_text()
    shot(page, "context-summary")
    # Kept: the summary is stored as a message of the conversation and comes back after a reload.
    stored = page.evaluate(READ_STORED)
    assert [m["role"] for m in stored[0]["messages"]].count("summary") == summaries.count()
    page.reload()
    page.wait_for_selector("#chat[data-state=ready]", timeout=READY_TIMEOUT_MS)
    page.locator("#messages .msg-summary").last.wait_for()
    assert page.locator("#messages .msg-summary").last.locator("summary").text_content() == title
    page.locator("#context-meter", has_text=f"summary of {n} messages").wait_for()
    send(page, "One more question after the reload?", 7)
    assert answers(page).nth(7).locator(".body").inner_text().endswith("after the reload?")
    w.assert_clean()


def test_stop_while_summarising_stops_the_answer_and_pins_nothing(page, serve, tmp_path_factory):
    site = small_window_site(serve, tmp_path_factory.mktemp("stop-summary"), 300)
    w = open_chat(page, site)
    open_sheet(page, "settings")
    page.select_option("#setting-context-policy", "summarise")
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#settings-saved", has_text="Saved.").wait_for()
    close_sheet(page, "settings")
    # The double writes each token of a request whose last message holds [[delay=MS]] MS apart: the
    # first question's line in the summary's transcript makes summarising slow enough to stop.
    send(page, f"[[delay=60]] {QUESTIONS[0]}", 0)
    i = 1
    while True:
        page.fill("#prompt", f"{QUESTIONS[i % 3]} ({i})")
        page.press("#prompt", "Enter")
        answer = answers(page).nth(i)
        answer.locator(".meta").and_(page.locator(":text('summarising'), :text('tok/s')")).first.wait_for(
            timeout=60_000)
        if "summarising" in answer.locator(".meta").inner_text():
            break
        answer.and_(page.locator("[data-status=done]")).wait_for(timeout=60_000)
        i += 1
        assert i < 10, "the history never outgrew the window"
    page.click("#stop")
    answer.and_(page.locator("[data-status=stopped]")).wait_for(timeout=10_000)
    assert page.locator("#messages .msg-summary").count() == 0
    assert "summarising" not in answer.locator(".meta").inner_text()
    # The next message summarises afresh and is answered.
    send(page, "Shall we go on?", i + 1)
    assert page.locator("#messages .msg-summary").count() == 1
    w.assert_clean()


# ---------------------------------------------------------------------------- a real model: llama.cpp's server

TOPICS = [
    "My name is Ada and I keep bees on a roof in Lisbon. This spring two of my five hives swarmed in April.",
    "The strongest hive is the blue one near the chimney; it made eleven kilograms of honey last summer.",
    "I am thinking of adding a sixth hive in May, but my neighbour Rui worries about the bees near his washing.",
    "The roof gets very hot in August, so I put up a shade cloth and a shallow water tray with stones in it.",
    "Last week I saw varroa mites on a drone in the yellow hive, and I plan to treat it with oxalic acid.",
    "Rui finally tasted the honey at dinner on Sunday and now he asks whether he could have a hive himself.",
]


def llama_chat(launch_chromium, serve, tmp_dir, llama, *, window: int, policy: str):
    """The chat without WebGPU, answered by the real SmolLM2 on llama.cpp's server (a context window of
    ``window`` tokens stated in the config), with short answers and the given overflow policy."""
    from tests.browser.conftest import API_KEY, QUIET_FLAGS

    site = ui_site(serve, tmp_dir, cloud={"base_url": llama.origin + "/v1", "model": "smollm2",
                                          "label": "llama.cpp test server", "context_window": window})
    page = launch_chromium(QUIET_FLAGS).new_page()
    w = open_chat(page, site, allowed=(llama.origin,))
    page.locator("#backend-notice[data-kind=cloud]").wait_for()
    open_sheet(page, "settings")
    page.fill("#setting-api-key", API_KEY)
    page.fill("#setting-max-tokens", "24")
    page.select_option("#setting-context-policy", policy)
    page.get_by_role("button", name="Save", exact=True).click()
    page.locator("#settings-saved", has_text="Saved.").wait_for()
    close_sheet(page, "settings")
    return page, w


def server_prompt_tokens(llama, body: dict) -> int:
    """The prompt tokens llama.cpp's server counts for the messages of ``body`` (asked again, not streamed:
    its streams carry no usage)."""
    import urllib.request

    from tests.browser.conftest import API_KEY

    again = {"model": body["model"], "messages": body["messages"], "max_tokens": 1, "stream": False}
    request = urllib.request.Request(llama.origin + "/v1/chat/completions", data=json.dumps(again).encode(),
                                     headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())["usage"]["prompt_tokens"]


def test_a_real_model_keeps_answering_past_its_window_leaving_turns_out(launch_chromium, serve, tmp_path_factory,
                                                                        llama):
    page, w = llama_chat(launch_chromium, serve, tmp_path_factory.mktemp("llama-drop"), llama, window=250,
                         policy="drop-oldest")
    sent: list[dict] = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/chat/completions")
            and sent.append(json.loads(r.post_data)))
    for i, text in enumerate(TOPICS[:5]):
        send(page, text, i)
    assert "left out to fit the model's context window" in answers(page).nth(4).locator(".meta").inner_text(), \
        page.inner_text("#context-meter")
    shown = type_draft(page, TOPICS[5])
    assert page.locator("#context-meter").inner_text().startswith("~")  # this server reports no usage in streams
    page.press("#prompt", "Enter")
    answers(page).nth(5).and_(page.locator("[data-status=done]")).wait_for(timeout=120_000)
    counted = server_prompt_tokens(llama, sent[-1])
    print(f"llama.cpp: meter {shown} / server prompt_tokens {counted}")
    # Without usage the meter is an estimate ("~"): close to the server's count (its chat template adds
    # a default system prompt the page cannot see), and the request it planned fits the window by the
    # server's own count.
    assert abs(shown - counted) <= 0.15 * counted and shown <= 250 and counted <= 250
    w.assert_clean()


def test_a_real_model_summarises_what_will_not_fit_and_keeps_answering(launch_chromium, serve, tmp_path_factory,
                                                                       llama):
    page, w = llama_chat(launch_chromium, serve, tmp_path_factory.mktemp("llama-summary"), llama, window=250,
                         policy="summarise")
    for i, text in enumerate(TOPICS):
        send(page, text, i)
    assert answers(page).count() == len(TOPICS)
    summary = page.locator("#messages .msg-summary").last
    summary.wait_for()
    summary.locator("summary").click()
    written = summary.locator(".body").inner_text().strip()
    print(f"SmolLM2's summary: {written!r}")
    assert written  # the real model's own words, pinned in the conversation
    n = int(re.search(r"Summary of (\d+) earlier messages", summary.locator("summary").text_content()).group(1))
    assert f"a summary of {n} earlier messages sent instead of them" in page.locator(
        "#messages .msg-assistant").last.locator(".meta").inner_text()
    shot(page, "context-summary-llama")
    w.assert_clean()
