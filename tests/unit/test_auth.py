from datetime import timedelta

import pytest

from services.common.auth import Role, issue_token, read_token
from services.common.problems import Problem

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def test_a_token_names_its_role_and_subject() -> None:
    principal = read_token(SECRET, issue_token(SECRET, Role.SITE, "site-1"))
    assert (principal.role, principal.subject) == (Role.SITE, "site-1")


def test_expired_forged_and_foreign_tokens_are_refused() -> None:
    expired = issue_token(SECRET, Role.SITE, "s", ttl=timedelta(seconds=-1))
    forged = issue_token("another-secret-0123456789abcdef0123456789", Role.FINANCE, "me")
    for token in (expired, forged, "not-a-jwt"):
        with pytest.raises(Problem) as exc:
            read_token(SECRET, token)
        assert exc.value.status == 401
