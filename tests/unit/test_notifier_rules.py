"""The notifier's pure rules: ids, retry schedule, secret overlap, disabling, French messages."""

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from services.notifier.domain.messages import (
    FunderStatementFacts,
    ReversalFacts,
    SiteStatementFacts,
    funder_statement_email,
    reversal_email,
    site_statement_email,
)
from services.notifier.domain.schedule import (
    endpoint_disable_reason,
    is_last_attempt,
    next_attempt,
    notification_id,
    reversal_after_close,
    signing_secrets,
    site_contact_channel,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
STATEMENT, ENDPOINT = uuid.UUID(int=1), uuid.UUID(int=2)


def test_a_notification_id_is_stable_per_statement_and_channel() -> None:
    assert notification_id(STATEMENT, ENDPOINT) == notification_id(STATEMENT, ENDPOINT)
    assert notification_id(STATEMENT, ENDPOINT) != notification_id(STATEMENT, uuid.UUID(int=3))
    assert notification_id(STATEMENT, ENDPOINT).startswith("msg_")
    assert site_contact_channel(ENDPOINT) == site_contact_channel(ENDPOINT) != ENDPOINT


def test_retries_follow_the_schedule_then_stop() -> None:
    schedule = (5.0, 300.0, 1800.0)
    assert next_attempt(1, NOW, schedule) == NOW + timedelta(seconds=5)
    assert next_attempt(3, NOW, schedule) == NOW + timedelta(seconds=1800)
    assert next_attempt(4, NOW, schedule) is None


def test_the_previous_secret_signs_only_during_the_overlap() -> None:
    until = NOW + timedelta(hours=1)
    assert signing_secrets(NOW, "new", [("old", until)]) == ("new", "old")
    assert signing_secrets(until, "new", [("old", until)]) == ("new",)
    assert signing_secrets(NOW, "new") == ("new",)


def test_two_quick_rotations_keep_every_secret_still_within_its_overlap() -> None:
    first_until, second_until = NOW + timedelta(hours=1), NOW + timedelta(hours=2)
    retired = [("oldest", first_until), ("middle", second_until)]
    assert signing_secrets(NOW, "newest", retired) == ("newest", "middle", "oldest")
    assert signing_secrets(first_until, "newest", retired) == ("newest", "middle")
    assert signing_secrets(second_until, "newest", retired) == ("newest",)
    assert signing_secrets(NOW, "same", [("same", first_until)]) == ("same",)


def test_only_the_schedule_s_last_attempt_is_the_last() -> None:
    schedule = (5.0, 300.0, 1800.0)
    assert [is_last_attempt(made, schedule) for made in range(5)] == [False, False, False, True, True]
    # the same count as next_attempt: after the last attempt there is no next one
    assert next_attempt(4, NOW, schedule) is None and next_attempt(3, NOW, schedule) is not None


def test_a_reversal_is_told_only_when_its_redemption_s_window_had_closed() -> None:
    assert reversal_after_close(redemption_window=3, reversal_window=4)
    assert reversal_after_close(redemption_window=1, reversal_window=5)
    assert not reversal_after_close(redemption_window=4, reversal_window=4)


def test_the_reversal_email_says_what_comes_off_which_statement() -> None:
    email = reversal_email(
        ReversalFacts(
            reversal_id="rv-1",
            redemption_id="rd-1",
            pass_id="p-1",
            amount_cents=1000,
            redemption_window_id=3,
            deducted_from_window_id=4,
            reason="atelier annulé",
            reversed_on=date(2026, 12, 3),
        )
    )
    assert "-10,00 €" in email.subject and "période n° 4" in email.subject
    assert "Déduit du relevé : période n° 4" in email.text and "période n° 3 (close)" in email.text
    assert "rd-1" in email.text and "atelier annulé" in email.html and "03/12/2026" in email.text


def test_a_statement_email_without_its_pdf_says_so() -> None:
    facts = SiteStatementFacts(
        "st-9", 4, date(2026, 10, 1), date(2026, 10, 31), 100, 1, 0, date(2026, 11, 15)
    )
    assert "joint en PDF" in site_statement_email(facts).text
    missing = site_statement_email(facts, pdf_attached=False).text
    assert "n'a pas pu être joint" in missing and "st-9" in missing


def test_smtp_refusals_lose_the_address_before_they_go_on_kafka() -> None:
    from services.notifier.email import without_addresses

    reason = without_addresses(
        "SMTPRecipientsRefused: {'compta@epn-dole.fr': (550, b'<compta@epn-dole.fr> unknown')}"
    )
    assert "@" not in reason and "550" in reason


def test_a_receiver_verifies_with_either_secret_during_a_rotation() -> None:
    from services.notifier.webhooks import signed_headers

    secrets = ("whsec_" + "A" * 43 + "=", "whsec_" + "B" * 43 + "=")
    body = '{"type":"statement.issued"}'
    headers = signed_headers(secrets, "msg_1", body, datetime.now(UTC))
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in secrets:
        assert Webhook(secret).verify(body, headers) == {"type": "statement.issued"}
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "C" * 43 + "=").verify(body, headers)


def test_an_endpoint_is_disabled_after_the_threshold_with_a_reason() -> None:
    assert endpoint_disable_reason(2, 3, "HTTP 500") is None
    reason = endpoint_disable_reason(3, 3, "HTTP 500")
    assert reason is not None and "3" in reason and "HTTP 500" in reason
    assert endpoint_disable_reason(10, 0, "HTTP 500") is None  # 0 turns disabling off


def test_the_site_email_is_french_in_text_and_html() -> None:
    email = site_statement_email(
        SiteStatementFacts(
            statement_id="st-1",
            window_id=4,
            period_start=date(2026, 10, 1),
            period_end=date(2026, 10, 31),
            amount_cents=12000,
            passes=12,
            reversals=1,
            expected_payout_date=date(2026, 11, 15),
        )
    )
    assert "120,00 €" in email.subject
    assert "du 01/10/2026 au 31/10/2026" in email.text and "15/11/2026" in email.text
    assert "<table>" in email.html and "Pass encaissés" in email.html and "120,00 €" in email.html


def test_the_call_for_funds_e_mail_says_which_of_clearing_s_documents_it_carries() -> None:
    facts = FunderStatementFacts("fs-1", 7, 600, 3)
    email = funder_statement_email(facts)
    assert "appel de fonds" in email.subject and "6,00 €" in email.subject and "6,00 €" in email.text
    assert "est joint (CSV et PDF)" in email.text and "n'a pas pu" not in email.text
    none = funder_statement_email(facts, attached=())
    assert "n'a pas pu être joint" in none.text and "appel de fonds fs-1, en CSV et en PDF" in none.text
    assert "6,00 €" in none.text  # the figures to pay from are there all the same
    only_csv = funder_statement_email(facts, attached=("CSV",))
    assert "joint en CSV ; le PDF n'a pas pu être joint" in only_csv.text
    assert "n&#x27;a pas pu être joint" in only_csv.html
