"""A real browser, headless Chromium, as a client of portside.

Skipped, with the reason, when Chromium is not installed (``.ci/run`` installs
it from Debian's packages when it can).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import os
import pathlib
import shutil
import signal
import tempfile

import portside
from tests.asyncio.helpers import running
from tests.needs import needs

PAGE = pathlib.Path(__file__).with_name("browser_page.html").read_bytes()
CHROMIUM = next(
    (
        path
        for name in ("chromium", "chromium-browser", "google-chrome")
        if (path := shutil.which(name))
    ),
    None,
)

pytestmark = needs(CHROMIUM, "needs Chromium (apt install chromium)")


async def test_browser_exchanges_messages_with_compression() -> None:
    assert CHROMIUM is not None
    verdict: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def page(
        connection: portside.ServerConnection, request: portside.Request
    ) -> portside.Response | None:
        if request.path != "/page":
            return None
        headers = portside.Headers({"Content-Type": "text/html; charset=utf-8"})
        headers["Content-Length"] = str(len(PAGE))
        return portside.Response(http.HTTPStatus.OK, "OK", headers, PAGE)

    async def echo_until_verdict(ws: portside.ServerConnection) -> None:
        async for message in ws:
            if isinstance(message, str) and message.startswith("RESULT:"):
                verdict.set_result(message[len("RESULT:") :])
                return
            await ws.send(message)

    async with running(echo_until_verdict, process_request=page) as server:
        port = server.sockets[0].getsockname()[1]
        # Chromium's helper processes may still be writing to the profile for a
        # moment after they are killed: cleanup errors are not the test's business.
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
            browser = await asyncio.create_subprocess_exec(
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"http://127.0.0.1:{port}/page",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                # Its temporary files go in the profile, removed with it: killed,
                # Chromium cannot remove them itself.
                env={**os.environ, "TMPDIR": profile},
                start_new_session=True,  # its own process group, killed whole
            )
            try:
                result = await asyncio.wait_for(verdict, 20)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(browser.pid, signal.SIGKILL)
                await browser.wait()
    assert result.startswith("ok"), result
    assert "permessage-deflate" in result
