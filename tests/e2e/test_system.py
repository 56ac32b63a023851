"""The whole system as separate processes on the real broker and database.

The thin flow asserts the statement to the cent and the webhook's signature; the main job runs
the realistic programme; a SIGKILL of the clearing worker mid-stream changes nothing."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from schemas.topics import Topic
from services.auditor.kafka_log import read_log
from services.auditor.replay import replay
from services.cli.client import Api, wait_for
from services.cli.demo import MainJob
from services.cli.processes import ServiceProcesses
from services.cli.receiver import WebhookReceiver
from services.common.auth import Role
from services.common.settings import DEV_SECRET
from tests.e2e.system import SERVICES, api, running_system
from tests.integration.flows import programme_body

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def system(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcesses]:
    # The outboxes as in production: pruned as soon as published (the tests' default keeps an hour).
    env = {
        **service_env,
        "NOTIFIER_RETRY_SCHEDULE": "[0.2, 0.5, 1]",
        "PASSCLEAR_OUTBOX_RETENTION_SECONDS": "0",
    }
    with running_system(tmp_path_factory.mktemp("services"), env) as procs:
        yield procs


def test_thin_flow_one_redemption_through_all_four_services(system: ServiceProcesses, service_env) -> None:  # type: ignore[no-untyped-def]
    issuer = api(system, "issuer")
    region, state, enedis = (
        issuer.post("/funders", {"name": n, "kind": k})["funder_id"]
        for n, k in (("Région BFC", "region"), ("ANCT", "state"), ("Enedis", "enedis"))
    )
    terms = programme_body([region, state, enedis], [5000, 3000, 2000])
    programme = issuer.post("/programmes", terms)["programme_id"]
    site_id = issuer.post(
        "/sites",
        {
            "name": "EPN de Dole",
            "siret": "73282932000074",
            "iban": "FR7630004000030001234567897",
            "bic": "BNPAFRPP",
            "contact_email": "epn@example.org",
        },
    )["site_id"]
    issuer.post(f"/sites/{site_id}/qualifications", {"programme_id": programme})
    order = issuer.post("/orders", {"programme_id": programme, "booklets": 1})
    assert [d["amount_cents"] for d in order["dues"]] == [2500, 1500, 1000]
    for due in order["dues"]:
        Api(system.url("issuer"), DEV_SECRET, Role.FUNDER, due["funder_id"]).post(
            f"/orders/{order['order_id']}/payments",
            {"amount_cents": due["amount_cents"], "bank_reference": "VIR-1"},
        )
    code = issuer.get(f"/orders/{order['order_id']}")["booklets"][0]["passes"][0]["code"]

    receiver = WebhookReceiver()
    url = receiver.start()
    try:
        hook = api(system, "notifier", Role.SITE, site_id).post("/webhooks", {"url": f"{url}/hook"})
        receiver.secrets["/hook"] = hook["secret"]
        site = api(system, "redemption", Role.SITE, site_id)
        body = {
            "code": code,
            "learning_path": "basic-skills",
            "workshop_date": "2026-11-20",
            "duration_minutes": 120,
        }
        accepted = wait_for("the pass to reach redemption", lambda: _try(site, body), timeout=60)
        assert accepted["amount_cents"] == 1000
        closed = api(system, "redemption").post("/windows/current/close")

        clearing = api(system, "clearing", Role.SITE, site_id)
        (statement,) = wait_for(
            "the statement", lambda: clearing.get("/statements", window_id=closed["closed_window_id"])
        )
        assert statement["total_cents"] == 1000 and statement["redemptions"] == 1
        assert [(f["funder_id"], f["amount_cents"]) for f in statement["funder_amounts"]] == [
            (region, 500),
            (state, 300),
            (enedis, 200),
        ]
        funders = wait_for(
            "the funder statements", lambda: api(system, "clearing").get("/funder-statements") or None
        )
        assert sorted(f["amount_cents"] for f in funders) == [200, 300, 500]

        delivered = wait_for("the signed webhook", lambda: receiver.received[:1])[0]
    finally:
        receiver.stop()
    assert delivered.verified
    assert delivered.payload["data"]["statement_id"] == statement["statement_id"]
    assert delivered.payload["data"]["amount_cents"] == 1000
    verifier = Webhook(hook["secret"])
    tampered = delivered.body.replace(b'"amount_cents":1000', b'"amount_cents":9000')
    with pytest.raises(WebhookVerificationError):
        verifier.verify(tampered, delivered.headers)
    stale = dict(delivered.headers)
    old = datetime.now(UTC) - timedelta(hours=1)
    stale["webhook-timestamp"] = str(int(old.timestamp()))
    stale["webhook-signature"] = verifier.sign(delivered.headers["webhook-id"], old, delivered.body.decode())
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(delivered.body, stale)

    report = replay(
        read_log(
            service_env["KAFKA_BOOTSTRAP_SERVERS"],
            service_env["KAFKA_TOPIC_PREFIX"],
            [Topic.REDEMPTIONS, Topic.CLEARING],
        )
    )
    assert report.ok, report.as_json()
    assert report.total_cleared_cents == 1000


def _try(site: Api, body: dict[str, object]) -> dict[str, object] | None:
    r = site.raw_post("/redemptions", body)
    return r.json() if r.status_code == 201 else None


def test_the_main_job_reconciles_and_a_killed_clearing_worker_changes_nothing(
    system: ServiceProcesses,
    service_env,  # type: ignore[no-untyped-def]
) -> None:
    steps: list[str] = []
    job = MainJob(
        urls={n: system.url(n) for n in system.ports},
        secret=DEV_SECRET,
        bootstrap=service_env["KAFKA_BOOTSTRAP_SERVERS"],
        topic_prefix=service_env["KAFKA_TOPIC_PREFIX"],
        step=steps.append,
    )
    killed = {"done": False}
    original = job.redeem

    def redeem_and_kill_midway(site, code, path, **kw):  # type: ignore[no-untyped-def]
        answer = original(site, code, path, **kw)
        if len(job.out.accepted) == 120 and not killed["done"]:
            # SIGKILL mid-stream: the worker dies with batches in flight and offsets uncommitted,
            # and comes back while redemptions keep flowing.
            system.kill("clearing", signal.SIGKILL)
            system.start("clearing")
            killed["done"] = True
        return answer

    job.redeem = redeem_and_kill_midway  # type: ignore[method-assign]
    outcome = job.run()
    assert killed["done"]
    statements = {(s["site_id"], s["window_id"]): s["total_cents"] for s in outcome.statements}
    assert statements == outcome.expected_by_site_window
    assert outcome.audit is not None and outcome.audit.ok, outcome.audit.as_json()
    assert outcome.webhooks_verified == len(outcome.statements)
    late = [rid for rid, w in outcome.reversed.items() if outcome.accepted[rid]["window_id"] < w]
    assert late and outcome.reversal_webhooks_verified == len(late)
    assert any("refused as expected — mistyped code: 422" in s for s in steps)
    # Each relay pruned what it published (retention 0): no outbox keeps a published row for long.
    assert asyncio.run(_published_rows_older_than(service_env["DATABASE_URL"], seconds=5)) == {
        name: 0 for name in SERVICES
    }


async def _published_rows_older_than(database_url: str, *, seconds: float) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        return {
            name: await conn.fetchval(
                f"SELECT count(*) FROM {name}.outbox o WHERE created_at < now() - make_interval(secs => $1) "
                f"AND NOT EXISTS (SELECT 1 FROM {name}.outbox_pending p WHERE p.seq = o.seq)",
                seconds,
            )
            for name in SERVICES
        }
    finally:
        await conn.close()
