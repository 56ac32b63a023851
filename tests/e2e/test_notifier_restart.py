"""The notifier as a process, killed by SIGKILL while a retry is on the wire: after the restart
every statement (and every reversal after close) reaches its endpoint under one webhook-id,
and each notification is reported delivered exactly once."""

from __future__ import annotations

import collections
import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from schemas.envelope import Envelope
from schemas.topics import Topic, topic_name
from services.cli.processes import ServiceProcesses
from services.cli.receiver import WebhookReceiver
from services.common.auth import Role
from tests.integration.helpers import auth, read_topic
from tests.integration.notifier_kit import (
    as_redemption_events,
    free_port,
    publish,
    redeemed,
    reversed_in,
    send,
    statement,
)

pytestmark = pytest.mark.e2e
FINANCE = auth(Role.FINANCE, "finance")


@pytest.fixture(scope="module")
def notifier(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcesses]:
    procs = ServiceProcesses(
        tmp_path_factory.mktemp("notifier"),
        {
            **service_env,
            "NOTIFIER_RETRY_SCHEDULE": "[0.5, 0.5, 0.5, 0.5, 0.5, 0.5]",
            "NOTIFIER_TIMEOUT_SECONDS": "10",
        },
        ports={"notifier": free_port()},
    )
    procs.start("notifier")
    try:
        procs.wait_ready("notifier")
        yield procs
    finally:
        procs.stop("notifier")
        assert not procs.running("notifier")


