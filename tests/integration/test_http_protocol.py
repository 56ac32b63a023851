"""The services' HTTP protocol (uvicorn's httptools, one write per response), served by a real
uvicorn over loopback TCP: every response arrives whole and in order, keep-alive, pipelined,
streamed or closed, and each plain response leaves the server as a single write."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from services.common.http_protocol import OneWriteHttpToolsProtocol

BODY = b'{"redemption_id":"5c1e8f8e-4d1a-4b62-9b43-1b1a2b3c4d5e","window_id":1}'
writes: list[bytes] = []


class _CountingTransport:
    """The connection's real transport, with each write it is given recorded."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class RecordingProtocol(OneWriteHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CountingTransport(transport))  # type: ignore[arg-type]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    if scope["path"] == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = BODY + scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=free, http=RecordingProtocol, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield free
    server.should_exit = True
    thread.join(10)


def request(path: str, *, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + connection + b"\r\n"


def read_response(conn: socket.socket, buffer: bytearray) -> bytes:
    """One whole response with a Content-Length, from `buffer` and then the socket."""
    while b"\r\n\r\n" not in buffer:
        buffer += conn.recv(65536)
    head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    total = len(head) + 4 + length
    while len(buffer) < total:
        buffer += conn.recv(65536)
    response = bytes(buffer[:total])
    del buffer[:total]
    return response


def body_of(response: bytes) -> bytes:
    return response.partition(b"\r\n\r\n")[2]


def test_keep_alive_responses_arrive_whole_each_in_one_write(port: int) -> None:
    writes.clear()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        buffer = bytearray()
        responses = []
        for n in range(5):
            conn.sendall(request(f"/r{n}"))
            responses.append(read_response(conn, buffer))
    assert [body_of(r) for r in responses] == [BODY + f"/r{n}".encode() for n in range(5)]
    assert all(r.startswith(b"HTTP/1.1 201 Created\r\n") for r in responses)
    # Each response left the server as one write: its status line, headers and body together.
    assert writes == responses


def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    writes.clear()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"".join(request(f"/p{n}") for n in range(4)))
        buffer = bytearray()
        responses = [read_response(conn, buffer) for _ in range(4)]
    assert [body_of(r) for r in responses] == [BODY + f"/p{n}".encode() for n in range(4)]
    assert b"".join(writes) == b"".join(responses)


def test_connection_close_sends_the_whole_response_before_closing(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(request("/last", close=True))
        received = bytearray()
        while chunk := conn.recv(65536):
            received += chunk
    assert body_of(bytes(received)) == BODY + b"/last"
    assert b"connection: close" in bytes(received).lower()


def test_a_streamed_response_goes_out_part_by_part_in_order(port: int) -> None:
    writes.clear()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(request("/stream", close=True))
        received = bytearray()
        while chunk := conn.recv(65536):
            received += chunk
    head, _, chunked = bytes(received).partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert chunked == b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
    # The parts were sent as they came (a turn of the loop apart), not held for the end.
    assert len(writes) >= 3
