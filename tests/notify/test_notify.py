"""Email templates (sandboxed), the WHMCS importer, the outbox and SMTP delivery."""

from __future__ import annotations

import email
import ssl
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select

from tests.support.billing_data import add_client
from tests.support.smtp_sink import SmtpSink, free_port
from voipctl.config import EmailConfig
from voipctl.errors import DataError
from voipctl.notify import outbox
from voipctl.notify.templates import (
    LOW_BALANCE_ALERT,
    VOIP_ZERO_BALANCE,
    TemplateError,
    Templates,
    client_variables,
    convert_whmcs,
)
from voipctl.store.models import OutboxEmail


def _vars(session) -> dict:
    client = add_client(session, 42, first_name="Grace", low_balance_threshold=Decimal("5"))
    return client_variables(client, credit=Decimal("1.2345"), owing=Decimal("10"))


def test_default_templates_greet_by_first_name_and_state_the_amounts(store):
    with store.transaction() as s:
        variables = _vars(s)
    alert = Templates().render(LOW_BALANCE_ALERT, variables)
    assert alert.subject == "Low balance alert: your VoIP credit is 1.2345 CAD"
    assert alert.text.startswith("Dear Grace,")
    assert "threshold of 5.00 CAD" in alert.text
    zero = Templates().render(VOIP_ZERO_BALANCE, variables)
    assert "Credit: 1.2345 CAD" in zero.text and "Amount owing: 10.00 CAD" in zero.text
    assert "top up" in zero.text


def test_a_templates_dir_file_overrides_only_that_file(tmp_path, store):
    (tmp_path / "low_balance_alert.txt").write_text(
        "Hi {{ client_first_name }}: {{ client_credit }}"
    )
    (tmp_path / "low_balance_alert.html").write_text("<p>{{ client_name }}</p>")
    with store.transaction() as s:
        variables = _vars(s)
        variables["client_name"] = "<b>Grace</b>"
    rendered = Templates(tmp_path).render(LOW_BALANCE_ALERT, variables)
    assert rendered.text == "Hi Grace: 1.2345"
    assert rendered.subject.startswith("Low balance alert")  # the default subject
    assert rendered.html == "<p>&lt;b&gt;Grace&lt;/b&gt;</p>"  # HTML is escaped


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ client_name['__class__'] }}",
        "{{ client_name|attr('__class__') }}",
        "{{ cycler.__init__.__globals__ }}",
        "{% for c in ''.__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ],
)
def test_a_template_reaching_for_python_internals_is_refused(tmp_path, store, source):
    (tmp_path / "low_balance_alert.txt").write_text(f"Dear x,\n{source}\n")
    with store.transaction() as s:
        variables = _vars(s)
    with pytest.raises(TemplateError, match="refused") as err:
        Templates(tmp_path).render(LOW_BALANCE_ALERT, variables)
    assert "low_balance_alert.txt" in str(err.value)
    assert isinstance(err.value, DataError)


def test_an_undefined_variable_is_an_error_naming_it(tmp_path, store):
    (tmp_path / "voip_zero_balance.txt").write_text("Hello {{ client_nickname }}")
    with store.transaction() as s:
        variables = _vars(s)
    with pytest.raises(TemplateError, match="'client_nickname' is undefined"):
        Templates(tmp_path).render(VOIP_ZERO_BALANCE, variables)


def test_whmcs_templates_are_converted():
    source = (
        "Dear {$client_first_name},\n"
        "{* internal note *}Your credit is {$client_credit} {$currency}.\n"
        "{if $client_due_invoices_balance}You owe {$client_due_invoices_balance}.{else}"
        "Nothing owing.{/if}\n"
        "Keep {{ this }} as text. {literal}{not a tag}{/literal}\n"
    )
    converted = convert_whmcs(source, where="t.tpl")
    out = (
        Templates()
        .env.from_string(converted)
        .render(
            client_first_name="Grace",
            client_credit="1.00",
            currency="CAD",
            client_due_invoices_balance="",
        )
    )
    assert out == (
        "Dear Grace,\nYour credit is 1.00 CAD.\nNothing owing.\n"
        "Keep {{ this }} as text. {not a tag}\n"
    )


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Hi {$client_firstname}", r"t.tpl:1: unknown variable \$client_firstname"),
        ("Hi\n{$client_credit|number_format:2}", r"t.tpl:2: Smarty tag .* cannot be converted"),
        ("{foreach $x as $y}{/foreach}", r"t.tpl:1: Smarty tag"),
    ],
)
def test_whmcs_conversion_refuses_what_it_cannot_fill(source, message):
    with pytest.raises(TemplateError, match=message):
        convert_whmcs(source, where="t.tpl")


def test_template_import_command_writes_a_working_template(cli, tmp_path):
    tpl = tmp_path / "whmcs_low.tpl"
    tpl.write_text("Dear {$client_first_name}, credit {$client_credit}.\n")
    dest = tmp_path / "templates"
    r = cli(
        "template", "import", tpl, "low_balance_alert", "--subject", "Low: {$client_credit}",
        "--dir", dest,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (dest / "low_balance_alert.txt").read_text() == (
        "Dear {{ client_first_name }}, credit {{ client_credit }}.\n"
    )
    assert (dest / "low_balance_alert.subject").read_text() == "Low: {{ client_credit }}"
    bad = tmp_path / "bad.tpl"
    bad.write_text("{$nope}")
    r = cli("template", "import", bad, "low_balance_alert", "--dir", dest)
    assert r.exit_code == 1
    assert "bad.tpl:1: unknown variable $nope" in r.stderr


def test_template_show_refuses_an_unsafe_override(cli, tmp_path):
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "low_balance_alert.txt").write_text("{{ ''.__class__ }}")
    config = tmp_path / "voipctl.toml"
    config.write_text(f'[email]\ntemplates_dir = "{tdir}"\n')
    r = cli("template", "show", "low_balance_alert", config=config)
    assert r.exit_code == 1
    assert "refused" in r.stderr and "__class__" in r.stderr
    assert "Traceback" not in r.output


