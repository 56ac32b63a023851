"""The issuer on the real broker and database: funding, distribution, scoping, cancellation,
expiry, erasure, sheets, and no personal data on the topic."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from schemas.envelope import Envelope
from schemas.topics import Topic, topic_name
from services.cli import scenario
from services.common.auth import Role
from tests.integration.flows import FINANCE, programme_body, site_body
from tests.integration.helpers import auth, eventually, read_topic, running

pytestmark = pytest.mark.integration

# Every piece of personal data or bank detail this module sends: none may reach the topic.
SECRETS: set[str] = set()
PEOPLE = [
    ("Élodie", "Marchetti-Vasseur", "2008-03-14", "elodie.marchetti@example.org"),
    ("Yanis", "Benkhaldoun", "2003-11-02", "yanis.b@example.net"),
    ("Gwenaëlle", "Quéméneur", "1961-07-21", "gq@example.fr"),  # too old for 16–25
]


@pytest.fixture(scope="module")
async def issuer(service_env: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    from services.issuer.app import app

    async with running(app) as client:
        yield client


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    r = await client.post(path, json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def funders(client: httpx.AsyncClient, n: int) -> list[str]:
    return [
        (await post(client, "/funders", {"name": f"Financeur {i}", "kind": "region"}, FINANCE))["funder_id"]
        for i in range(n)
    ]


# The programmes of this module are for 16–25 year olds (the distribution tests rely on it).
YOUTH = {"learning_paths": ["basic-skills", "access-to-rights"], "min_age": 16, "max_age": 25}


async def ordered(client: httpx.AsyncClient, booklets: int = 4, **terms: Any) -> dict[str, Any]:
    ids = await funders(client, 3)
    programme = await post(
        client, "/programmes", programme_body(ids, [5000, 3000, 2000], **{**YOUTH, **terms}), FINANCE
    )
    body = {"programme_id": programme["programme_id"], "booklets": booklets}
    order = await post(client, "/orders", body, FINANCE)
    return {**order, "programme_id": programme["programme_id"], "funders": ids}


async def pay(
    client: httpx.AsyncClient, order: dict[str, Any], due: dict[str, Any], amount: int | None = None
) -> httpx.Response:
    body = {
        "amount_cents": amount if amount is not None else due["amount_cents"],
        "bank_reference": uuid.uuid4().hex,
    }
    return await client.post(
        f"/orders/{order['order_id']}/payments", json=body, headers=auth(Role.FUNDER, due["funder_id"])
    )


async def funded(client: httpx.AsyncClient, booklets: int = 4, **terms: Any) -> dict[str, Any]:
    order = await ordered(client, booklets, **terms)
    for due in order["dues"]:
        assert (await pay(client, order, due)).status_code == 201
    return order


async def prescriber(
    client: httpx.AsyncClient, order: dict[str, Any], booklets: int
) -> tuple[str, list[str]]:
    p = await post(
        client, "/prescribers", {"name": "Mission locale de Dijon", "kind": "mission-locale"}, FINANCE
    )
    body = {"programme_id": order["programme_id"], "booklets": booklets}
    allocation = await post(client, f"/prescribers/{p['prescriber_id']}/allocations", body, FINANCE)
    return p["prescriber_id"], allocation["booklet_ids"]


def person(i: int, on: str = "2026-03-01") -> dict[str, Any]:
    given, family, birth, email = PEOPLE[i]
    SECRETS.update(
        {given, family, birth, email, birth.replace("-", ""), f"{birth[8:]}/{birth[5:7]}/{birth[:4]}"}
    )
    return {
        "given_name": given,
        "family_name": family,
        "birth_date": birth,
        "email": email,
        "distributed_on": on,
    }


async def outbox_count(pg: asyncpg.Connection) -> int:
    return await pg.fetchval("SELECT count(*) FROM issuer.outbox")  # type: ignore[no-any-return]


async def test_shares_not_summing_to_ten_thousand_are_refused_and_write_nothing(issuer, pg) -> None:  # type: ignore[no-untyped-def]
    ids = await funders(issuer, 3)
    before = await outbox_count(pg)
    for shares in ([5000, 3000, 1999], [5000, 3000, 2001]):
        r = await issuer.post("/programmes", json=programme_body(ids, shares), headers=FINANCE)
        assert r.status_code == 422
        assert r.json()["type"].endswith("/invalid-shares") and "10000" in r.json()["detail"]
    assert await outbox_count(pg) == before
    assert await pg.fetchval("SELECT count(*) FROM issuer.programmes") == 0


async def test_a_funder_paying_too_little_or_twice_is_refused(issuer, pg) -> None:  # type: ignore[no-untyped-def]
    order = await ordered(issuer)
    first = order["dues"][0]
    before = await outbox_count(pg)
    r = await pay(issuer, order, first, first["amount_cents"] - 1)
    assert r.status_code == 422 and r.json()["type"].endswith("/wrong-amount")
    assert await outbox_count(pg) == before
    assert (await pay(issuer, order, first)).status_code == 201
    r = await pay(issuer, order, first)
    assert r.status_code == 409 and r.json()["type"].endswith("/already-paid")


async def test_booklets_activate_only_after_the_last_share(issuer, pg) -> None:  # type: ignore[no-untyped-def]
    order = await ordered(issuer, booklets=3)
    for due in order["dues"][:-1]:
        r = await pay(issuer, order, due)
        assert r.json()["order_status"] == "awaiting_funds"
        detail = (await issuer.get(f"/orders/{order['order_id']}", headers=FINANCE)).json()
        assert detail["status"] == "awaiting_funds" and detail["booklets"] == []
    activated = "SELECT count(*) FROM issuer.outbox WHERE convert_from(body, 'UTF8') LIKE '%BookletActivated%' AND convert_from(body, 'UTF8') LIKE $1"
    assert await pg.fetchval(activated, f"%{order['order_id']}%") == 0
    r = await pay(issuer, order, order["dues"][-1])
    assert r.json()["order_status"] == "active"
    detail = (await issuer.get(f"/orders/{order['order_id']}", headers=FINANCE)).json()
    assert len(detail["booklets"]) == 3 and all(len(b["passes"]) == 5 for b in detail["booklets"])
    assert await pg.fetchval(activated, f"%{order['order_id']}%") == 3


async def test_a_funder_orders_only_for_programmes_it_co_finances(issuer, pg) -> None:  # type: ignore[no-untyped-def]
    order = await ordered(issuer, booklets=1)
    stranger = (await funders(issuer, 1))[0]
    before = await outbox_count(pg)
    body = {"programme_id": order["programme_id"], "booklets": 1}
    r = await issuer.post("/orders", json=body, headers=auth(Role.FUNDER, stranger))
    assert r.status_code == 403 and r.json()["type"].endswith("/not-a-funder")
    assert await outbox_count(pg) == before
    r = await issuer.post("/orders", json=body, headers=auth(Role.FUNDER, order["funders"][1]))
    assert r.status_code == 201


async def test_idempotency_key_replays_the_answer_and_refuses_another_body(issuer) -> None:  # type: ignore[no-untyped-def]
    headers = {**FINANCE, "Idempotency-Key": uuid.uuid4().hex}
    body = {"name": "Mission locale de Beaune", "kind": "mission-locale"}
    first = await issuer.post("/prescribers", json=body, headers=headers)
    again = await issuer.post("/prescribers", json=body, headers=headers)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    other = await issuer.post("/prescribers", json={**body, "name": "Autre"}, headers=headers)
    assert other.status_code == 409 and other.json()["type"].endswith("/idempotency-key-reused")


async def test_concurrent_resends_of_one_keyed_request_write_it_once(issuer, pg) -> None:  # type: ignore[no-untyped-def]
    """The claim row serialises them: one funder, one event, every resend given the first answer."""
    headers = {**FINANCE, "Idempotency-Key": uuid.uuid4().hex}
    body = {"name": f"Département {uuid.uuid4().hex[:8]}", "kind": "departement"}
    before = await outbox_count(pg)
    answers = await asyncio.gather(*(issuer.post("/funders", json=body, headers=headers) for _ in range(5)))
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["funder_id"] for r in answers}) == 1
    assert await pg.fetchval("SELECT count(*) FROM issuer.funders WHERE name = $1", body["name"]) == 1
    assert await outbox_count(pg) == before + 1


async def test_a_refused_keyed_request_leaves_its_key_unused(issuer, pg) -> None:  # type: ignore[no-untyped-def]
    """A domain refusal rolls back the key's claim with the rest: the corrected request may take
    the same key, and from then on the key stands for it."""
    order = await ordered(issuer, booklets=1)
    due = order["dues"][0]
    headers = {**auth(Role.FUNDER, due["funder_id"]), "Idempotency-Key": uuid.uuid4().hex}
    path = f"/orders/{order['order_id']}/payments"
    wrong = {"amount_cents": due["amount_cents"] - 1, "bank_reference": "VIR-1"}
    right = {"amount_cents": due["amount_cents"], "bank_reference": "VIR-1"}
    before = await outbox_count(pg)
    refused = await issuer.post(path, json=wrong, headers=headers)
    assert refused.status_code == 422 and refused.json()["type"].endswith("/wrong-amount")
    assert await outbox_count(pg) == before
    paid = await issuer.post(path, json=right, headers=headers)
    assert paid.status_code == 201
    assert (await issuer.post(path, json=right, headers=headers)).json() == paid.json()
    again = await issuer.post(path, json=wrong, headers=headers)
    assert again.status_code == 409 and again.json()["type"].endswith("/idempotency-key-reused")


async def test_an_idempotency_key_reused_on_another_resource_is_refused(issuer, pg) -> None:  # type: ignore[no-untyped-def]
    """Same key, same body, another path: another request (a 409), never the first one's answer."""
    order = await funded(issuer, booklets=2)
    _, booklets = await prescriber(issuer, order, 2)
    headers = {**FINANCE, "Idempotency-Key": uuid.uuid4().hex}
    body = {"reason": "carnet perdu"}
    first = await issuer.post(f"/booklets/{booklets[0]}/cancellation", json=body, headers=headers)
    assert first.status_code == 201
    before = await outbox_count(pg)
    other = await issuer.post(f"/booklets/{booklets[1]}/cancellation", json=body, headers=headers)
    assert other.status_code == 409 and other.json()["type"].endswith("/idempotency-key-reused")
    assert await outbox_count(pg) == before
    still = (await issuer.get(f"/booklets/{booklets[1]}", headers=FINANCE)).json()
    assert all(p["status"] != "cancelled" for p in still["passes"])
    again = await issuer.post(f"/booklets/{booklets[0]}/cancellation", json=body, headers=headers)
    assert again.status_code == 201 and again.json() == first.json()


