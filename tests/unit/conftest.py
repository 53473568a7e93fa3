"""Unit tests run under CPython with no browser.

``run(coro)`` drives a coroutine to completion on its own thread: Playwright's sync API keeps an
event loop running on the main thread for the whole session, so ``asyncio.run`` cannot be used there.
"""

import asyncio
import concurrent.futures

import pytest


def run(coro):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def arun():
    return run
