"""A real HTTP server that sends its headers at once, then the body one byte at a time.

A peer as slow as this never lets a read timeout fire (each byte arrives within
it); only a minimum rate or a per-request limit ends the transfer. It answers no
provider's text: it is a valid HTTP/1.1 response (a Content-Length body, RFC 9112
section 6.3, which sets no pace for the body), sent at the pace the attack needs.
httpx's read timeout bounds each wait for a chunk, not the transfer (httpx docs,
"Timeouts": https://www.python-httpx.org/advanced/timeouts/), which is why
voipctl adds its own limits (docs/install.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def trickling_server(size: int, interval_s: float) -> Iterator[str]:
    """The server's base URL while it runs: `size` bytes, one every `interval_s`."""

    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            try:
                for _ in range(size):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(interval_s)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