async def test_a_prescriber_sees_only_its_own_booklets_and_beneficiaries(issuer) -> None:  # type: ignore[no-untyped-def]
    order = await funded(issuer, booklets=4)
    mine, booklets = await prescriber(issuer, order, 2)
    other, others = await prescriber(issuer, order, 2)
    me, them = auth(Role.PRESCRIBER, mine), auth(Role.PRESCRIBER, other)
    listed = (await issuer.get("/booklets", headers=me)).json()
    assert sorted(b["booklet_id"] for b in listed) == sorted(booklets)
    assert (await issuer.get(f"/booklets/{others[0]}", headers=me)).status_code == 404
    assert (await issuer.get(f"/booklets/{others[0]}/sheet.pdf", headers=me)).status_code == 404
    r = await issuer.post(f"/booklets/{others[0]}/distribution", json=person(0), headers=me)
    assert r.status_code == 404
    handed = await post(issuer, f"/booklets/{booklets[0]}/distribution", person(0), me)
    assert (await issuer.get(f"/beneficiaries/{handed['beneficiary_id']}", headers=them)).status_code == 404
    erase = f"/beneficiaries/{handed['beneficiary_id']}/personal-data"
    assert (await issuer.delete(erase, headers=them)).status_code == 404
    cancel = await issuer.post(f"/booklets/{booklets[0]}/cancellation", json={"reason": "x"}, headers=them)
    assert cancel.status_code == 404
    mine_view = (await issuer.get(f"/beneficiaries/{handed['beneficiary_id']}", headers=me)).json()
    assert mine_view["family_name"] == PEOPLE[0][1]
    assert (
        await issuer.post("/orders", json={"programme_id": order["programme_id"], "booklets": 1}, headers=me)
    ).status_code == 403
    # Booklets beyond what is left are refused whole.
    r = await issuer.post(
        f"/prescribers/{mine}/allocations",
        json={"programme_id": order["programme_id"], "booklets": 1},
        headers=FINANCE,
    )
    assert r.status_code == 409


