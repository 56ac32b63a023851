"""Sends due e-mail deliveries through the configured SMTP server: French plain text + HTML,
with clearing's documents attached: a site's statement PDF, a funder's call for funds (CSV and
PDF), each exactly as clearing serves it.

Same discipline as the webhooks: claimed with FOR UPDATE SKIP LOCKED, every attempt recorded,
retries on the schedule, the outcome and its event committed together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import smtplib
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from email.message import EmailMessage
from uuid import UUID

import asyncpg
import httpx

from services.common.runtime import Runtime
from services.notifier.clearing_client import ClearingDocuments, Document, DocumentUnavailable
from services.notifier.domain.messages import (
    Email,
    FunderStatementFacts,
    ReversalFacts,
    SiteStatementFacts,
    funder_statement_email,
    reversal_email,
    site_statement_email,
)
from services.notifier.domain.schedule import is_last_attempt
from services.notifier.issuer_client import ContactUnavailable, IssuerContacts
from services.notifier.outcomes import DELIVERY_COLUMNS, record_outcome
from services.notifier.settings import NotifierSettings, SmtpSettings

# An SMTP server's refusal may quote the recipient; the reason goes on Kafka (NotificationFailed),
# where no e-mail address may travel (invariant 6).
ADDRESS = re.compile(r"[^\s'\"<>(),;:\[\]{}]+@[^\s'\"<>(),;:\[\]{}]+")


def without_addresses(text: str) -> str:
    return ADDRESS.sub("<adresse>", text)


class EmailSender:
    def __init__(self, rt: Runtime, settings: NotifierSettings, smtp: SmtpSettings) -> None:
        self._rt = rt
        self._settings = settings
        self._smtp = smtp

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self._settings.timeout_seconds) as client:
            contacts, documents = IssuerContacts(client), ClearingDocuments(client)
            while not stop.is_set():
                sent = await self.send_due(contacts, documents)
                if sent == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._settings.poll_seconds)

    async def send_due(self, contacts: IssuerContacts, documents: ClearingDocuments) -> int:
        async with self._rt.pool.acquire() as conn, conn.transaction():
            due = await conn.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries d "
                "WHERE d.channel = 'email' AND d.status = 'pending' AND d.next_attempt_at <= now() "
                "ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED",
                self._settings.batch_size,
            )
            for row in due:
                error = await self._send(conn, contacts, documents, row)
                await record_outcome(conn, self._rt, self._settings, row, error)
        return len(due)

    async def _send(
        self,
        conn: asyncpg.Connection,
        contacts: IssuerContacts,
        documents: ClearingDocuments,
        row: asyncpg.Record,
    ) -> str | None:
        try:
            to = await self._recipient(conn, contacts, row)
            content, attachments = await self._content(documents, row)
        except (ContactUnavailable, DocumentUnavailable) as exc:
            return str(exc)[:500]
        message = self._message(to, row["notification_id"], content, attachments)
        try:
            await asyncio.to_thread(self._deliver, message)
        except (smtplib.SMTPException, OSError) as exc:
            return without_addresses(f"{type(exc).__name__}: {exc}")[:500]
        return None

    async def _content(
        self, documents: ClearingDocuments, row: asyncpg.Record
    ) -> tuple[Email, list[Document]]:
        if row["kind"] == "reversal":
            return self._reversal_message(row), []
        if row["kind"] == "funder_statement":
            return await self._call_for_funds(documents, row)
        attached = await self._attachments(
            row, "statement PDF", [lambda: documents.statement_pdf(row["statement_id"])]
        )
        return self._site_message(row, pdf_attached=bool(attached)), attached

    async def _call_for_funds(
        self, documents: ClearingDocuments, row: asyncpg.Record
    ) -> tuple[Email, list[Document]]:
        fs = json.loads(row["body"])
        fs_id, funder = UUID(fs["funder_statement_id"]), UUID(fs["funder_id"])
        fetches = [
            lambda: documents.funder_statement_csv(fs_id, funder),
            lambda: documents.funder_statement_pdf(fs_id, funder),
        ]
        attached = await self._attachments(row, "call for funds documents", fetches)
        facts = FunderStatementFacts(str(fs_id), fs["window_id"], fs["amount_cents"], fs["statements"])
        formats = tuple(a.subtype.upper() for a in attached)  # CSV, PDF
        return funder_statement_email(facts, attached=formats), attached

    async def _attachments(
        self, row: asyncpg.Record, what: str, fetches: Sequence[Callable[[], Awaitable[Document]]]
    ) -> list[Document]:
        """Clearing's documents for this e-mail. A site files its statement PDF with its accounts,
        a funder's finance team pays from its call for funds and files the detail, so an e-mail
        without them is not what they expect: while clearing cannot give one, the attempt counts
        as failed and the e-mail is retried on the schedule. Only the schedule's last attempt goes
        with what it got, saying what is missing and where it stays available: the figures in the
        body (the amount to be paid or to pay, the payout date, the reference) matter more than
        the attachment, and a dead letter would tell the reader nothing at all."""
        got: list[Document] = []
        for fetch in fetches:
            try:
                got.append(await fetch())
            except DocumentUnavailable as exc:
                if not is_last_attempt(row["attempts"], self._settings.retry_schedule):
                    raise DocumentUnavailable(f"{what} unavailable: {exc}") from exc
        return got

    async def _recipient(
        self, conn: asyncpg.Connection, contacts: IssuerContacts, row: asyncpg.Record
    ) -> str:
        if row["email_channel_id"] is not None:
            address: str = await conn.fetchval(
                "SELECT address FROM email_channels WHERE channel_id = $1", row["email_channel_id"]
            )
            return address
        if row["funder_id"] is not None:
            funder: str | None = await conn.fetchval(
                "SELECT address FROM funder_contacts WHERE funder_id = $1", row["funder_id"]
            )
            if funder is None:
                raise ContactUnavailable(f"no finance contact registered for funder {row['funder_id']}")
            return funder
        return await contacts.site_contact_email(row["site_id"])

    def _reversal_message(self, row: asyncpg.Record) -> Email:
        data = json.loads(row["body"])["data"]
        return reversal_email(
            ReversalFacts(
                reversal_id=data["reversal_id"],
                redemption_id=data["redemption_id"],
                pass_id=data["pass_id"],
                amount_cents=-data["amount_cents"],
                redemption_window_id=data["redemption_window_id"],
                deducted_from_window_id=data["deducted_from_window_id"],
                reason=data["reason"],
                reversed_on=datetime.fromisoformat(data["reversed_at"]).date(),
            )
        )

    def _site_message(self, row: asyncpg.Record, *, pdf_attached: bool) -> Email:
        data = json.loads(row["body"])["data"]
        return site_statement_email(
            SiteStatementFacts(
                statement_id=data["statement_id"],
                window_id=data["window_id"],
                period_start=datetime.fromisoformat(data["period_start"]).date(),
                period_end=datetime.fromisoformat(data["period_end"]).date(),
                amount_cents=data["amount_cents"],
                passes=data["passes"],
                reversals=data["reversals"],
                expected_payout_date=date.fromisoformat(data["expected_payout_date"]),
            ),
            pdf_attached=pdf_attached,
        )

    def _message(
        self, to: str, notification_id: str, content: Email, attachments: list[Document]
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._smtp.sender
        message["To"] = to
        message["Subject"] = content.subject
        # Stable across retries, like the webhook-id: a mail client may dedupe on it.
        message["Message-ID"] = f"<{notification_id}@passclear.fr>"
        message.set_content(content.text)
        message.add_alternative(content.html, subtype="html")
        for a in attachments:
            message.add_attachment(a.content, maintype=a.maintype, subtype=a.subtype, filename=a.filename)
        return message

    def _deliver(self, message: EmailMessage) -> None:
        s = self._smtp
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.username:
                smtp.login(s.username, s.password)
            smtp.send_message(message)
