#!/usr/bin/env python3
"""The fault table: runs the fault-injection tests in real Chromium and prints, for each fault, what
the user sees, what was lost and whether anything hung, as a Markdown table (README "Faults").

    python3 bench/faults.py            # builds dist/ if stale; needs the test dependencies (build.py test)
    python3 bench/faults.py --short    # one row only: a quick check that it runs (CI)

Each row is one browser test. Its assertions are the row: it injects the fault, checks what the page
shows, that nothing the user had (messages, stored model files) is gone, and that the page answers
again within a bound (a hang fails the test at its timeout). A row whose test fails prints FAILED
instead of the figures, so the table can only claim what passed in this run.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# test id (file::name) -> (fault, what the user sees, lost, hung)
FAULTS: dict[str, tuple[str, str, str, str]] = {
    "tests/browser/test_session.py::test_a_hung_endpoint_is_cut_by_the_timeout_and_the_chat_says_why":
        ("hung endpoint (no headers)", "after the first-token timeout and one retry: “NoBackendAvailable … timed out "
         "after 2s waiting for the first token”; the composer works", "0 messages", "no"),
    "tests/browser/test_session.py::test_stop_before_the_first_token_ends_the_answer_at_once":
        ("Stop before the first token", "the answer ends “stopped” at once; the request is aborted", "0 messages", "no"),
    "tests/browser/test_session.py::test_a_failed_first_attempt_is_retried_and_the_request_is_observed":
        ("endpoint answers 503 once", "nothing: retried, answered; Activity shows the retry", "0 messages", "no"),
    "tests/browser/test_faults.py::test_a_chat_longer_than_the_models_context_window_keeps_answering":
        ("conversation longer than the context window", "the answer says how many earlier messages were left out",
         "0 messages (kept, only not sent)", "no"),
    "tests/browser/test_widget.py::test_a_site_not_allowed_to_embed_the_chat_gets_nothing_from_it":
        ("a site not allowed embeds the widget", "the frame says it cannot run there; no event reaches the site",
         "0 (nothing read)", "no"),
    "tests/browser/test_widget.py::test_the_full_app_refuses_to_run_framed_by_another_site":
        ("the app framed by another site (clickjacking)", "the frame shows only why it refuses", "0", "no"),
    "tests/browser/test_widget.py::test_an_embedded_chat_never_sees_the_users_own_conversations":
        ("an allowed site embeds the chat", "its own conversation; none of the user's", "0", "no"),
    "tests/browser/test_store_layout.py::test_the_models_panel_downloads_into_the_vendored_releases_store":
        ("older web-llm release vendored (0.2.79)", "Download stores what that release reads: its own "
         "hasModelInCache is true", "0 bytes", "no"),
    "tests/browser/test_faults_storage.py::test_twin_model_ids_evicted_and_deleted_keep_the_loaded_models_files":
        ("twin model ids sharing files: evict, delete", "the unrelated model is evicted; deleting the twin frees "
         "nothing and says so; the loaded model stays loaded", "0 bytes of the loaded model", "no"),
    "tests/browser/test_faults_quota.py::test_quota_exhausted_mid_conversation_is_said_and_the_chat_goes_on":
        ("quota exhausted during a conversation", "“Not saved: … storage quota full …” with the way out; answers "
         "go on; saved once space is back", "0 messages", "no"),
    "tests/browser/test_faults_quota.py::test_quota_exhausted_mid_download_fails_at_once_typed_and_cancel_and_delete_still_work":
        ("quota exhausted mid-download", "“Download of … failed: … refused to store more” within seconds; Cancel "
         "and Delete work", "0 bytes of other models", "no"),
    "tests/browser/test_faults_download.py::test_two_tabs_downloading_one_model_fetch_each_file_once_and_the_second_waits":
        ("two tabs download one model at once", "the second tab says “Waiting for another tab” (Cancel works "
         "there), then finds the files stored; both end “done”; each file crossed the wire once",
         "0 bytes (stored bytes = the server's)", "no"),
    "tests/browser/test_faults_download.py::test_twin_ids_downloading_at_once_in_one_tab_fetch_each_file_once":
        ("twin ids (…-MLC, …-MLC-1k) downloaded at once in one tab", "one waits for the other's files; both "
         "“done”; no file fetched twice", "0 bytes", "no"),
    "tests/browser/test_faults_download.py::test_a_file_changed_on_the_server_between_cancel_and_resume_is_fetched_again_whole":
        ("file changed on the server between cancel and resume", "Resume completes; If-Range makes the server "
         "send the new file whole; the old staged bytes are dropped, never stitched", "0 bytes (stored = new file)",
         "no"),
    "tests/browser/test_faults_download.py::test_a_range_of_a_changed_file_sent_despite_if_range_is_not_stitched":
        ("a cache ignores If-Range and sends a range of the changed file", "the download completes: the 206 "
         "carries another ETag, so the staged part is dropped and the new file fetched whole",
         "0 bytes (stored = new file)", "no"),
    "tests/browser/test_faults_download.py::test_a_dropped_connection_resumes_with_range_and_if_range_and_fetches_only_the_rest":
        ("connection dropped mid-shard, then resume", "ModelFetchFailed; the next download sends Range + If-Range "
         "and fetches only the missing bytes; the shard's md5 matches", "0 bytes (nothing fetched twice)", "no"),
    "tests/browser/test_faults_download.py::test_a_wrong_content_range_discards_the_staged_part_and_fetches_the_file_again":
        ("server answers a resume with the wrong Content-Range", "the download completes: the staged part is "
         "dropped and the file fetched again whole", "0 bytes (stored = the server's file)", "no"),
    "tests/browser/test_faults_download.py::test_a_shard_whose_bytes_do_not_match_the_manifest_md5_fails_typed_and_stores_nothing_of_it":
        ("shard bytes do not match the manifest's md5sum", "“ChecksumMismatch: <url>: the downloaded bytes have "
         "md5 …”; nothing of that file stored or staged; a later download completes", "0 bytes of good files", "no"),
    "tests/browser/test_faults_download.py::test_staged_parts_of_two_different_downloads_are_never_stitched":
        ("staged parts left by two downloads of one file", "the download completes: the mixed parts are dropped "
         "and the file fetched whole", "0 bytes (stored = the server's file)", "no"),
    "tests/browser/test_faults_download.py::test_without_web_locks_a_download_still_works":
        ("a browser without Web Locks", "downloads work as before (not serialised across tabs)", "0 bytes", "no"),
    "tests/browser/test_faults_download.py::test_a_cut_between_segments_keeps_them_and_the_resume_asks_for_the_rest_with_if_range":
        ("cancel while a shard comes in Range segments", "Aborted; the segments received are staged; the "
         "resume asks for the rest with If-Range", "0 bytes (nothing fetched twice)", "no"),
    "tests/browser/test_faults_download.py::test_a_file_that_changes_between_segments_is_never_stitched":
        ("a file changes on the server between two segments", "the download completes: the next segment's "
         "ETag differs, so the segments are dropped and the new file fetched whole", "0 bytes (stored = new file)",
         "no"),
    "tests/browser/test_faults_download.py::test_a_server_without_ranges_sends_the_file_whole_and_it_is_streamed":
        ("a server without Range support", "the download completes: the 200 is read as one stream, not asked again",
         "0 bytes", "no"),
    "tests/browser/test_models.py::test_a_reload_during_a_segmented_download_resumes_after_the_staged_segments":
        ("reload during a segmented download", "the model is “partial”; the next download asks for the rest only",
         "the segment in flight (< 1 segment per file)", "no"),
    "tests/browser/test_faults_worker.py::test_a_worker_killed_mid_answer_ends_the_answer_at_once_and_the_next_message_restarts_it":
        ("engine worker killed mid-answer", "the answer ends with EngineCrashed, its text kept; the next message "
         "says “reloading”, starts a new worker and answers", "0 messages", "no"),
    "tests/browser/test_faults_worker.py::test_gpu_device_lost_mid_answer_fails_fast_and_the_next_message_restarts_the_worker":
        ("GPU device lost mid-answer", "DeviceLost at once; the next message reloads the model with a notice",
         "0 messages", "no"),
    "tests/browser/test_faults_worker.py::test_an_answer_that_stalls_mid_stream_ends_with_a_typed_error_and_the_chat_goes_on":
        ("answer stalls mid-stream", "“StreamStalled: no new token for 1s”; what arrived is kept; the chat goes on",
         "0 messages", "no"),
    "tests/browser/test_faults_worker.py::test_an_error_event_from_the_worker_fails_the_answer_with_its_message":
        ("uncaught error in the engine worker", "EngineCrashed with the worker's message", "0 messages", "no"),
    "tests/browser/test_widget.py::test_an_embedded_chat_asking_for_a_model_larger_than_the_quota_downloads_nothing":
        ("an embed asks for a model larger than the quota", "“… needs 4 TiB more, and this site may store only …” "
         "before one weight is fetched; again at once on the next message", "0 bytes", "no"),
    "tests/browser/test_faults_tabs.py::test_two_tabs_chatting_in_one_conversation_keep_and_show_every_message":
        ("two tabs chatting in one conversation, also at once", "each tab shows the other's messages as they "
         "stream; a third tab reads all of them", "0 messages", "no"),
    "tests/browser/test_faults_tabs.py::test_a_conversation_deleted_in_one_tab_leaves_the_other_and_storage_for_good":
        ("conversation deleted in one tab while the other answers in it", "it leaves the other tab at once, its "
         "answer stopped; it never comes back", "0 other messages", "no"),
    "tests/browser/test_sw_update.py::test_an_open_tab_keeps_its_version_after_a_deploy_and_takes_the_new_one_on_reload":
        ("new version deployed while a tab is open", "the tab keeps running its version (every file it loads "
         "after the deploy is its own) and says “A new version is ready” with “Reload to update”; the button or "
         "a plain reload puts it on the new version", "0 (nothing reloads unasked)", "no"),
    "tests/browser/test_sw_update.py::test_a_new_tab_takes_the_new_version_while_the_old_tab_keeps_its_own":
        ("service-worker update with another tab open", "a new tab starts on the new version, loaded once, "
         "however long the browser takes to let the new worker take over; the old tab still gets its own "
         "version's files and offers the update", "0", "no"),
    "tests/browser/test_sw_update.py::test_reload_to_update_lands_on_the_new_version_while_the_old_worker_stays_busy":
        ("“Reload to update” while the old service worker is kept busy (the browser will not let the new one "
         "take over)", "the tab reloads after 3 s and runs the new version, served by the old worker", "0", "no"),
    "tests/browser/test_sw_update.py::test_a_tab_opened_while_a_new_version_waits_starts_it_again_without_the_site":
        ("site gone after a new version was installed and a tab opened on it", "that tab reloads into the new "
         "version from the browser's cache; the old tab keeps all of its own files", "0 files", "no"),
    "tests/browser/test_storage_upgrade.py::test_a_newer_version_opening_the_database_closes_this_tabs_storage_with_a_notice":
        ("database upgrade with an old tab open", "the old tab closes its storage at once: “This tab closed its "
         "storage because a newer version of the app opened; reload”; its later saves fail typed (StorageClosed); "
         "the new version opens without waiting", "0 (the new version reads what was stored)", "no"),
    "tests/browser/test_storage_upgrade.py::test_an_open_blocked_by_an_old_tab_waits_and_the_app_starts_when_that_tab_closes":
        ("database held open by an older tab that ignores the upgrade", "“Waiting for another tab of this app (an "
         "older version) to close its storage …”; the chat starts when that tab closes", "0 (kept through the "
         "upgrade)", "no"),
    "tests/browser/test_python_start.py::test_without_a_usable_snapshot_python_starts_the_ordinary_way":
        ("Python's start-up snapshot missing, cut off, not a snapshot, or made by another Pyodide build",
         "nothing but a slower start: Python starts the ordinary way (console warning; the Device sheet says "
         "“started in …” without “from its snapshot”), in the same state a snapshot gives", "0", "no"),
}
# Fault tests from other files are listed too, when present: file -> (what the row's fault column says).
MORE = ("tests/browser/test_faults_storage.py", "tests/browser/test_faults_quota.py",
        "tests/browser/test_faults_worker.py", "tests/browser/test_faults_tabs.py")


def _docstrings(files: list[str]) -> dict[str, str]:
    """``file::test`` -> the first sentence of its docstring (what the test says the user sees)."""
    import ast

    out = {}
    for file in files:
        for node in ast.walk(ast.parse((ROOT / file).read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                doc = " ".join((ast.get_docstring(node) or "").split())
                out[f"{file}::{node.name}"] = doc.split(". ")[0]
    return out


SHORT = "tests/browser/test_session.py::test_stop_before_the_first_token_ends_the_answer_at_once"


def main() -> int:
    short = "--short" in sys.argv[1:]
    ids = [SHORT] if short else [tid for tid in FAULTS] + [f for f in MORE if (ROOT / f).exists()]
    files = sorted({tid.split("::")[0] for tid in ids})
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "faults.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *ids]
        print("$", " ".join(cmd[2:4]), f"... ({len(files)} files)", file=sys.stderr, flush=True)
        subprocess.run(cmd, cwd=ROOT)
        results = {}
        for case in ET.parse(report).getroot().iter("testcase"):
            name = case.get("name", "").split("[")[0]
            file = case.get("classname", "").replace(".", "/") + ".py"
            failed = any(child.tag in ("failure", "error") for child in case)
            seconds, skipped = float(case.get("time", "0")), case.find("skipped") is not None
            # The cases of a parametrized test are one row: failed if any failed, their time summed.
            if f"{file}::{name}" in results:
                was_failed, was_seconds, was_skipped = results[f"{file}::{name}"]
                failed, seconds, skipped = failed or was_failed, seconds + was_seconds, skipped and was_skipped
            results[f"{file}::{name}"] = (failed, seconds, skipped)
    docs = _docstrings(files)
    print("| fault | what the user sees | lost | hung | test (s) |")
    print("|---|---|---|---|---|")
    for tid, outcome in results.items():
        failed, seconds, skipped = outcome
        fault, sees, lost, hung = FAULTS.get(tid, (tid.split("::")[1].replace("_", " ").removeprefix("test "),
                                                  docs.get(tid) or "as the test asserts", "0", "no"))
        if failed or skipped:
            sees, lost, hung = "FAILED" if failed else "skipped", "?", "?"
        print(f"| {fault} | {sees} | {lost} | {hung} | {seconds:.1f} |")
    return 1 if any(f for f, _s, _k in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