async def test_an_ineligible_beneficiary_is_refused_and_nothing_is_written(issuer, pg) -> None:  # type: ignore[no-untyped-def]
    order = await funded(issuer, booklets=1)
    mine, booklets = await prescriber(issuer, order, 1)
    before = (await outbox_count(pg), await pg.fetchval("SELECT count(*) FROM issuer.beneficiaries"))
    r = await issuer.post(
        f"/booklets/{booklets[0]}/distribution", json=person(2), headers=auth(Role.PRESCRIBER, mine)
    )
    assert r.status_code == 422 and r.json()["type"].endswith("/not-eligible"), r.text
    assert (await outbox_count(pg), await pg.fetchval("SELECT count(*) FROM issuer.beneficiaries")) == before
    booklet = (await issuer.get(f"/booklets/{booklets[0]}", headers=FINANCE)).json()
    assert booklet["beneficiary_id"] is None


async def test_a_cancelled_booklet_cancels_each_pass_and_cannot_be_handed_out(
    issuer, pg, bootstrap, topic_prefix
) -> None:  # type: ignore[no-untyped-def]
    order = await funded(issuer, booklets=2)
    mine, booklets = await prescriber(issuer, order, 2)
    me = auth(Role.PRESCRIBER, mine)
    booklet = (await issuer.get(f"/booklets/{booklets[0]}", headers=me)).json()
    r = await post(issuer, f"/booklets/{booklets[0]}/cancellation", {"reason": "carnet volé"}, me)
    assert r["cancelled_passes"] == 5
    r2 = await issuer.post(f"/booklets/{booklets[0]}/cancellation", json={"reason": "again"}, headers=me)
    assert r2.status_code == 409
    r3 = await issuer.post(f"/booklets/{booklets[0]}/distribution", json=person(1), headers=me)
    assert r3.status_code == 409 and r3.json()["type"].endswith("/booklet-cancelled")
    one = (await issuer.get(f"/booklets/{booklets[1]}", headers=me)).json()["passes"][0]["pass_id"]
    await post(issuer, f"/passes/{one}/cancellation", {"reason": "pass perdu"}, FINANCE)
    assert (
        await issuer.post(f"/passes/{one}/cancellation", json={"reason": "x"}, headers=FINANCE)
    ).status_code == 409
    wanted = {p["pass_id"] for p in booklet["passes"]} | {one}

    async def cancelled_on_topic() -> set[str] | None:
        events = await asyncio.to_thread(read_topic, bootstrap, topic_name(Topic.ISSUER, topic_prefix))
        seen = {
            e.payload["pass_id"]
            for _, _, e in events
            if isinstance(e, Envelope) and e.type == "PassCancelled"
        }
        return seen if wanted <= seen else None

    await eventually("one PassCancelled per pass on the topic", cancelled_on_topic)


