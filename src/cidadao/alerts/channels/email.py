"""E-mail over SMTP (STARTTLS, SSL or plain for a local relay): plain text and HTML from templates."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

from cidadao.alerts.channels.base import Channel, Delivery, DeliveryError, min_rank_for, register, short_hash
from cidadao.alerts.render import render, subject
from cidadao.alerts.security import one_line, redact
from cidadao.config import Settings


def build_message(delivery: Delivery, sender: str, recipient: str) -> EmailMessage:
    message = EmailMessage()
    # one_line: finding text can never add a header; EmailMessage would also refuse CR/LF.
    message["Subject"] = one_line(subject(delivery.payload), 200)
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = formatdate(usegmt=True)
    # Stable across redeliveries, so mail clients collapse a duplicate after a dispatcher crash.
    message["Message-ID"] = f"<{delivery.key.replace(':', '.')}@cidadao.ai>"
    message["X-Cidadao-Alert-Id"] = delivery.key
    message.set_content(render(delivery.payload, "txt"))
    message.add_alternative(render(delivery.payload, "html"), subtype="html")
    return message


class EmailChannel(Channel):
    kind = "email"

    def __init__(self, slug: str, min_rank: int, recipient: str, settings: Settings) -> None:
        super().__init__(slug, min_rank)
        self._recipient = recipient
        self._settings = settings

    def send(self, delivery: Delivery) -> None:
        s = self._settings
        password = s.smtp_password.get_secret_value() if s.smtp_password else None
        message = build_message(delivery, s.smtp_from, self._recipient)
        context = ssl.create_default_context()
        host = s.smtp_host or "localhost"
        try:
            smtp: smtplib.SMTP
            if s.smtp_security == "ssl":
                smtp = smtplib.SMTP_SSL(host, s.smtp_port, timeout=s.alert_timeout_seconds, context=context)
            else:
                smtp = smtplib.SMTP(host, s.smtp_port, timeout=s.alert_timeout_seconds)
            with smtp:
                if s.smtp_security == "starttls":
                    smtp.starttls(context=context)
                if s.smtp_user and password:
                    smtp.login(s.smtp_user, password)
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            raise DeliveryError(f"recipient refused: {error.recipients}", permanent=True) from None
        except smtplib.SMTPResponseException as error:
            reason = redact(f"SMTP {error.smtp_code}: {error.smtp_error!r}", [password])
            raise DeliveryError(reason, permanent=500 <= error.smtp_code < 600) from None
        except (OSError, smtplib.SMTPException) as error:
            raise DeliveryError(redact(f"{type(error).__name__}: {error}", [password])) from None


@register("email")
def _email_channels(settings: Settings) -> Sequence[Channel]:
    rank = min_rank_for(settings, "email")
    # One channel per address: each recipient gets each alert once, and one bad address fails alone.
    return [
        EmailChannel(f"email:{short_hash(address)}", rank, address, settings)
        for address in settings.alert_emails
    ]
