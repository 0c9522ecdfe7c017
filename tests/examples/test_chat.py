"""examples/chat in two real headless Chromium browsers, each on a different worker.

``portside serve examples.chat:app --workers 2`` with a redis-server of the
test's own; Debian's Chromium driven through Playwright's Python package (no
browser is downloaded). A message typed in one browser appears in the other;
Redis restarts in the middle and a message typed meanwhile still arrives; one
browser's worker stops, the page reconnects and shows the messages it missed,
recovered from history (SIGKILL: a crash; portside serve replaces the worker).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import tempfile
from typing import Any

import pytest

from tests.hub.redis_server import REASON, REDIS_SERVER, RedisServer
from tests.hub.serving import Served, run_slow
from tests.needs import needs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    needs(REDIS_SERVER, REASON),
    needs(CHROMIUM, "needs Chromium (apt install chromium)"),
    needs(importlib.util.find_spec("playwright"), "needs playwright (pip install -e '.[dev]')"),
    pytest.mark.slow,
]


def test_chat_in_two_browsers() -> None:
    run_slow(chat_in_two_browsers(), timeout=240)


async def open_chat(browser: Any, server: Served, name: str) -> tuple[Any, str]:
    """A page of the chat in the lobby, and the pid of the worker it reached."""
    page = await browser.new_page()
    # retry=3: the page waits 1.5 to 3 s before it reconnects.
    await page.goto(f"http://{server.host}:{server.port}/?room=lobby&name={name}&retry=3")
    await page.wait_for_function("window.chatEvents.includes('joined lobby')")
    return page, (await page.text_content("#worker")) or ""


async def say(page: Any, text: str) -> None:
    await page.fill("#text", text)
    await page.press("#text", "Enter")


async def shown(page: Any, text: str, css: str = "li.message") -> None:
    try:
        await page.locator(css, has_text=text).wait_for(timeout=20_000)
    except Exception:
        content = await page.locator("#messages").inner_text()
        events = await page.evaluate("window.chatEvents")
        raise AssertionError(f"{text!r} ({css}) not shown:\n{content}\nevents: {events}") from None


async def chat_in_two_browsers() -> None:
    from playwright.async_api import async_playwright

    redis = RedisServer()
    await redis.start()
    server = Served("examples.chat:app", workers=2, host="127.0.0.1")
    shots = tempfile.mkdtemp(prefix="portside-chat-")
    try:
        await server.start({"REDIS_URL": redis.url})
        async with async_playwright() as playwright:
            # Playwright starts each with --headless and a fresh user-data-dir.
            first = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=FLAGS, headless=True
            )
            second = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=FLAGS, headless=True
            )
            ann, ann_worker = await open_chat(first, server, "ann")
            # The kernel spreads connections over the workers: open pages in the
            # second browser until one reaches the other worker.
            for _ in range(30):
                bob, bob_worker = await open_chat(second, server, "bob")
                if bob_worker != ann_worker:
                    break
                await bob.close()
            assert bob_worker != ann_worker, "30 pages reached the same worker"

            # Typed in one browser, shown in the other.
            await say(ann, "hello from ann")
            await shown(bob, "hello from ann")
            await say(bob, "hi ann")
            await shown(ann, "hi ann")

            # Redis restarts: both workers reconnect; typed meanwhile, it waits
            # on ann's worker and arrives once Redis is back.
            await redis.stop()
            await server.wait_for("Redis unreachable", 2)
            await say(ann, "typed while Redis was away")
            await redis.start()
            await server.wait_for("Redis reachable again", 2)
            await shown(bob, "typed while Redis was away")
            await shown(ann, "typed while Redis was away")

            # Bob's worker dies (portside serve starts another): his page shows
            # it is reconnecting; what ann says meanwhile is recovered from
            # history once he is back.
            os.kill(int(bob_worker), signal.SIGKILL)
            await bob.wait_for_function("window.chatEvents.includes('reconnecting')")
            await bob.locator("#status.reconnecting").wait_for(timeout=5_000)
            await say(ann, "while bob was away 1")
            await say(ann, "while bob was away 2")
            await shown(ann, "while bob was away 2")
            await shown(bob, "while bob was away 1", "li.message.recovered")
            await shown(bob, "while bob was away 2", "li.message.recovered")
            await shown(bob, "missed messages recovered", "li.notice")
            await bob.locator("#status.connected").wait_for(timeout=10_000)
            await bob.screenshot(path=os.path.join(shots, "bob.png"))
            texts = await bob.locator("li.message .text").all_text_contents()
            assert texts == [
                "hello from ann",
                "hi ann",
                "typed while Redis was away",
                "while bob was away 1",
                "while bob was away 2",
            ], texts
            await first.close()
            await second.close()
    except BaseException:
        print("".join(server.lines[-30:]))
        raise
    finally:
        await server.stop()
        await redis.stop()
        redis.cleanup()
        shutil.rmtree(shots, ignore_errors=True)