async def test_expiry_emits_once_per_pass_past_validity_and_grace(issuer) -> None:  # type: ignore[no-untyped-def]
    order = await funded(issuer, booklets=2, valid_from="2024-01-01", valid_until="2024-12-31", grace_days=31)
    summary = f"/programmes/{order['programme_id']}/summary"
    first = await post(issuer, "/expiry-runs", {"as_of": "2025-01-31"}, FINANCE)  # last day of grace
    assert (await issuer.get(summary, headers=FINANCE)).json()["expired_passes"] == 0
    first = await post(issuer, "/expiry-runs", {"as_of": "2025-02-01"}, FINANCE)
    again = await post(issuer, "/expiry-runs", {"as_of": "2025-02-02"}, FINANCE)
    assert first["expired_passes"] >= 10 and again["expired_passes"] == 0
    totals = (await issuer.get(summary, headers=FINANCE)).json()
    assert (totals["expired_passes"], totals["active_passes"]) == (10, 0)


async def test_site_iban_is_masked_except_in_finance_payout_details(issuer) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random()
    iban = scenario.iban(rng)
    SECRETS.update({iban, "lieu@example.org"})
    body = site_body(rng, name="Fablab", iban=iban, contact_email="lieu@example.org")
    site = await post(issuer, "/sites", body, FINANCE)
    assert iban not in str(site) and site["iban"].endswith(iban[-4:])
    read = (await issuer.get(f"/sites/{site['site_id']}", headers=FINANCE)).json()
    assert read["iban"] == site["iban"]
    assert (await issuer.get(f"/sites/{site['site_id']}/payout-details", headers=FINANCE)).json()[
        "iban"
    ] == iban
    for role in (Role.FUNDER, Role.PRESCRIBER, Role.SITE):
        r = await issuer.get(
            f"/sites/{site['site_id']}/payout-details", headers=auth(role, str(uuid.uuid4()))
        )
        assert r.status_code == 403
    bad = await issuer.post(
        "/sites",
        json={**body, "iban": iban[:-1] + str((int(iban[-1]) + 1) % 10), "siret": scenario.siret(rng)},
        headers=FINANCE,
    )
    assert bad.status_code == 422


