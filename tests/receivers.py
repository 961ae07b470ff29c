"""Real HTTP receivers on 127.0.0.1 for what pilothouse sends out (webhooks, alert
channels): each records the headers and body of every POST it gets and answers a chosen
status (and, for redirect tests, a Location), over plain HTTP or TLS."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any


class Receiver:
    """A webhook receiver on 127.0.0.1 that records what it gets."""

    def __init__(
        self,
        status: int = 200,
        location: str | None = None,
        tls: tuple[Path, Path] | None = None,
        port: int = 0,
    ) -> None:
        self.received: list[tuple[Any, bytes]] = []  # (case-insensitive headers, body)
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((self.headers, body))
                self.send_response(receiver.status)
                if location:
                    self.send_header("Location", location)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        HTTPServer.allow_reuse_address = True
        self.server = HTTPServer(("127.0.0.1", port), Handler)
        scheme = "http"
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