# --- outbox and SMTP -----------------------------------------------------------------


def _queue(store, key: str, recipient: str = "a@example.com") -> bool:
    with store.transaction() as s:
        return outbox.queue(
            s,
            template="low_balance_alert",
            dedupe_key=key,
            recipient=recipient,
            subject=f"subject {key}",
            body_text="body",
            bcc="noc@example.com",
        )


def test_a_decision_is_queued_once(store):
    assert _queue(store, "k1") is True
    assert _queue(store, "k1") is False
    with store.transaction() as s:
        assert len(s.scalars(select(OutboxEmail)).all()) == 1


def test_delivery_marks_sent_only_after_acceptance_and_an_outage_loses_nothing(store):
    with SmtpSink() as sink:
        config = EmailConfig(smtp_host=sink.host, smtp_port=sink.port, timeout_s=5)
        _queue(store, "k1")
        sink.stop()  # the outage
        down = outbox.deliver_pending(store, config)
        assert (down.sent, down.failed) == (0, 1)
        assert "cannot connect" in down.errors[0] and "will retry next run" in down.errors[0]
        with store.transaction() as s:
            row = s.scalar(select(OutboxEmail))
            assert row.sent_at is None and row.attempts == 1 and "cannot connect" in row.last_error
        sink.start()
        _queue(store, "k2", "b@example.com")
        up = outbox.deliver_pending(store, config)
        assert (up.sent, up.failed) == (2, 0)
        again = outbox.deliver_pending(store, config)
        assert again.sent == 0
        assert sink.received == 2
        first = sink.messages[0]
        assert first["Subject"] == "subject k1" and first["To"] == "a@example.com"
        assert "Bcc" not in first  # envelope only
        assert sink.handler.envelopes[0][1] == ["a@example.com", "noc@example.com"]
        assert first["Message-ID"].endswith("@voipctl>")


def test_capture_dir_writes_one_file_per_email(store, tmp_path):
    _queue(store, "k1")
    config = EmailConfig(capture_dir=tmp_path / "mail")
    assert outbox.deliver_pending(store, config).sent == 1
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert [f.name for f in files] == ["000001-low_balance_alert.eml"]
    msg = email.message_from_bytes(files[0].read_bytes())
    assert msg["Subject"] == "subject k1"
    assert outbox.deliver_pending(store, config).sent == 0


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class _Keep:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append((session.authenticated, envelope.original_content))
        return "250 OK"


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_starttls_and_tls_with_login(store, tmp_path, monkeypatch, security):
    cert, key = _self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts only this certificate
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    handler = _Keep()
    port = free_port()
    # Implicit TLS wraps the socket below aiosmtpd, which then cannot tell it is encrypted.
    kwargs = {"authenticator": authenticator, "auth_require_tls": security == "starttls"}
    if security == "tls":
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, ssl_context=server_ctx, **kwargs
        )
    else:
        controller = Controller(
            handler, hostname="127.0.0.1", port=port, tls_context=server_ctx, **kwargs
        )
    controller.start()
    try:
        _queue(store, "k1")
        config = EmailConfig(
            smtp_host="127.0.0.1",
            smtp_port=port,
            security=security,
            username="billing",
            password_env="TEST_SMTP_PASSWORD",
            timeout_s=5,
        )
        result = outbox.deliver_pending(store, config)
        assert (result.sent, result.errors) == (1, []), result.errors
        assert logins == [(b"billing", b"s3cret")]
        assert handler.messages[0][0] is True
    finally:
        controller.stop()


def test_a_second_delivery_at_the_same_time_leaves_the_outbox_to_the_first(store, tmp_path):
    from voipctl.store.locks import job_lock

    _queue(store, "k1")
    config = EmailConfig(capture_dir=tmp_path / "mail")
    with job_lock(store, outbox.OUTBOX_LOCK):  # another job is delivering
        result = outbox.deliver_pending(store, config)
    assert result.skipped and result.sent == 0
    assert not (tmp_path / "mail").exists()
    assert outbox.deliver_pending(store, config).sent == 1


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_captured_emails_are_private_whatever_the_umask(store, tmp_path, umask0):
    _queue(store, "k1")
    config = EmailConfig(capture_dir=tmp_path / "spool" / "mail")
    assert outbox.deliver_pending(store, config).sent == 1
    (eml,) = (tmp_path / "spool" / "mail").glob("*.eml")
    assert _mode(eml) == 0o600
    assert _mode(tmp_path / "spool" / "mail") == 0o700
    assert _mode(tmp_path / "spool") == 0o700


def test_imported_templates_are_private_whatever_the_umask(cli, tmp_path, umask0):
    tpl = tmp_path / "whmcs_low.tpl"
    tpl.write_text("Dear {$client_first_name}.\n")
    dest = tmp_path / "etc" / "templates"
    r = cli(
        "template", "import", tpl, "low_balance_alert", "--subject", "Low", "--dir", dest
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert _mode(dest / "low_balance_alert.txt") == 0o600
    assert _mode(dest / "low_balance_alert.subject") == 0o600
    assert _mode(dest) == 0o700 and _mode(dest.parent) == 0o700