async def test_a_qualification_is_granted_and_withdrawn_as_events(issuer, bootstrap, topic_prefix) -> None:  # type: ignore[no-untyped-def]
    order = await ordered(issuer, booklets=1)
    rng = random.Random()
    body = site_body(rng, contact_email="en@example.org")
    SECRETS.update({body["iban"], body["contact_email"]})
    site = (await post(issuer, "/sites", body, FINANCE))["site_id"]
    await post(issuer, f"/sites/{site}/qualifications", {"programme_id": order["programme_id"]}, FINANCE)
    path = f"/sites/{site}/qualifications/{order['programme_id']}"
    assert (await issuer.delete(path, headers=FINANCE)).status_code == 200
    assert (await issuer.delete(path, headers=FINANCE)).status_code == 404

    async def withdrawn() -> bool:
        events = await asyncio.to_thread(read_topic, bootstrap, topic_name(Topic.ISSUER, topic_prefix))
        return any(
            isinstance(e, Envelope)
            and e.type == "SiteQualificationWithdrawn"
            and e.payload["site_id"] == site
            for _, _, e in events
        )

    await eventually("SiteQualificationWithdrawn on the topic", withdrawn)


async def test_a_share_change_is_a_new_programme_version(issuer) -> None:  # type: ignore[no-untyped-def]
    order = await ordered(issuer, booklets=1)
    ids = order["funders"]
    path = f"/programmes/{order['programme_id']}/versions"
    bad = await issuer.post(
        path, json={"funders": [{"funder_id": ids[0], "share_bp": 9000}]}, headers=FINANCE
    )
    assert bad.status_code == 422
    body = {"funders": [{"funder_id": ids[0], "share_bp": 6000}, {"funder_id": ids[1], "share_bp": 4000}]}
    v2 = await post(issuer, path, body, FINANCE)
    assert (
        v2["version"] == 2
        and v2["supersedes"] == order["programme_id"]
        and v2["programme_id"] != order["programme_id"]
    )
    # The first version's order keeps the dues it was placed with.
    detail = (await issuer.get(f"/orders/{order['order_id']}", headers=FINANCE)).json()
    assert [d["amount_cents"] for d in detail["dues"]] == [2500, 1500, 1000]


