"""The notifier on the real broker and database, against a real HTTP receiver, a real SMTP
server (aiosmtpd) and the real issuer (for a site's contact e-mail): delivered, retried with
the same webhook-id, timeouts, dead letters, disabled endpoints, secret rotation, e-mail to
sites and funders, and the delivery log."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from schemas.envelope import Envelope
from schemas.events import FunderShare, FunderStatementIssued
from schemas.topics import Topic
from services.cli.mailbox import Mailbox
from services.cli.processes import ServiceProcesses
from services.cli.receiver import WebhookReceiver
from services.common.auth import Role
from tests.integration.helpers import auth, eventually, running
from tests.integration.notifier_kit import (
    CLEARING,
    REDEMPTION,
    Log,
    as_redemption_events,
    free_port,
    funder_statement,
    redeemed,
    reversed_in,
    statement,
)

pytestmark = pytest.mark.integration
FINANCE = auth(Role.FINANCE, "finance")


@pytest.fixture(scope="module")
def inbox() -> Iterator[Mailbox]:
    box = Mailbox()
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
    """The issuer (sites' contact e-mails) and clearing (statement PDFs), as real processes."""
    procs = ServiceProcesses(
        tmp_path_factory.mktemp("services"),
        dict(service_env),
        ports={"issuer": free_port(), "clearing": free_port()},
    )
    procs.start_all()
    try:
        procs.wait_all_ready()
        yield procs
    finally:
        procs.stop_all()


@pytest.fixture(scope="module")
async def notifier(
    service_env: dict[str, str], inbox: Mailbox, issuer: ServiceProcesses
) -> AsyncIterator[httpx.AsyncClient]:
    env = {
        "NOTIFIER_RETRY_SCHEDULE": "[0.3, 0.3, 0.3]",
        "NOTIFIER_TIMEOUT_SECONDS": "1",
        "NOTIFIER_DISABLE_AFTER_FAILURES": "2",
        "SMTP_PORT": str(inbox.port),
        "PASSCLEAR_ISSUER_URL": issuer.url("issuer"),
        "PASSCLEAR_CLEARING_URL": issuer.url("clearing"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        from services.notifier.app import app

        async with running(app) as client:
            yield client


@pytest.fixture(scope="module")
def log(service_env: dict[str, str]) -> Log:
    return Log(service_env)


async def endpoint(
    notifier: httpx.AsyncClient, receiver: tuple[WebhookReceiver, str], site: uuid.UUID | None = None
) -> dict[str, Any]:
    """A webhook endpoint of `site` (a new one unless given) on the receiver, which verifies
    what it gets with the endpoint's secret."""
    rec, url = receiver
    site = site or uuid.uuid4()
    path = f"/hook-{site.hex[:8]}"
    r = await notifier.post("/webhooks", json={"url": url + path}, headers=auth(Role.SITE, str(site)))
    assert r.status_code == 201, r.text
    rec.secrets[path] = r.json()["secret"]
    return {**r.json(), "path": path, "site": site}


async def email_channel(notifier: httpx.AsyncClient, site: uuid.UUID, address: str) -> None:
    r = await notifier.post("/emails", json={"address": address}, headers=auth(Role.SITE, str(site)))
    assert r.status_code == 201, r.text


async def finance_contact(notifier: httpx.AsyncClient, funder: uuid.UUID, address: str) -> None:
    r = await notifier.put(f"/funders/{funder}/finance-contact", json={"address": address}, headers=FINANCE)
    assert r.status_code == 200, r.text


async def settled(
    notifier: httpx.AsyncClient, about: uuid.UUID | None = None, n: int = 1, **params: str
) -> list[dict[str, Any]]:
    """The deliveries about a statement (or matching `params`), once `n` of them are no longer
    pending."""
    if about is not None:
        params["statement_id"] = str(about)

    async def probe() -> list[dict[str, Any]] | None:
        rows = (await notifier.get("/deliveries", params=params, headers=FINANCE)).json()
        return rows if len(rows) >= n and all(d["status"] != "pending" for d in rows) else None

    return await eventually(f"{n} deliveries {params} to settle", probe, timeout=60)


async def processed(pg: asyncpg.Connection, consumer: str, event: Envelope) -> None:
    async def probe() -> bool:
        return bool(
            await pg.fetchval(
                "SELECT true FROM notifier.processed_events WHERE consumer = $1 AND event_id = $2",
                consumer,
                event.event_id,
            )
        )

    await eventually(f"{consumer} to apply {event.type} {event.event_id}", probe)


def hits(receiver: tuple[WebhookReceiver, str], path: str) -> list[Any]:
    return [x for x in receiver[0].received if x.path == path]


async def test_a_statement_reaches_the_site_signed_and_the_verifier_rejects_tampering(
    notifier, receiver, log
) -> None:  # type: ignore[no-untyped-def]
    hook = await endpoint(notifier, receiver)
    st = statement(hook["site"], cents=4500)
    log.clearing([st])

    (delivery,) = await settled(notifier, st.statement_id)
    assert (
        delivery["status"] == "delivered" and delivery["attempts"] == 1 and delivery["channel"] == "webhook"
    )
    (got,) = hits(receiver, hook["path"])
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

    (event,) = await log.outcomes("NotificationDelivered", "notification_id", {delivery["notification_id"]})
    assert event.type == "NotificationDelivered" and event.payload["attempts"] == 1


async def test_a_500_is_retried_with_the_same_webhook_id_and_a_redelivered_event_changes_nothing(
    notifier, receiver, log
) -> None:  # type: ignore[no-untyped-def]
    hook = await endpoint(notifier, receiver)
    receiver[0].responses[hook["path"]] = [500]
    st = statement(hook["site"])
    log.clearing([st, st])  # the same statement twice

    (delivery,) = await settled(notifier, st.statement_id)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    got = hits(receiver, hook["path"])
    assert [g.headers["webhook-id"] for g in got] == [delivery["notification_id"]] * 2
    assert all(g.verified for g in got)

    r = await notifier.get(
        f"/deliveries/{delivery['notification_id']}", headers=auth(Role.SITE, str(hook["site"]))
    )
    assert [a["outcome"] for a in r.json()["attempt_log"]] == ["HTTP 500", "delivered"]


async def test_a_timeout_counts_as_a_failed_attempt_and_is_retried(notifier, receiver, log) -> None:  # type: ignore[no-untyped-def]
    hook = await endpoint(notifier, receiver)
    receiver[0].delays[hook["path"]] = [2.5]  # longer than NOTIFIER_TIMEOUT_SECONDS=1
    st = statement(hook["site"])
    log.clearing([st])

    (delivery,) = await settled(notifier, st.statement_id)
    assert delivery["status"] == "delivered" and delivery["attempts"] == 2
    r = await notifier.get(f"/deliveries/{delivery['notification_id']}", headers=FINANCE)
    first, second = r.json()["attempt_log"]
    assert "Timeout" in first["outcome"] and second["outcome"] == "delivered"


async def test_permanent_failure_dead_letters_and_a_failing_endpoint_is_disabled(
    notifier, receiver, log
) -> None:  # type: ignore[no-untyped-def]
    hook = await endpoint(notifier, receiver)
    receiver[0].responses[hook["path"]] = [500] * 8  # two statements x (1 + 3 retries)
    statements = [statement(hook["site"], window_id=w) for w in (1, 2)]
    for st in statements:  # one after the other: the second failure disables the endpoint
        log.clearing([st])
        (delivery,) = await settled(notifier, st.statement_id)
        assert delivery["status"] == "failed" and delivery["attempts"] == 4
        assert delivery["last_error"] == "HTTP 500"

    dead = (await notifier.get("/dead-letters", headers=FINANCE)).json()
    assert {d["statement_id"] for d in dead} >= {str(s.statement_id) for s in statements}
    (ep,) = (await notifier.get("/webhooks", headers=auth(Role.SITE, str(hook["site"])))).json()
    assert ep["disabled_at"] is not None and "2 notifications in a row failed" in ep["disabled_reason"]
    assert "secret" not in ep

    events = await log.outcomes(
        "two NotificationFailed", "statement_id", {str(s.statement_id) for s in statements}, n=2
    )
    assert len(events) == 2 and {e.type for e in events} == {"NotificationFailed"}
    assert {e.payload["attempts"] for e in events} == {4}
    assert len(hits(receiver, hook["path"])) == 8


async def test_during_a_rotation_both_secrets_sign(notifier, receiver, log) -> None:  # type: ignore[no-untyped-def]
    hook = await endpoint(notifier, receiver)
    rotated = await notifier.post(
        f"/webhooks/{hook['endpoint_id']}/rotate-secret",
        json={"overlap_seconds": 3600},
        headers=auth(Role.SITE, str(hook["site"])),
    )
    assert rotated.status_code == 200 and rotated.json()["secret"] != hook["secret"]
    other = await notifier.post(
        f"/webhooks/{hook['endpoint_id']}/rotate-secret", json={}, headers=auth(Role.SITE, str(uuid.uuid4()))
    )
    assert other.status_code == 404 and other.json()["type"].endswith("unknown-endpoint")

    st = statement(hook["site"])
    log.clearing([st])
    await settled(notifier, st.statement_id)
    (got,) = hits(receiver, hook["path"])
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    for secret in (hook["secret"], rotated.json()["secret"]):
        Webhook(secret).verify(got.body, got.headers)


async def test_e_mail_to_a_registered_address_and_else_to_the_registry_contact(
    notifier, inbox, issuer, log
) -> None:  # type: ignore[no-untyped-def]
    registered = uuid.uuid4()
    await email_channel(notifier, registered, "compta@epn-dole.fr")
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
    log.clearing(sts)
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


async def in_clearing(
    issuer: ServiceProcesses, listing: str, window: int, **owner: uuid.UUID
) -> dict[str, Any]:
    """The window's statement (`listing` /statements) or call for funds (/funder-statements) of
    `owner` (site_id= or funder_id=), as clearing serves it, once clearing issued it."""
    ((field, value),) = owner.items()
    async with httpx.AsyncClient(base_url=issuer.url("clearing")) as api:

        async def probe() -> dict[str, Any] | None:
            r = await api.get(listing, params={"window_id": window}, headers=FINANCE)
            found = [x for x in r.json() if x[field] == str(value)]
            return dict(found[0]) if found else None

        return await eventually(f"clearing's {listing} of window {window} for {value}", probe, timeout=60)


async def test_a_funder_gets_its_call_for_funds_once_with_clearing_s_csv_and_pdf(
    notifier, inbox, issuer, pg, log
) -> None:  # type: ignore[no-untyped-def]
    funder, other = uuid.uuid4(), uuid.uuid4()
    await finance_contact(notifier, funder, "appels@region-bfc.fr")
    forbidden = await notifier.put(
        f"/funders/{funder}/finance-contact",
        json={"address": "x@y.fr"},
        headers=auth(Role.SITE, str(uuid.uuid4())),
    )
    assert forbidden.status_code == 403

    window = 45
    shares = (FunderShare(funder_id=funder, share_bp=6000), FunderShare(funder_id=other, share_bp=4000))
    log.redemptions(
        [redeemed(site, window, funders=shares) for site in (uuid.uuid4(), uuid.uuid4()) for _ in range(2)]
    )
    log.close_window(window)
    call = await in_clearing(issuer, "/funder-statements", window, funder_id=funder)
    assert call["amount_cents"] == 4 * 600 and call["statements"] == 2

    (d,) = await settled(notifier, uuid.UUID(call["funder_statement_id"]))
    assert d["status"] == "delivered" and d["attempts"] == 1 and d["funder_id"] == str(funder)
    (mail,) = inbox.to("appels@region-bfc.fr")
    assert "24,00 €" in mail["Subject"]
    assert "joint (CSV et PDF)" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    attached = {a.get_content_type(): a for a in mail.iter_attachments()}  # type: ignore[attr-defined]
    assert set(attached) == {"text/csv", "application/pdf"}
    url = f"/funder-statements/{call['funder_statement_id']}"
    async with httpx.AsyncClient(base_url=issuer.url("clearing")) as api:
        served = {
            kind: await api.get(f"{url}/{kind}", headers=auth(Role.FUNDER, str(funder)))
            for kind in ("csv", "pdf")
        }
    assert {x.status_code for x in served.values()} == {200}
    # Byte for byte what the funder downloads from clearing (a PDF less its dates and file id).
    csv_part, pdf_part = attached["text/csv"], attached["application/pdf"]
    assert csv_part.get_payload(decode=True) == served["csv"].content
    rows = list(csv.DictReader(io.StringIO(served["csv"].content.decode())))
    assert {x["funder_id"] for x in rows} == {str(funder)} and len(rows) == 2
    assert sum(int(x["amount_cents"]) for x in rows) == call["amount_cents"]
    assert without_pdf_dates(pdf_part.get_payload(decode=True)) == without_pdf_dates(served["pdf"].content)
    for part, kind in ((csv_part, "csv"), (pdf_part, "pdf")):
        assert f'filename="{part.get_filename()}"' in served[kind].headers["content-disposition"]

    # The call for funds told again (a redelivery, or clearing's relay resending): still one e-mail.
    (again,) = log.clearing([FunderStatementIssued.model_validate(call)])
    await processed(pg, "notifier-statements", again)
    assert len(await settled(notifier, uuid.UUID(call["funder_statement_id"]))) == 1
    assert len(inbox.to("appels@region-bfc.fr")) == 1

    (event,) = await log.outcomes(
        "FunderNotificationDelivered", "funder_statement_id", {call["funder_statement_id"]}
    )
    assert event.type == "FunderNotificationDelivered"


async def test_the_delivery_log_shows_a_site_only_its_own(notifier, receiver, log) -> None:  # type: ignore[no-untyped-def]
    mine, theirs = [(await endpoint(notifier, receiver))["site"] for _ in range(2)]
    sts = [statement(mine), statement(theirs)]
    log.clearing(sts)
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
    notifier, receiver, log
) -> None:  # type: ignore[no-untyped-def]
    from kafka import KafkaProducer

    site = (await endpoint(notifier, receiver))["site"]
    before, after = statement(site, window_id=7), statement(site, window_id=8)
    key = str(site).encode()
    producer = KafkaProducer(bootstrap_servers=log.bootstrap, acks="all")
    for value in (
        CLEARING.envelope(before, key=str(site)).to_bytes(),
        b'{"not": "an envelope"}',
        CLEARING.envelope(after, key=str(site)).to_bytes(),
    ):
        producer.send(log.topic(Topic.CLEARING), key=key, value=value)  # one key: one partition, in order
    producer.flush(30)
    producer.close(5)

    for st in (before, after):
        (d,) = await settled(notifier, st.statement_id)
        assert d["status"] == "delivered"

    (dead,) = await log.read(
        "the poison message on the dead-letter topic", Topic.DEAD_LETTERS, lambda p: "not" in p.get("raw", "")
    )
    assert dead.payload["consumer"] == "notifier-statements"


async def test_a_call_for_funds_without_a_finance_contact_ends_failed_and_dead_lettered(
    notifier, log
) -> None:  # type: ignore[no-untyped-def]
    funder = uuid.uuid4()
    fs = funder_statement(funder, 9, [])
    log.clearing([fs])

    (d,) = await settled(notifier, fs.funder_statement_id)
    assert d["status"] == "failed" and d["attempts"] == 4
    assert d["last_error"] == f"no finance contact registered for funder {funder}"
    dead = (await notifier.get("/dead-letters", headers=FINANCE)).json()
    assert d["notification_id"] in {x["notification_id"] for x in dead}

    (event,) = await log.outcomes(
        "FunderNotificationFailed", "funder_statement_id", {str(fs.funder_statement_id)}
    )
    assert event.type == "FunderNotificationFailed" and event.payload["reason"] == d["last_error"]


async def test_a_reversal_after_its_window_closed_is_told_once_per_channel_and_one_within_the_window_is_not(
    notifier, receiver, inbox, issuer, pg, log
) -> None:  # type: ignore[no-untyped-def]
    hook = await endpoint(notifier, receiver)
    site, other_site = hook["site"], uuid.uuid4()
    await email_channel(notifier, site, "caisse@epn-besancon.fr")
    closed_window, open_window = 31, 32
    early, kept = redeemed(site, closed_window), redeemed(site, closed_window)
    log.redemptions([early, kept])
    log.close_window(closed_window)
    late = redeemed(site, open_window)
    after_close, within = reversed_in(early, open_window), reversed_in(late, open_window)
    events = as_redemption_events([late, after_close, within])
    # The reversal after close redelivered (same event) and sent again (another event, same
    # reversal): one notification per channel all the same.
    again = REDEMPTION.envelope(after_close, key=str(site))
    log.redemptions([*events, events[1], again])

    told = await settled(notifier, n=2, kind="reversal", reversal_id=str(after_close.reversal_id))
    assert {d["channel"] for d in told} == {"webhook", "email"}
    assert all(d["status"] == "delivered" and d["attempts"] == 1 for d in told)
    assert all(d["window_id"] == open_window and d["statement_id"] is None for d in told)

    (got,) = [h for h in hits(receiver, hook["path"]) if h.payload["type"] == "redemption.reversed"]
    assert got.verified and got.headers["webhook-id"] in {d["notification_id"] for d in told}
    assert got.payload["data"] == {
        "reversal_id": str(after_close.reversal_id),
        "redemption_id": str(early.redemption_id),
        "pass_id": str(early.pass_id),
        "site_id": str(site),
        "programme_id": str(early.programme_id),
        "amount_cents": -1000,
        "redemption_window_id": closed_window,
        "deducted_from_window_id": open_window,
        "reason": "atelier annulé",
        "reversed_at": after_close.reversed_at.isoformat(),
    }
    (mail,) = [m for m in inbox.to("caisse@epn-besancon.fr") if "annulation" in m["Subject"]]
    assert "-10,00 €" in mail["Subject"] and f"période n° {open_window}" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert str(early.redemption_id) in text and f"période n° {closed_window} (close)" in text

    # Nothing for the reversal within the open window, once the notifier has applied it.
    await processed(pg, "notifier-redemptions", events[2])
    log.close_window(open_window)
    st = await in_clearing(issuer, "/statements", open_window, site_id=site)
    await settled(notifier, uuid.UUID(st["statement_id"]), 2)
    within_told = await notifier.get(
        "/deliveries", params={"reversal_id": str(within.reversal_id)}, headers=FINANCE
    )
    assert within_told.json() == []
    # What the site was told is what clearing deducts: a negative line in the reversal's window.
    (line,) = [x for x in st["lines"] if x["ref_id"] == str(after_close.reversal_id)]
    assert line["kind"] == "reversal" and line["amount_cents"] == got.payload["data"]["amount_cents"]

    outcomes = await log.outcomes(
        "two ReversalNotificationDelivered", "reversal_id", {str(after_close.reversal_id)}, n=2
    )
    assert sorted(e.payload["channel"] for e in outcomes) == ["email", "webhook"]
    assert {e.type for e in outcomes} == {"ReversalNotificationDelivered"}
    assert {e.payload["window_id"] for e in outcomes} == {open_window}
    assert {e.payload["redemption_id"] for e in outcomes} == {str(early.redemption_id)}

    # The delivery log: the site sees its own reversal notifications, another site none.
    mine = (
        await notifier.get("/deliveries", params={"kind": "reversal"}, headers=auth(Role.SITE, str(site)))
    ).json()
    assert {d["notification_id"] for d in mine} == {d["notification_id"] for d in told}
    theirs = await notifier.get(
        "/deliveries", params={"kind": "reversal"}, headers=auth(Role.SITE, str(other_site))
    )
    assert theirs.json() == []
    hidden = await notifier.get(
        f"/deliveries/{told[0]['notification_id']}", headers=auth(Role.SITE, str(other_site))
    )
    assert hidden.status_code == 404
    bad_kind = await notifier.get("/deliveries", params={"kind": "gossip"}, headers=FINANCE)
    assert bad_kind.status_code == 422


async def test_a_reversal_of_a_redemption_never_seen_is_dead_lettered_and_the_stream_goes_on(
    notifier, receiver, log
) -> None:  # type: ignore[no-untyped-def]
    site = (await endpoint(notifier, receiver))["site"]
    ghost, real = redeemed(site, 51), redeemed(site, 51)
    # ghost's redemption never reached the topic; real's did, and its late reversal follows.
    lost, late = reversed_in(ghost, 52), reversed_in(real, 52)
    log.redemptions([real, lost, late])

    (d,) = await settled(notifier, kind="reversal", reversal_id=str(late.reversal_id))
    assert d["status"] == "delivered"

    (dead,) = await log.read(
        "the unknown reversal on the dead-letter topic",
        Topic.DEAD_LETTERS,
        lambda p: str(lost.reversal_id) in p.get("reason", ""),
    )
    assert (
        dead.payload["consumer"] == "notifier-redemptions" and "never seen redeemed" in dead.payload["reason"]
    )
    none = await notifier.get("/deliveries", params={"reversal_id": str(lost.reversal_id)}, headers=FINANCE)
    assert none.json() == []


def without_pdf_dates(pdf: bytes) -> bytes:
    """A reportlab PDF less its creation/modification dates and file id (the rest is the content)."""
    return re.sub(rb"/(CreationDate|ModDate) \(D:[^)]*\)|/ID\s*\[[^\]]*\]", b"", pdf)


async def test_a_site_email_carries_clearing_s_statement_pdf(notifier, inbox, issuer, log) -> None:  # type: ignore[no-untyped-def]
    site = uuid.uuid4()
    await email_channel(notifier, site, "releves@epn-vesoul.fr")
    window = 41
    log.redemptions([redeemed(site, window) for _ in range(3)])
    log.close_window(window)

    st = await in_clearing(issuer, "/statements", window, site_id=site)
    (d,) = await settled(notifier, uuid.UUID(st["statement_id"]))
    assert d["status"] == "delivered" and d["attempts"] == 1 and d["channel"] == "email"
    (mail,) = inbox.to("releves@epn-vesoul.fr")
    assert "30,00 €" in mail["Subject"]
    (attachment,) = list(mail.iter_attachments())  # type: ignore[attr-defined]
    assert attachment.get_filename() == f"releve-{st['statement_id']}.pdf"
    assert attachment.get_content_type() == "application/pdf"
    attached = attachment.get_content()
    async with httpx.AsyncClient(base_url=issuer.url("clearing")) as api:
        own = await api.get(f"/statements/{st['statement_id']}/pdf", headers=auth(Role.SITE, str(site)))
        foreign = await api.get(
            f"/statements/{st['statement_id']}/pdf", headers=auth(Role.SITE, str(uuid.uuid4()))
        )
    assert own.status_code == 200 and foreign.status_code == 404  # a site reads only its own
    assert attached.startswith(b"%PDF") and st["statement_id"].encode() in attached
    assert without_pdf_dates(attached) == without_pdf_dates(own.content)
    assert "joint en PDF" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_idempotency_keys_replay_the_first_answer_and_refuse_another_request(notifier) -> None:  # type: ignore[no-untyped-def]
    site = uuid.uuid4()
    me = {**auth(Role.SITE, str(site)), "Idempotency-Key": "create-1"}
    body = {"url": "http://127.0.0.1:9/hook"}
    # Concurrent resends of one creation: one endpoint, one secret, whoever answers.
    answers = await asyncio.gather(*(notifier.post("/webhooks", json=body, headers=me) for _ in range(5)))
    assert {a.status_code for a in answers} == {201}
    assert len({(a.json()["endpoint_id"], a.json()["secret"]) for a in answers}) == 1
    created = answers[0].json()
    listed = (await notifier.get("/webhooks", headers=auth(Role.SITE, str(site)))).json()
    assert [e["endpoint_id"] for e in listed] == [created["endpoint_id"]]

    other = await notifier.post("/webhooks", json={"url": "http://127.0.0.1:9/other"}, headers=me)
    assert other.status_code == 409 and other.json()["type"].endswith("idempotency-key-reused")
    assert len((await notifier.get("/webhooks", headers=auth(Role.SITE, str(site)))).json()) == 1

    # Another site's identical key and body is its own request.
    theirs = await notifier.post(
        "/webhooks", json=body, headers={**auth(Role.SITE, str(uuid.uuid4())), "Idempotency-Key": "create-1"}
    )
    assert theirs.status_code == 201 and theirs.json()["endpoint_id"] != created["endpoint_id"]

    rotate = f"/webhooks/{created['endpoint_id']}/rotate-secret"
    key = {**auth(Role.SITE, str(site)), "Idempotency-Key": "rotate-1"}
    first = await notifier.post(rotate, json={"overlap_seconds": 60}, headers=key)
    replay = await notifier.post(rotate, json={"overlap_seconds": 60}, headers=key)
    assert first.status_code == replay.status_code == 200 and first.json() == replay.json()
    assert first.json()["secret"] != created["secret"]
    (endpoint_now,) = (await notifier.get("/webhooks", headers=auth(Role.SITE, str(site)))).json()
    assert len(endpoint_now["previous_secrets_until"]) == 1, "the replay rotated nothing"
    changed = await notifier.post(rotate, json={"overlap_seconds": 61}, headers=key)
    assert changed.status_code == 409

    # The key covers the route too: the same key and body on another endpoint is another request.
    second = await notifier.post("/webhooks", json=body, headers=auth(Role.SITE, str(site)))
    elsewhere = await notifier.post(
        f"/webhooks/{second.json()['endpoint_id']}/rotate-secret", json={"overlap_seconds": 60}, headers=key
    )
    assert elsewhere.status_code == 409

    # A refusal keeps nothing, the key included: once the request is right, the key works.
    unknown = {**auth(Role.SITE, str(site)), "Idempotency-Key": "rotate-unknown"}
    missing = await notifier.post(f"/webhooks/{uuid.uuid4()}/rotate-secret", json={}, headers=unknown)
    assert missing.status_code == 404
    later = await notifier.post(f"/webhooks/{uuid.uuid4()}/rotate-secret", json={}, headers=unknown)
    assert later.status_code == 404

    mail = {**auth(Role.SITE, str(site)), "Idempotency-Key": "mail-1"}
    one = await notifier.post("/emails", json={"address": "a@epn-gray.fr"}, headers=mail)
    two = await notifier.post("/emails", json={"address": "a@epn-gray.fr"}, headers=mail)
    assert one.status_code == two.status_code == 201 and one.json() == two.json()
    assert (
        await notifier.post("/emails", json={"address": "b@epn-gray.fr"}, headers=mail)
    ).status_code == 409

    enable = {**auth(Role.SITE, str(site)), "Idempotency-Key": "enable-1"}
    on = await notifier.post(f"/webhooks/{created['endpoint_id']}/enable", headers=enable)
    on_again = await notifier.post(f"/webhooks/{created['endpoint_id']}/enable", headers=enable)
    assert on.status_code == on_again.status_code == 200 and on.json() == on_again.json()


async def test_two_quick_rotations_keep_the_oldest_secret_until_its_overlap_ends(
    notifier, receiver, log
) -> None:  # type: ignore[no-untyped-def]
    hook = await endpoint(notifier, receiver)
    site = hook["site"]
    me = auth(Role.SITE, str(site))
    rotate = f"/webhooks/{hook['endpoint_id']}/rotate-secret"
    middle = (await notifier.post(rotate, json={"overlap_seconds": 3600}, headers=me)).json()["secret"]
    newest = (await notifier.post(rotate, json={"overlap_seconds": 3600}, headers=me)).json()["secret"]

    st = statement(site)
    log.clearing([st])
    await settled(notifier, st.statement_id)
    (got,) = hits(receiver, hook["path"])
    assert got.verified  # the receiver still holds the oldest secret
    assert len(got.headers["webhook-signature"].split(" ")) == 3
    for secret in (hook["secret"], middle, newest):  # the oldest still verifies
        Webhook(secret).verify(got.body, got.headers)

    # A secret whose overlap has ended signs no more; one retired later but still within its
    # overlap does. (A rotation's overlap is that of the secret it retires.)
    hook2 = await endpoint(notifier, receiver)
    site2 = hook2["site"]
    rotate2 = f"/webhooks/{hook2['endpoint_id']}/rotate-secret"
    me2 = auth(Role.SITE, str(site2))
    s1 = (await notifier.post(rotate2, json={"overlap_seconds": 0.5}, headers=me2)).json()["secret"]
    s2 = (await notifier.post(rotate2, json={"overlap_seconds": 3600}, headers=me2)).json()["secret"]
    s3 = (await notifier.post(rotate2, json={"overlap_seconds": 0}, headers=me2)).json()["secret"]

    async def expired() -> bool:
        (ep,) = (await notifier.get("/webhooks", headers=me2)).json()
        return len(ep["previous_secrets_until"]) == 1

    await eventually("the 0.5 s overlap of the first secret to end", expired)
    receiver[0].secrets[hook2["path"]] = s1  # this receiver is still on the second secret
    st2 = statement(site2)
    log.clearing([st2])
    await settled(notifier, st2.statement_id)
    (got2,) = hits(receiver, hook2["path"])
    assert got2.verified
    assert len(got2.headers["webhook-signature"].split(" ")) == 2
    for secret in (s3, s1):
        Webhook(secret).verify(got2.body, got2.headers)
    for gone in (hook2["secret"], s2):  # retired with 0.5 s and with no overlap: both ended
        with pytest.raises(WebhookVerificationError):
            Webhook(gone).verify(got2.body, got2.headers)


async def test_while_clearing_is_unreachable_e_mails_are_retried_and_the_last_attempt_goes_without_documents(
    notifier, inbox, issuer, log
) -> None:  # type: ignore[no-untyped-def]
    site, funder = uuid.uuid4(), uuid.uuid4()
    await email_channel(notifier, site, "tresorerie@epn-lure.fr")
    await finance_contact(notifier, funder, "appels@cd39.fr")
    issuer.stop("clearing")
    try:
        st, fs = statement(site, cents=7000), funder_statement(funder, 44, [7000])
        log.clearing([st, fs])
        (d,) = await settled(notifier, st.statement_id)
        (f,) = await settled(notifier, fs.funder_statement_id)
    finally:
        issuer.start("clearing")
        issuer.wait_ready("clearing")
    # The schedule has 3 retries: three failed attempts, then the last one goes all the same.
    for delivery, what in ((d, "statement PDF"), (f, "call for funds documents")):
        assert delivery["status"] == "delivered" and delivery["attempts"] == 4
        one = (await notifier.get(f"/deliveries/{delivery['notification_id']}", headers=FINANCE)).json()
        outcomes = [a["outcome"] for a in one["attempt_log"]]
        assert [o.startswith(f"{what} unavailable: clearing unreachable") for o in outcomes[:3]] == [True] * 3
        assert outcomes[3] == "delivered"
    (mail,) = inbox.to("tresorerie@epn-lure.fr")
    assert list(mail.iter_attachments()) == []  # type: ignore[attr-defined]
    assert "n'a pas pu être joint" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    (call,) = inbox.to("appels@cd39.fr")
    assert list(call.iter_attachments()) == []  # type: ignore[attr-defined]
    text = call.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "70,00 €" in text and "n'a pas pu être joint" in text and str(fs.funder_statement_id) in text
