"""A small typed client of the four services' HTTP APIs, for the demo and the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from services.common.auth import Role, issue_token

T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.problem: dict[str, Any] = response.json() if response.content else {}
        super().__init__(
            f"{response.request.method} {response.request.url.path} → {self.status}: {self.problem}"
        )


class Api:
    """Calls one service as one principal."""

    def __init__(self, base_url: str, secret: str, role: Role, subject: str) -> None:
        token = issue_token(secret, role, subject)
        self._http = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {token}"}, timeout=30)

    def post(self, path: str, body: dict[str, Any] | None = None, *, key: str | None = None) -> Any:
        headers = {"idempotency-key": key} if key else {}
        return self._answer(self._http.post(path, json=body or {}, headers=headers))

    def get_bytes(self, path: str) -> bytes:
        response = self._http.get(path)
        if response.status_code >= 400:
            raise ApiError(response)
        return response.content

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self._answer(self._http.put(path, json=body))

    def get(self, path: str, **params: Any) -> Any:
        return self._answer(self._http.get(path, params={k: v for k, v in params.items() if v is not None}))

    def raw_post(self, path: str, body: dict[str, Any], *, key: str | None = None) -> httpx.Response:
        return self._http.post(path, json=body, headers={"idempotency-key": key} if key else {})

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError(response)
        return response.json()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, every: float = 0.1) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = probe()
        except httpx.TransportError:
            result = None  # the service is (re)starting: ask again
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
