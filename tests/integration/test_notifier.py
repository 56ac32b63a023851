"""The notifier on the real broker and database, against a real HTTP receiver, a real SMTP
server (aiosmtpd) and the real issuer (for a site's contact e-mail): delivered, retried with
the same webhook-id, timeouts, dead letters, disabled endpoints, secret rotation, e-mail to
sites and funders, and the delivery log."""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from schemas.envelope import Envelope
from schemas.topics import Topic, topic_name
from services.cli.processes import ServiceProcesses
from services.cli.receiver import WebhookReceiver
from services.common.auth import Role
from tests.integration.helpers import auth, eventually, read_topic, running
from tests.integration.notifier_kit import (
    CLEARING,
    SmtpInbox,
    free_port,
    funder_statement,
    publish,
    statement,
)

pytestmark = pytest.mark.integration
FINANCE = auth(Role.FINANCE, "finance")


@pytest.fixture(scope="module")
def inbox() -> Iterator[SmtpInbox]:
    box = SmtpInbox()
    box.start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[WebhookReceiver, str]]:
    r = WebhookReceiver()
    url = r.start()
    yield r, url
    r.stop()


@pytest.fixture(scope="module")
def issuer(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcesses]:
    procs = ServiceProcesses(
        tmp_path_factory.mktemp("issuer"), dict(service_env), ports={"issuer": free_port()}
    )
    procs.start("issuer")
    try:
        procs.wait_ready("issuer")
        yield procs
    finally:
        procs.stop("issuer")


