"""A real HTTP webhook receiver on loopback that verifies Standard Webhooks signatures.

Used by the demo (to show sites being notified) and by the tests (the receiving end)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


class Server(ThreadingHTTPServer):
    # The default listen backlog (5) resets connections when a sender posts a batch at once.
    request_queue_size = 256
    daemon_threads = True


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    payload: Any
    received_at: float = 0.0  # time.time() when the request arrived


@dataclass
class WebhookReceiver:
    """Collects POSTs; `secrets` maps a path to the secret its deliveries must be signed with.
    `responses` lets a test script the status codes answered, in order, per path; `delays` the
    seconds to wait before answering, in order, per path (to provoke the sender's timeout)."""

    secrets: dict[str, str] = field(default_factory=dict)
    responses: dict[str, list[int]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    delays: dict[str, list[float]] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: senders reuse their connections

            def do_POST(self) -> None:
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = receiver._record(self.path, dict(self.headers.items()), body, arrived)
                delays = receiver.delays.get(self.path)
                if delays:
                    time.sleep(delays.pop(0))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def _record(self, path: str, headers: dict[str, str], body: bytes, arrived: float = 0.0) -> int:
        secret = self.secrets.get(path)
        verified, payload = False, None
        if secret:
            try:
                payload = Webhook(secret).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                payload = json.loads(body or b"null")
        self.received.append(Received(path, headers, body, verified, payload, arrived))
        scripted = self.responses.get(path)
        if scripted:
            return scripted.pop(0)
        return 204 if verified else 401
