"""Who is calling: bearer tokens (HS256 JWT) carrying a role and the subject it acts for.

A site's token names its site id, a funder's its funder id, a prescriber's its prescriber id:
routes take the subject from the credentials, never from the body.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from fastapi import Request

from services.common.problems import Problem
from services.common.roles import Role

__all__ = ["Principal", "Role", "authenticate", "issue_token", "read_token", "require"]


@dataclass(frozen=True)
class Principal:
    role: Role
    subject: str

    @property
    def label(self) -> str:
        return f"{self.role}:{self.subject}"


def issue_token(secret: str, role: Role, subject: str, *, ttl: timedelta = timedelta(days=365)) -> str:
    now = datetime.now(UTC)
    return jwt.encode({"role": role.value, "sub": subject, "iat": now, "exp": now + ttl}, secret, "HS256")


def read_token(secret: str, token: str) -> Principal:
    role, subject, expires = _verified_claims(secret, token)
    if time.time() >= expires:
        raise Problem(401, "unauthenticated", "Invalid credentials", "the token has expired")
    return Principal(role, subject)


@lru_cache(maxsize=8192)
def _verified_claims(secret: str, token: str) -> tuple[Role, str, float]:
    """Signature check, cached per token: a site sends the same token with every redemption, and
    HMAC verification was a tenth of the hot path. Expiry is checked on every call by the caller;
    an invalid token raises, and exceptions are never cached."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"require": ["exp", "sub"]})
        return Role(claims["role"]), str(claims["sub"]), float(claims["exp"])
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise Problem(401, "unauthenticated", "Invalid credentials", str(exc)) from exc


def authenticate(secret: str, authorization: str, roles: tuple[Role, ...]) -> Principal:
    """The principal an `Authorization: Bearer` header names, admitted only in `roles`."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "unauthenticated", "Credentials required", "send Authorization: Bearer <token>")
    principal = read_token(secret, token)
    if principal.role not in roles:
        allowed = ", ".join(r.value for r in roles)
        raise Problem(403, "forbidden", "Not allowed for this role", f"this route is for: {allowed}")
    return principal


def require(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency admitting only the given roles."""

    async def dependency(request: Request) -> Principal:
        return authenticate(request.app.state.auth_secret, request.headers.get("authorization", ""), roles)

    return dependency