@pytest.fixture(scope="module")
async def notifier(
    service_env: dict[str, str], inbox: SmtpInbox, issuer: ServiceProcesses
) -> AsyncIterator[httpx.AsyncClient]:
    env = {
        "NOTIFIER_RETRY_SCHEDULE": "[0.3, 0.3, 0.3]",
        "NOTIFIER_TIMEOUT_SECONDS": "1",
        "NOTIFIER_DISABLE_AFTER_FAILURES": "2",
        "SMTP_PORT": str(inbox.port),
        "PASSCLEAR_ISSUER_URL": issuer.url("issuer"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from services.notifier.app import app

    try:
        async with running(app) as client:
            yield client
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def clearing_topic(env: dict[str, str]) -> str:
    return topic_name(Topic.CLEARING, env["KAFKA_TOPIC_PREFIX"])


def notifier_events(env: dict[str, str]) -> list[Envelope]:
    records = read_topic(
        env["KAFKA_BOOTSTRAP_SERVERS"], topic_name(Topic.NOTIFICATIONS, env["KAFKA_TOPIC_PREFIX"])
    )
    return [e for _, _, e in records if isinstance(e, Envelope)]


async def endpoint(
    notifier: httpx.AsyncClient, receiver: WebhookReceiver, url: str, site: uuid.UUID
) -> dict[str, Any]:
    path = f"/hook-{site.hex[:8]}"
    r = await notifier.post("/webhooks", json={"url": url + path}, headers=auth(Role.SITE, str(site)))
    assert r.status_code == 201, r.text
    receiver.secrets[path] = r.json()["secret"]
    return {**r.json(), "path": path}


async def settled(notifier: httpx.AsyncClient, statement_id: uuid.UUID, n: int = 1) -> list[dict[str, Any]]:
    async def probe() -> list[dict[str, Any]] | None:
        r = await notifier.get("/deliveries", params={"statement_id": str(statement_id)}, headers=FINANCE)
        rows = r.json()
        return rows if len(rows) >= n and all(d["status"] != "pending" for d in rows) else None

    return await eventually(f"deliveries of {statement_id} to settle", probe, timeout=60)


def hits(receiver: WebhookReceiver, path: str) -> list[Any]:
    return [x for x in receiver.received if x.path == path]


async def test_a_statement_reaches_the_site_signed_and_the_verifier_rejects_tampering(
    notifier,
    receiver,
    service_env,  # type: ignore[no-untyped-def]
) -> None:
    rec, url = receiver
    site = uuid.uuid4()
    hook = await endpoint(notifier, rec, url, site)
    st = statement(site, cents=4500)
    publish(service_env["KAFKA_BOOTSTRAP_SERVERS"], clearing_topic(service_env), [st])

    (delivery,) = await settled(notifier, st.statement_id)
    assert (
        delivery["status"] == "delivered" and delivery["attempts"] == 1 and delivery["channel"] == "webhook"
    )
    (got,) = hits(rec, hook["path"])
    assert got.verified and got.headers["webhook-id"] == delivery["notification_id"]
    assert got.payload["data"]["amount_cents"] == 4500 and got.payload["data"]["passes"] == 4
    assert got.payload["data"]["expected_payout_date"] == "2026-11-15"

    verifier = Webhook(hook["secret"])
    with pytest.raises(WebhookVerificationError):
        verifier.verify(got.body.replace(b'"amount_cents":4500', b'"amount_cents":9500'), got.headers)
    stale = dict(got.headers)
    old = datetime.now(UTC) - timedelta(hours=1)
    stale["webhook-timestamp"] = str(int(old.timestamp()))
    stale["webhook-signature"] = verifier.sign(got.headers["webhook-id"], old, got.body.decode())
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(got.body, stale)

    async def delivered_event() -> list[Envelope] | None:
        events = [
            e
            for e in notifier_events(service_env)
            if e.payload.get("notification_id") == delivery["notification_id"]
        ]
        return events or None

    (event,) = await eventually("NotificationDelivered", delivered_event)
    assert event.type == "NotificationDelivered" and event.payload["attempts"] == 1


async def test_a_500_is_retried_with_the_same_webhook_id_and_a_redelivered_event_changes_nothing(
    notifier,
    receiver,
    service_env,  # type: ignore[no-untyped-def]
) -> None:
    rec, url = receiver
    site = uuid.uuid4()
    hook = await endpoint(notifier, rec, url, site)
    rec.responses[hook["path"]] = [500]
    st = statement(site)
    topic = clearing_topic(service_env)
    publish(service_env["KAFKA_BOOTSTRAP_SERVERS"], topic, [st, st])  # the same statement twice

    (delivery,) = await settled(notifier, st.statement_id)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    got = hits(rec, hook["path"])
    assert [g.headers["webhook-id"] for g in got] == [delivery["notification_id"]] * 2
    assert all(g.verified for g in got)

    r = await notifier.get(f"/deliveries/{delivery['notification_id']}", headers=auth(Role.SITE, str(site)))
    assert [a["outcome"] for a in r.json()["attempt_log"]] == ["HTTP 500", "delivered"]


async def test_a_timeout_counts_as_a_failed_attempt_and_is_retried(notifier, receiver, service_env) -> None:  # type: ignore[no-untyped-def]
    rec, url = receiver
    site = uuid.uuid4()
    hook = await endpoint(notifier, rec, url, site)
    rec.delays[hook["path"]] = [2.5]  # longer than NOTIFIER_TIMEOUT_SECONDS=1
    st = statement(site)
    publish(service_env["KAFKA_BOOTSTRAP_SERVERS"], clearing_topic(service_env), [st])

    (delivery,) = await settled(notifier, st.statement_id)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    r = await notifier.get(f"/deliveries/{delivery['notification_id']}", headers=FINANCE)
    first, second = r.json()["attempt_log"]
    assert "Timeout" in first["outcome"] and second["outcome"] == "delivered"


async def test_permanent_failure_dead_letters_and_a_failing_endpoint_is_disabled(
    notifier,
    receiver,
    service_env,  # type: ignore[no-untyped-def]
) -> None:
    rec, url = receiver
    site = uuid.uuid4()
    hook = await endpoint(notifier, rec, url, site)
    rec.responses[hook["path"]] = [500] * 8  # two statements x (1 + 3 retries)
    statements = [statement(site, window_id=w) for w in (1, 2)]
    bootstrap, topic = service_env["KAFKA_BOOTSTRAP_SERVERS"], clearing_topic(service_env)
    for st in statements:  # one after the other: the second failure disables the endpoint
        publish(bootstrap, topic, [st])
        (delivery,) = await settled(notifier, st.statement_id)
        assert delivery["status"] == "failed" and delivery["attempts"] == 4
        assert delivery["last_error"] == "HTTP 500"

    dead = (await notifier.get("/dead-letters", headers=FINANCE)).json()
    assert {d["statement_id"] for d in dead} >= {str(s.statement_id) for s in statements}
    (ep,) = (await notifier.get("/webhooks", headers=auth(Role.SITE, str(site)))).json()
    assert ep["disabled_at"] is not None and "2 notifications in a row failed" in ep["disabled_reason"]
    assert "secret" not in ep

    async def failed_events() -> list[Envelope] | None:
        ids = {str(s.statement_id) for s in statements}
        found = [e for e in notifier_events(service_env) if e.payload.get("statement_id") in ids]
        return found if len(found) == 2 else None

    events = await eventually("two NotificationFailed", failed_events)
    assert {e.type for e in events} == {"NotificationFailed"}
    assert {e.payload["attempts"] for e in events} == {4}
    assert len(hits(rec, hook["path"])) == 8


async def test_during_a_rotation_both_secrets_sign(notifier, receiver, service_env) -> None:  # type: ignore[no-untyped-def]
    rec, url = receiver
    site = uuid.uuid4()
    hook = await endpoint(notifier, rec, url, site)
    rotated = await notifier.post(
        f"/webhooks/{hook['endpoint_id']}/rotate-secret",
        json={"overlap_seconds": 3600},
        headers=auth(Role.SITE, str(site)),
    )
    assert rotated.status_code == 200 and rotated.json()["secret"] != hook["secret"]
    other = await notifier.post(
        f"/webhooks/{hook['endpoint_id']}/rotate-secret", json={}, headers=auth(Role.SITE, str(uuid.uuid4()))
    )
    assert other.status_code == 404 and other.json()["type"].endswith("unknown-endpoint")

    st = statement(site)
    publish(service_env["KAFKA_BOOTSTRAP_SERVERS"], clearing_topic(service_env), [st])
    await settled(notifier, st.statement_id)
    (got,) = hits(rec, hook["path"])
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (hook["secret"], rotated.json()["secret"]):
        Webhook(secret).verify(got.body, got.headers)


async def test_e_mail_to_a_registered_address_and_else_to_the_registry_contact(
    notifier,
    inbox,
    issuer,
    service_env,  # type: ignore[no-untyped-def]
) -> None:
    registered = uuid.uuid4()
    r = await notifier.post(
        "/emails", json={"address": "compta@epn-dole.fr"}, headers=auth(Role.SITE, str(registered))
    )
    assert r.status_code == 201
    bad = await notifier.post(
        "/emails", json={"address": "not an address"}, headers=auth(Role.SITE, str(registered))
    )
    assert bad.status_code == 422 and bad.json()["type"].endswith("invalid-request")

    async with httpx.AsyncClient(base_url=issuer.url("issuer")) as api:
        created = await api.post(
            "/sites",
            json={
                "name": "EPN de Lons",
                "siret": "73282932000074",
                "iban": "FR7630004000030001234567897",
                "bic": "BNPAFRPP",
                "contact_email": "contact@epn-lons.fr",
            },
            headers=FINANCE,
        )
    assert created.status_code == 201, created.text
    from_registry = uuid.UUID(created.json()["site_id"])

    sts = [statement(registered, cents=12000), statement(from_registry, cents=2000)]
    publish(service_env["KAFKA_BOOTSTRAP_SERVERS"], clearing_topic(service_env), sts)
    for st in sts:
        (d,) = await settled(notifier, st.statement_id)
        assert d["status"] == "delivered" and d["channel"] == "email"

    (mail,) = inbox.to("compta@epn-dole.fr")
    assert "120,00 €" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Montant à vous verser : 120,00 €" in text and "15/11/2026" in text
    assert "<table>" in html and "120,00 €" in html
    (fallback,) = inbox.to("contact@epn-lons.fr")
    assert "20,00 €" in fallback["Subject"]


async def test_a_funder_gets_its_call_for_funds_once_with_csv_and_pdf(notifier, inbox, service_env) -> None:  # type: ignore[no-untyped-def]
    funder, other = uuid.uuid4(), uuid.uuid4()
    r = await notifier.put(
        f"/funders/{funder}/finance-contact", json={"address": "appels@region-bfc.fr"}, headers=FINANCE
    )
    assert r.status_code == 200
    forbidden = await notifier.put(
        f"/funders/{funder}/finance-contact",
        json={"address": "x@y.fr"},
        headers=auth(Role.SITE, str(uuid.uuid4())),
    )
    assert forbidden.status_code == 403

    window = 42
    sts = [statement(uuid.uuid4(), window_id=window, cents=c, funders=(funder, other)) for c in (1000, 3001)]
    mine = [st.funder_amounts[0].amount_cents for st in sts]
    fs = funder_statement(funder, window, mine)
    bootstrap, topic = service_env["KAFKA_BOOTSTRAP_SERVERS"], clearing_topic(service_env)
    # The call for funds first, and twice: the e-mail waits for its lines and goes once.
    publish(bootstrap, topic, [fs, fs], key=str(funder))
    publish(bootstrap, topic, sts)

    (d,) = await settled(notifier, fs.funder_statement_id)
    assert d["status"] == "delivered" and d["funder_id"] == str(funder)
    (mail,) = inbox.to("appels@region-bfc.fr")
    attachments = {a.get_filename(): a for a in mail.iter_attachments()}  # type: ignore[attr-defined]
    csv_part = next(a for name, a in attachments.items() if name.endswith(".csv"))
    rows = list(
        csv.reader(
            io.StringIO(
                csv_part.get_content()
                if isinstance(csv_part.get_content(), str)
                else csv_part.get_content().decode()
            ),
            delimiter=";",
        )
    )
    assert rows[-1][2:] == ["TOTAL", "", str(sum(mine))] == ["TOTAL", "", str(fs.amount_cents)]
    assert len(rows) == 2 + len(sts)
    pdf = next(a for name, a in attachments.items() if name.endswith(".pdf")).get_content()
    assert pdf.startswith(b"%PDF")

    async def funder_event() -> list[Envelope] | None:
        found = [
            e
            for e in notifier_events(service_env)
            if e.payload.get("funder_statement_id") == str(fs.funder_statement_id)
        ]
        return found or None

    (event,) = await eventually("FunderNotificationDelivered", funder_event)
    assert event.type == "FunderNotificationDelivered"


async def test_the_delivery_log_shows_a_site_only_its_own(notifier, receiver, service_env) -> None:  # type: ignore[no-untyped-def]
    rec, url = receiver
    mine, theirs = uuid.uuid4(), uuid.uuid4()
    for site in (mine, theirs):
        await endpoint(notifier, rec, url, site)
    sts = [statement(mine), statement(theirs)]
    publish(service_env["KAFKA_BOOTSTRAP_SERVERS"], clearing_topic(service_env), sts)
    (other,) = await settled(notifier, sts[1].statement_id)
    await settled(notifier, sts[0].statement_id)

    seen = (await notifier.get("/deliveries", headers=auth(Role.SITE, str(mine)))).json()
    assert {d["site_id"] for d in seen} == {str(mine)}
    hidden = await notifier.get(f"/deliveries/{other['notification_id']}", headers=auth(Role.SITE, str(mine)))
    assert hidden.status_code == 404 and hidden.json()["type"].endswith("unknown-notification")
    everything = (await notifier.get("/deliveries", headers=FINANCE)).json()
    assert {str(mine), str(theirs)} <= {d["site_id"] for d in everything}
    assert (await notifier.get("/dead-letters", headers=auth(Role.SITE, str(mine)))).status_code == 403


async def test_a_poison_message_amid_a_batch_is_dead_lettered_and_the_rest_applied(
    notifier,
    receiver,
    service_env,  # type: ignore[no-untyped-def]
) -> None:
    from kafka import KafkaProducer

    rec, url = receiver
    site = uuid.uuid4()
    await endpoint(notifier, rec, url, site)
    before, after = statement(site, window_id=7), statement(site, window_id=8)
    bootstrap, topic = service_env["KAFKA_BOOTSTRAP_SERVERS"], clearing_topic(service_env)
    key = str(site).encode()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value in (
        CLEARING.envelope(before, key=str(site)).to_bytes(),
        b'{"not": "an envelope"}',
        CLEARING.envelope(after, key=str(site)).to_bytes(),
    ):
        producer.send(topic, key=key, value=value)  # one key: one partition, in this order
    producer.flush(30)
    producer.close(5)

    for st in (before, after):
        (d,) = await settled(notifier, st.statement_id)
        assert d["status"] == "delivered"

    async def dead_lettered() -> list[Envelope] | None:
        records = read_topic(bootstrap, topic_name(Topic.DEAD_LETTERS, service_env["KAFKA_TOPIC_PREFIX"]))
        found = [e for _, _, e in records if isinstance(e, Envelope) and "not" in e.payload.get("raw", "")]
        return found or None

    (dead,) = await eventually("the poison message on the dead-letter topic", dead_lettered)
    assert dead.payload["consumer"] == "notifier-statements"


async def test_a_call_for_funds_without_a_finance_contact_ends_failed_and_dead_lettered(
    notifier,
    service_env,  # type: ignore[no-untyped-def]
) -> None:
    funder = uuid.uuid4()
    fs = funder_statement(funder, 9, [])
    publish(service_env["KAFKA_BOOTSTRAP_SERVERS"], clearing_topic(service_env), [fs], key=str(funder))

    (d,) = await settled(notifier, fs.funder_statement_id)
    assert d["status"] == "failed" and d["attempts"] == 4
    assert d["last_error"] == f"no finance contact registered for funder {funder}"
    dead = (await notifier.get("/dead-letters", headers=FINANCE)).json()
    assert d["notification_id"] in {x["notification_id"] for x in dead}

    async def failed_event() -> list[Envelope] | None:
        found = [
            e
            for e in notifier_events(service_env)
            if e.payload.get("funder_statement_id") == str(fs.funder_statement_id)
        ]
        return found or None

    (event,) = await eventually("FunderNotificationFailed", failed_event)
    assert event.type == "FunderNotificationFailed" and event.payload["reason"] == d["last_error"]