def wait_until(what: str, probe, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (result := probe()) in (None, False, [], {}):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return result


def test_sigkill_mid_retry_sends_again_under_the_same_webhook_id(
    notifier: ServiceProcesses, service_env: dict[str, str]
) -> None:
    receiver = WebhookReceiver()
    base = receiver.start()
    api = httpx.Client(base_url=notifier.url("notifier"), timeout=10)
    try:
        sites = [uuid.uuid4() for _ in range(21)]
        for n, site in enumerate(sites):
            r = api.post("/webhooks", json={"url": f"{base}/s{n}"}, headers=auth(Role.SITE, str(site)))
            receiver.secrets[f"/s{n}"] = r.json()["secret"]
        # Site 0: the first attempt gets a 500; the retry is held by the receiver while the
        # notifier is killed, so it was received but never recorded as sent.
        receiver.responses["/s0"] = [500]
        receiver.delays["/s0"] = [0.0, 4.0]
        statements = [statement(site, cents=1000 * (n + 1)) for n, site in enumerate(sites)]
        publish(
            service_env["KAFKA_BOOTSTRAP_SERVERS"],
            topic_name(Topic.CLEARING, service_env["KAFKA_TOPIC_PREFIX"]),
            statements,
        )

        wait_until(
            "the retry of site 0 on the wire",
            lambda: len([x for x in receiver.received if x.path == "/s0"]) >= 2,
        )
        notifier.kill("notifier", signal.SIGKILL)
        assert not notifier.running("notifier")
        notifier.start("notifier")
        notifier.wait_ready("notifier")

        def all_delivered() -> list[dict[str, object]] | None:
            rows = api.get("/deliveries", params={"kind": "statement"}, headers=FINANCE).json()
            return rows if len(rows) == len(sites) and all(d["status"] == "delivered" for d in rows) else None

        deliveries = wait_until("every statement delivered after the restart", all_delivered)
    finally:
        receiver.stop()
        api.close()

    ids_by_path = collections.defaultdict(set)
    for hit in receiver.received:
        ids_by_path[hit.path].add(hit.headers["webhook-id"])
        assert hit.verified
    assert all(len(ids) == 1 for ids in ids_by_path.values()), ids_by_path
    s0 = [x for x in receiver.received if x.path == "/s0"]
    assert len(s0) >= 3, "the killed retry is sent again after the restart"
    assert {d["notification_id"] for d in deliveries} == set().union(*ids_by_path.values())

    wanted = {d["notification_id"] for d in deliveries}

    def reported() -> dict[str, set[uuid.UUID]] | None:
        # Distinct event ids: the relay may publish a row twice after a crash (same event id,
        # which consumers drop); a second *event* for one notification would be the bug.
        topic = topic_name(Topic.NOTIFICATIONS, service_env["KAFKA_TOPIC_PREFIX"])
        by_notification: dict[str, set[uuid.UUID]] = collections.defaultdict(set)
        for _, _, e in read_topic(service_env["KAFKA_BOOTSTRAP_SERVERS"], topic):
            if isinstance(e, Envelope) and e.type == "NotificationDelivered":
                by_notification[e.payload["notification_id"]].add(e.event_id)
        return by_notification if set(by_notification) >= wanted else None

    by_notification = wait_until("every NotificationDelivered on the topic", reported)
    assert set(by_notification) == wanted
    assert {len(ids) for ids in by_notification.values()} == {1}, "each notification reported delivered once"


def test_a_reversal_after_close_keeps_its_webhook_id_across_a_sigkill_and_the_projection_survives(
    notifier: ServiceProcesses, service_env: dict[str, str]
) -> None:
    receiver = WebhookReceiver()
    base = receiver.start()
    api = httpx.Client(base_url=notifier.url("notifier"), timeout=10)
    bootstrap = service_env["KAFKA_BOOTSTRAP_SERVERS"]
    topic = topic_name(Topic.REDEMPTIONS, service_env["KAFKA_TOPIC_PREFIX"])
    try:
        site = uuid.uuid4()
        r = api.post("/webhooks", json={"url": f"{base}/rv"}, headers=auth(Role.SITE, str(site)))
        receiver.secrets["/rv"] = r.json()["secret"]
        first, second = redeemed(site, 1), redeemed(site, 1)
        # As in the statement test: a 500, then the retry held on the wire while SIGKILL lands.
        receiver.responses["/rv"] = [500]
        receiver.delays["/rv"] = [0.0, 4.0]
        send(bootstrap, topic, as_redemption_events([first, second, reversed_in(first, 2)]))
        wait_until("the reversal's retry on the wire", lambda: len(receiver.received) >= 2)
        notifier.kill("notifier", signal.SIGKILL)
        assert not notifier.running("notifier")
        notifier.start("notifier")
        notifier.wait_ready("notifier")
        # `second` was redeemed before the kill: its late reversal is decided from the
        # projection the notifier kept in its database.
        send(bootstrap, topic, as_redemption_events([reversed_in(second, 2)]))

        def both_delivered() -> list[dict[str, object]] | None:
            rows = api.get("/deliveries", params={"kind": "reversal"}, headers=FINANCE).json()
            mine = [d for d in rows if d["site_id"] == str(site)]
            return mine if len(mine) == 2 and all(d["status"] == "delivered" for d in mine) else None

        deliveries = wait_until("both reversals delivered", both_delivered)
    finally:
        receiver.stop()
        api.close()

    by_reversal = collections.defaultdict(set)
    for hit in receiver.received:
        assert hit.verified
        by_reversal[hit.payload["data"]["reversal_id"]].add(hit.headers["webhook-id"])
    assert len(by_reversal) == 2 and all(len(ids) == 1 for ids in by_reversal.values()), by_reversal
    assert {d["notification_id"] for d in deliveries} == set().union(*by_reversal.values())
    assert len(receiver.received) >= 4, "the killed retry was sent again after the restart"

    def reported() -> dict[str, set[uuid.UUID]] | None:
        topic = topic_name(Topic.NOTIFICATIONS, service_env["KAFKA_TOPIC_PREFIX"])
        by_notification: dict[str, set[uuid.UUID]] = collections.defaultdict(set)
        for _, _, e in read_topic(bootstrap, topic):
            if isinstance(e, Envelope) and e.type == "ReversalNotificationDelivered":
                by_notification[e.payload["notification_id"]].add(e.event_id)
        return by_notification if len(by_notification) >= 2 else None

    by_notification = wait_until("both ReversalNotificationDelivered on the topic", reported)
    assert set(by_notification) == {d["notification_id"] for d in deliveries}
    assert {len(ids) for ids in by_notification.values()} == {1}
