"""Sends due e-mail deliveries through the configured SMTP server: French plain text + HTML,
with the call for funds attached (CSV and PDF) for funders' finance teams.

Same discipline as the webhooks: claimed with FOR UPDATE SKIP LOCKED, every attempt recorded,
retries on the schedule, the outcome and its event committed together."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import smtplib
from datetime import date, datetime
from email.message import EmailMessage
from uuid import UUID

import asyncpg
import httpx

from services.common.runtime import Runtime
from services.notifier.clearing_client import ClearingStatements, StatementPdfUnavailable
from services.notifier.domain.messages import (
    Email,
    FunderLine,
    FunderStatementFacts,
    ReversalFacts,
    SiteStatementFacts,
    funder_statement_csv,
    funder_statement_email,
    reversal_email,
    site_statement_email,
)
from services.notifier.domain.schedule import is_last_attempt
from services.notifier.issuer_client import ContactUnavailable, IssuerContacts
from services.notifier.outcomes import DELIVERY_COLUMNS, record_outcome
from services.notifier.pdf import funder_statement_pdf
from services.notifier.settings import NotifierSettings, SmtpSettings

Attachment = tuple[str, str, str, bytes]  # filename, maintype, subtype, content


# An SMTP server's refusal may quote the recipient; the reason goes on Kafka (NotificationFailed),
# where no e-mail address may travel (invariant 6).
ADDRESS = re.compile(r"[^\s'\"<>(),;:\[\]{}]+@[^\s'\"<>(),;:\[\]{}]+")


def without_addresses(text: str) -> str:
    return ADDRESS.sub("<adresse>", text)


class NotReady(Exception):
    """The message cannot be built yet (a funder's site lines still arriving): try again soon,
    without spending an attempt."""


class EmailSender:
    def __init__(self, rt: Runtime, settings: NotifierSettings, smtp: SmtpSettings) -> None:
        self._rt = rt
        self._settings = settings
        self._smtp = smtp

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self._settings.timeout_seconds) as client:
            contacts, statements = IssuerContacts(client), ClearingStatements(client)
            while not stop.is_set():
                sent = await self.send_due(contacts, statements)
                if sent == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._settings.poll_seconds)

    async def send_due(self, contacts: IssuerContacts, statements: ClearingStatements) -> int:
        async with self._rt.pool.acquire() as conn, conn.transaction():
            due = await conn.fetch(
                f"SELECT {DELIVERY_COLUMNS} FROM deliveries d "
                "WHERE d.channel = 'email' AND d.status = 'pending' AND d.next_attempt_at <= now() "
                "ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED",
                self._settings.batch_size,
            )
            for row in due:
                try:
                    error = await self._send(conn, contacts, statements, row)
                except NotReady:
                    await conn.execute(
                        "UPDATE deliveries SET next_attempt_at = now() + interval '1 second' "
                        "WHERE notification_id = $1",
                        row["notification_id"],
                    )
                    continue
                await record_outcome(conn, self._rt, self._settings, row, error)
        return len(due)

    async def _send(
        self,
        conn: asyncpg.Connection,
        contacts: IssuerContacts,
        statements: ClearingStatements,
        row: asyncpg.Record,
    ) -> str | None:
        try:
            to = await self._recipient(conn, contacts, row)
        except ContactUnavailable as exc:
            return str(exc)[:500]
        attachments: list[Attachment] = []
        if row["kind"] == "funder_statement":
            content, attachments = await self._funder_message(conn, row)
        elif row["kind"] == "reversal":
            content = self._reversal_message(row)
        else:
            try:
                attachments = [await self._statement_pdf(statements, row)]
            except StatementPdfUnavailable as exc:
                # A site files the PDF with its accounts, so a statement e-mail without it is
                # not what it expects: while clearing cannot give it, the attempt counts as
                # failed and the e-mail is retried on the schedule. Only the schedule's last
                # attempt goes without it (saying so): the figures in the body and the payout
                # date matter more than the attachment, and a dead letter would tell nothing.
                if not is_last_attempt(row["attempts"], self._settings.retry_schedule):
                    return f"statement PDF unavailable: {exc}"[:500]
            content = self._site_message(row, pdf_attached=bool(attachments))
        message = self._message(to, row["notification_id"], content, attachments)
        try:
            await asyncio.to_thread(self._deliver, message)
        except (smtplib.SMTPException, OSError) as exc:
            return without_addresses(f"{type(exc).__name__}: {exc}")[:500]
        return None

    async def _statement_pdf(self, statements: ClearingStatements, row: asyncpg.Record) -> Attachment:
        pdf = await statements.statement_pdf(row["statement_id"])
        return (f"releve-{row['statement_id']}.pdf", "application", "pdf", pdf)

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

    async def _funder_message(
        self, conn: asyncpg.Connection, row: asyncpg.Record
    ) -> tuple[Email, list[Attachment]]:
        fs = json.loads(row["body"])
        lines = [
            FunderLine(r["statement_id"], r["site_id"], r["amount_cents"])
            for r in await conn.fetch(
                "SELECT statement_id, site_id, amount_cents FROM funder_statement_lines "
                "WHERE window_id = $1 AND funder_id = $2",
                row["window_id"],
                row["funder_id"],
            )
        ]
        if len(lines) < fs["statements"]:
            raise NotReady  # the site statements travel on other partitions; they are coming
        facts = FunderStatementFacts(
            fs["funder_statement_id"], fs["window_id"], fs["amount_cents"], fs["statements"]
        )
        stem = f"appel-de-fonds-{fs['window_id']}-{fs['funder_id']}"
        csv_text = funder_statement_csv(fs["window_id"], UUID(fs["funder_id"]), lines)
        pdf = funder_statement_pdf(facts, fs["funder_id"], lines)
        return funder_statement_email(facts), [
            (f"{stem}.csv", "text", "csv", csv_text.encode()),
            (f"{stem}.pdf", "application", "pdf", pdf),
        ]

    def _message(
        self, to: str, notification_id: str, content: Email, attachments: list[Attachment]
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._smtp.sender
        message["To"] = to
        message["Subject"] = content.subject
        # Stable across retries, like the webhook-id: a mail client may dedupe on it.
        message["Message-ID"] = f"<{notification_id}@passclear.fr>"
        message.set_content(content.text)
        message.add_alternative(content.html, subtype="html")
        for filename, maintype, subtype, data in attachments:
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
        return message

    def _deliver(self, message: EmailMessage) -> None:
        s = self._smtp
        with smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds) as smtp:
            if s.starttls:
                smtp.starttls()
            if s.username:
                smtp.login(s.username, s.password)
            smtp.send_message(message)