async def test_erasure_leaves_events_and_totals_intact(issuer, pg, bootstrap, topic_prefix) -> None:  # type: ignore[no-untyped-def]
    order = await funded(issuer, booklets=2)
    mine, booklets = await prescriber(issuer, order, 2)
    me = auth(Role.PRESCRIBER, mine)
    handed = await post(issuer, f"/booklets/{booklets[0]}/distribution", person(1), me)
    summary = f"/programmes/{order['programme_id']}/summary"
    totals = (await issuer.get(summary, headers=FINANCE)).json()
    assert totals["distributed"] == 1 and totals["ordered_cents"] == totals["paid_cents"] == 10_000
    await eventually("the outbox to drain", lambda: _drained(pg))
    events_before = await asyncio.to_thread(read_topic, bootstrap, topic_name(Topic.ISSUER, topic_prefix))
    erased = await issuer.delete(f"/beneficiaries/{handed['beneficiary_id']}/personal-data", headers=me)
    assert erased.status_code == 200
    view = (await issuer.get(f"/beneficiaries/{handed['beneficiary_id']}", headers=FINANCE)).json()
    assert (
        view["erased"] and view["given_name"] is None and view["birth_date"] is None and view["email"] is None
    )
    row = await pg.fetchrow(
        "SELECT * FROM issuer.beneficiaries WHERE beneficiary_id = $1", uuid.UUID(handed["beneficiary_id"])
    )
    assert PEOPLE[1][1] not in str(dict(row))
    assert (await issuer.get(summary, headers=FINANCE)).json() == totals
    assert (await issuer.get(f"/booklets/{booklets[0]}", headers=me)).json()["beneficiary_id"] == handed[
        "beneficiary_id"
    ]
    events_after = await asyncio.to_thread(read_topic, bootstrap, topic_name(Topic.ISSUER, topic_prefix))
    assert events_after == events_before


async def _drained(pg: asyncpg.Connection) -> bool:
    return await pg.fetchval("SELECT count(*) FROM issuer.outbox_pending") == 0  # type: ignore[no-any-return]


async def test_a_booklet_prints_as_a_pdf_sheet_with_its_codes(issuer) -> None:  # type: ignore[no-untyped-def]
    order = await funded(issuer, booklets=1)
    mine, booklets = await prescriber(issuer, order, 1)
    booklet = (await issuer.get(f"/booklets/{booklets[0]}", headers=FINANCE)).json()
    r = await issuer.get(f"/booklets/{booklets[0]}/sheet.pdf", headers=auth(Role.PRESCRIBER, mine))
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF")
    for p in booklet["passes"]:
        assert p["code"].encode() in r.content
    assert r.content.count(b"/Subtype /Image") >= 5


async def test_zz_no_personal_data_or_bank_detail_in_any_emitted_event(
    issuer, pg, bootstrap, topic_prefix
) -> None:  # type: ignore[no-untyped-def]
    """Runs last: every event this module made the issuer emit, searched for what it was told."""
    await eventually("the outbox to drain", lambda: _drained(pg))
    records = await asyncio.to_thread(read_topic, bootstrap, topic_name(Topic.ISSUER, topic_prefix))
    assert len(records) == await outbox_count(pg) and len(SECRETS) >= 20
    types = {e.type for _, _, e in records if isinstance(e, Envelope)}
    assert {
        "BookletDistributed",
        "PassCancelled",
        "PassExpired",
        "SiteRegistered",
        "BookletActivated",
    } <= types
    for _, offset, envelope in records:
        raw = envelope.to_bytes().decode() if isinstance(envelope, Envelope) else envelope.decode()
        for secret in SECRETS:
            assert secret.lower() not in raw.lower(), f"{secret!r} found in event at offset {offset}"
