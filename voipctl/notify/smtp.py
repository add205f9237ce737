"""Sending one email: SMTP (none, STARTTLS or TLS, optional login), or a file per email.

With `[email] capture_dir` set, each email is written there as an `.eml` file
instead of being sent (the demo, trials). The SMTP password is read from the
environment variable `password_env` names, only when a login is configured, and
never appears in an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

from voipctl.config import EmailConfig, secret
from voipctl.errors import VoipctlError
from voipctl.private import private_dir, write_private

log = logging.getLogger(__name__)


class DeliveryError(VoipctlError):
    """The SMTP server could not be reached or did not accept an email."""

    def __init__(self, message: str, *, connection: bool = False):
        # connection=True: the server itself is down; the other emails would fail too.
        self.connection = connection
        super().__init__(message)


def message_id(dedupe_key: str) -> str:
    """A Message-ID fixed by the decision, so a resend is recognisable as the same email."""
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]
    return f"<{digest}@voipctl>"


def build_message(
    *,
    sender: str,
    recipient: str,
    subject: str,
    text: str,
    html: str | None = None,
    dedupe_key: str,
    created_epoch: float | None = None,
) -> EmailMessage:
    """The RFC 5322 message of one outbox row (Bcc is envelope only, never a header)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Date"] = formatdate(created_epoch, localtime=False)
    msg["Message-ID"] = message_id(dedupe_key)
    msg.set_content(text)
    if html:
        msg.add_alternative(html, subtype="html")
    return msg


class Mailer:
    """One SMTP connection for a delivery run (or a capture directory); use as a context."""

    def __init__(self, config: EmailConfig):
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        if self.config.capture_dir is not None:
            return str(self.config.capture_dir)
        return f"smtp {self.config.smtp_host}:{self.config.smtp_port}"

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        password = secret(cfg.password_env, what="email.password_env") if cfg.username else None
        context = ssl.create_default_context()
        try:
            if cfg.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s, context=context
                )
            else:
                smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s)
            smtp.ehlo()
            if cfg.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if cfg.username:
                smtp.login(cfg.username, password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"{self.where}: login as {cfg.username!r} refused ({exc.smtp_code})",
                connection=True,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"{self.where}: cannot connect: {_reason(exc)}", connection=True
            ) from None
        return smtp

    def send(self, msg: EmailMessage, recipients: list[str], *, capture_name: str) -> str:
        """Hand one message over; returns where it went. Raises DeliveryError."""
        if self.config.capture_dir is not None:
            return self._capture(msg, capture_name)
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            refused = self._smtp.send_message(msg, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"{self.where}: recipients refused: {sorted(exc.recipients)}"
            ) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._smtp = None
            raise DeliveryError(
                f"{self.where}: connection lost: {_reason(exc)}", connection=True
            ) from None
        except smtplib.SMTPException as exc:
            raise DeliveryError(f"{self.where}: not accepted: {_reason(exc)}") from None
        if refused:
            # Accepted for some recipients: it was sent; a retry would duplicate it for the others.
            log.warning("%s: some recipients refused: %s", self.where, sorted(refused))
        return self.where

    def _capture(self, msg: EmailMessage, name: str) -> str:
        directory = Path(self.config.capture_dir)
        try:
            private_dir(directory)
            path = directory / f"{name}.eml"
            write_private(path, msg.as_bytes())
        except OSError as exc:
            raise DeliveryError(f"{directory}: cannot write the email: {exc.strerror}") from None
        return str(path)

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._smtp = None

    def __enter__(self) -> Mailer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else exc.smtp_error
        )
        return f"{exc.smtp_code} {detail}".strip()
    return str(exc) or type(exc).__name__
