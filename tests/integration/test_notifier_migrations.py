"""The notifier's migration 003 on a database that already holds data: a rotation in its
overlap keeps signing, and every existing delivery gets its kind."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.common.db import create_pool, migrate
from services.notifier.app import MIGRATIONS
from tests.integration.helpers import migrate_before

pytestmark = pytest.mark.integration


async def test_003_moves_the_previous_secret_and_names_each_delivery_s_kind(
    database_url: str, tmp_path: Path
) -> None:
    schema = f"upgrade_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(database_url, schema)
    try:
        await migrate_before(pool, schema, MIGRATIONS, "003", tmp_path)
        endpoint, site, funder = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        until = datetime.now(UTC) + timedelta(hours=1)
        await pool.execute(
            "INSERT INTO webhook_endpoints (endpoint_id, site_id, url, secret, previous_secret, "
            "previous_secret_until) VALUES ($1, $2, 'http://x/h', 'whsec_new', 'whsec_old', $3)",
            endpoint,
            site,
            until,
        )
        await pool.execute(
            "INSERT INTO deliveries (notification_id, statement_id, site_id, endpoint_id, body, next_attempt_at) "
            "VALUES ('msg_site', $1, $2, $3, '{}', now())",
            uuid.uuid4(),
            site,
            endpoint,
        )
        await pool.execute(
            "INSERT INTO deliveries (notification_id, statement_id, funder_id, channel, window_id, body, "
            "next_attempt_at) VALUES ('msg_funder', $1, $2, 'email', 3, '{}', now())",
            uuid.uuid4(),
            funder,
        )

        assert await migrate(pool, schema, MIGRATIONS) == ["003_reversals_and_rotation.sql"]
        retired = await pool.fetch("SELECT endpoint_id, secret, valid_until FROM webhook_retired_secrets")
        assert [tuple(r) for r in retired] == [(endpoint, "whsec_old", until)]
        kinds = dict(await pool.fetch("SELECT notification_id, kind FROM deliveries"))
        assert kinds == {"msg_site": "statement", "msg_funder": "funder_statement"}
    finally:
        await pool.close()
