"""`voipctl doctor`: one line per check, a failing line (never a crash) for each problem."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.support.smtp_sink import SmtpSink, free_port
from voipctl import doctor as doctor_lib
from voipctl import providers
from voipctl.errors import ProviderAuthError
from voipctl.store import open_store
from voipctl.store.migrate import upgrade


@pytest.fixture
def sink():
    with SmtpSink() as s:
        yield s


def write_config(tmp_path: Path, body: str, mode: int = 0o600) -> Path:
    path = tmp_path / "voipctl.toml"
    path.write_text(body)
    path.chmod(mode)
    return path


def smtp_section(port: int) -> str:
    return f'[email]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\noperator = "noc@example.com"\n'


def lines(stdout: str) -> dict[str, str]:
    """{what: "ok"|"FAIL"} from the doctor's report; asserts each line's shape."""
    out = {}
    for line in stdout.splitlines():
        status, rest = line.split("  ", 1)
        assert status.strip() in ("ok", "FAIL"), line
        what = rest.strip().split("  ")[0]
        out[what] = status.strip()
    return out


def test_a_healthy_installation_is_all_ok(cli, tmp_path, sink):
    config = write_config(tmp_path, smtp_section(sink.port))
    result = cli("doctor", config=config)
    assert result.exit_code == 0, result.output
    got = lines(result.stdout)
    sqlite_only = (
        {"database file mode": "ok"}
        if os.environ.get("VOIPCTL_TEST_DB", "sqlite") == "sqlite"
        else {}
    )
    assert got == {
        "config": "ok",
        "secrets": "ok",
        "config file mode": "ok",
        "database": "ok",
        "schema": "ok",
        **sqlite_only,
        "locks": "ok",
        "currencies": "ok",
        "smtp": "ok",
    }
    assert f"127.0.0.1:{sink.port} answered EHLO" in result.stdout
    assert result.stderr == ""


def test_an_invalid_configuration_is_a_failing_line_not_a_crash(cli, tmp_path):
    config = write_config(tmp_path, "[email]\nsmtp_prot = 25\n")
    result = cli("doctor", config=config)
    assert result.exit_code == 1
    first = result.stdout.splitlines()[0]
    assert first.startswith("FAIL  config")
    assert "email.smtp_prot: unknown key" in first
    assert "Traceback" not in result.output


def test_not_toml_at_all_is_a_failing_line(cli, tmp_path):
    config = write_config(tmp_path, "this is = = not toml\n")
    result = cli("doctor", config=config)
    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL  config")
    assert "not valid TOML" in result.stdout


def test_a_named_but_unset_secret_fails_and_its_value_is_never_shown(
    cli, tmp_path, sink, monkeypatch
):
    body = smtp_section(sink.port).replace(
        "[email]\n", '[email]\npassword_env = "DOCTOR_TEST_SMTP_PASSWORD"\n'
    )
    config = write_config(tmp_path, body)
    monkeypatch.delenv("DOCTOR_TEST_SMTP_PASSWORD", raising=False)
    result = cli("doctor", config=config)
    assert result.exit_code == 1
    assert "DOCTOR_TEST_SMTP_PASSWORD is named but not set" in result.stdout

    monkeypatch.setenv("DOCTOR_TEST_SMTP_PASSWORD", "s3cret-value")
    result = cli("doctor", config=config)
    assert result.exit_code == 0, result.output
    assert "DOCTOR_TEST_SMTP_PASSWORD" in result.stdout
    assert "s3cret-value" not in result.output


def test_files_readable_by_group_or_others_fail(cli, tmp_path, sink):
    config = write_config(tmp_path, smtp_section(sink.port), mode=0o644)
    env = tmp_path / ".env"  # the cli fixture runs in tmp_path: ./.env is read
    env.write_text("SOME_SECRET=x\n")
    env.chmod(0o640)
    result = cli("doctor", config=config)
    assert result.exit_code == 1
    got = lines(result.stdout)
    assert got["config file mode"] == "FAIL"
    assert got[".env file mode"] == "FAIL"
    assert f"chmod 600 {config}" in result.stdout

    config.chmod(0o600)
    env.chmod(0o600)
    result = cli("doctor", config=config)
    assert result.exit_code == 0, result.output
    assert lines(result.stdout)[".env file mode"] == "ok"


def test_a_database_behind_head_fails_with_the_upgrade_hint(tmp_path, sink):
    empty = tmp_path / "empty.db"
    open_store(f"sqlite:///{empty}").engine.connect().close()  # a file with no schema
    config = write_config(tmp_path, smtp_section(sink.port))
    checks = doctor_lib.diagnose(str(config), db_url=f"sqlite:///{empty}")
    by_name = {c.what: c for c in checks}
    assert by_name["database"].ok
    assert not by_name["schema"].ok
    assert "run `voipctl db upgrade`" in by_name["schema"].detail


def test_a_missing_database_file_is_not_created(tmp_path, sink):
    missing = tmp_path / "nowhere" / "voipctl.db"
    config = write_config(tmp_path, smtp_section(sink.port))
    checks = {c.what: c for c in doctor_lib.diagnose(str(config), db_url=f"sqlite:///{missing}")}
    assert not checks["database"].ok
    assert "does not exist" in checks["database"].detail
    assert not checks["locks"].ok
    assert not missing.parent.exists()


def test_an_unreachable_database_server_fails(tmp_path, sink):
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/voipctl"
    config = write_config(tmp_path, smtp_section(sink.port))
    checks = {c.what: c for c in doctor_lib.diagnose(str(config), db_url=url)}
    assert not checks["database"].ok
    assert "cannot open the database" in checks["database"].detail
    assert "schema" not in checks


def test_smtp_down_fails_within_the_timeout(cli, tmp_path):
    config = write_config(tmp_path, smtp_section(free_port()))
    result = cli("doctor", "--smtp-timeout", "2", config=config)
    assert result.exit_code == 1
    assert lines(result.stdout)["smtp"] == "FAIL"
    assert "Connection refused" in result.stdout


def test_smtp_that_accepts_but_never_answers_times_out(tmp_path):
    # A listening socket that never sends a greeting: the check must give up.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        config = doctor_lib.load_config(str(write_config(tmp_path, smtp_section(port))))
        check = doctor_lib.check_smtp(config, timeout_s=0.5)
    assert not check.ok
    assert "timed out" in check.detail


class _OkAdapter(providers.ProviderAdapter):
    type = "vodia"

    def check(self):
        return "Vodia PBX 69.0.1 (tenant list readable)"

    def fetch_cdrs(self, service, since, until):
        return iter(())

    def suspend(self, service, reason):
        return "ok"

    def unsuspend(self, service):
        return "ok"


class _RefusedAdapter(_OkAdapter):
    def check(self):
        raise ProviderAuthError(self.name, "credentials refused (HTTP 401)")


class _BuggyAdapter(_OkAdapter):
    def check(self):
        raise KeyError("version")


SERVERS = """
[servers.vodia1]
type = "vodia"
url = "http://127.0.0.1:{port}"
[servers.vodia2]
type = "vodia"
url = "http://127.0.0.1:{port}"
"""


@pytest.mark.parametrize(
    ("adapter", "status", "detail"),
    [
        (_OkAdapter, "ok", "vodia1: Vodia PBX 69.0.1"),
        (_RefusedAdapter, "FAIL", "vodia1: credentials refused (HTTP 401)"),
        (_BuggyAdapter, "FAIL", "check failed: KeyError"),
    ],
)
def test_each_server_is_checked_through_its_adapter(
    cli, tmp_path, sink, monkeypatch, adapter, status, detail
):
    monkeypatch.setattr(providers, "adapter_for", lambda name, cfg: adapter(name, cfg))
    config = write_config(tmp_path, smtp_section(sink.port) + SERVERS.format(port=free_port()))
    result = cli("doctor", config=config)
    got = lines(result.stdout)
    assert got["server vodia1"] == status
    assert got["server vodia2"] == status
    assert detail in result.stdout
    assert result.exit_code == (0 if status == "ok" else 1)
    assert "Traceback" not in result.output


def test_an_adapter_missing_from_the_install_is_a_clear_failing_line(
    cli, tmp_path, sink, monkeypatch
):
    monkeypatch.setitem(providers.PROVIDERS, "vodia", "voipctl.providers.no_such_module:Nope")
    config = write_config(tmp_path, smtp_section(sink.port) + SERVERS.format(port=free_port()))
    result = cli("doctor", config=config)
    assert result.exit_code == 1
    assert lines(result.stdout)["server vodia1"] == "FAIL"
    assert "no adapter for type 'vodia'" in result.stdout


def test_a_real_adapter_against_a_closed_port_fails(cli, tmp_path, sink):
    # Whatever the Vodia adapter's state, a server nobody listens on is a FAIL line.
    config = write_config(tmp_path, smtp_section(sink.port) + SERVERS.format(port=free_port()))
    result = cli("doctor", config=config)
    assert result.exit_code == 1
    assert lines(result.stdout)["server vodia1"] == "FAIL"
    assert "Traceback" not in result.output


def test_json_format_lists_every_check(cli, tmp_path, sink):
    import json

    config = write_config(tmp_path, smtp_section(sink.port))
    result = cli("doctor", "--format", "json", config=config)
    doc = json.loads(result.stdout)
    assert [c["check"] for c in doc][:3] == ["config", "secrets", "config file mode"]
    assert all(c["ok"] for c in doc)


def test_lock_files_can_be_created_beside_sqlite(store):
    check = doctor_lib.check_locks(store)
    assert check.ok, check.detail
    if store.is_sqlite:
        assert str(store.sqlite_path.parent) in check.detail
        leftovers = [p for p in os.listdir(store.sqlite_path.parent) if "doctor" in p]
        assert leftovers == []
    else:
        assert "advisory" in check.detail


def test_services_sharing_a_lever_are_a_failing_line(store):
    """Pairs made before `service add` refused them (docs/billing.md, shared levers)."""
    from types import SimpleNamespace

    from tests.support.billing_data import add_client, add_product, add_service

    config = SimpleNamespace(servers={"fusion1": SimpleNamespace(suspend="gateway")})
    gateway = "9d1f0b6a-3c5e-4d2b-8a61-0f7e2b1c4d55"
    with store.transaction() as s:
        add_client(s, 42)
        product = add_product(s).id
        ids = [
            add_service(s, 42, product, server="fusion1", server_type="fusionpbx",
                        domain_field="mcon.example.net | 5192229000", tenant="mcon.example.net",
                        extensions=[ext], gateway_uuid=gateway).id
            for ext in ("2112", "2113")
        ]  # fmt: skip
    check = doctor_lib.check_shared_levers(store, config)
    assert check == doctor_lib.Check(
        False,
        "suspend levers",
        f"services {ids[0]} and {ids[1]} on fusion1 share gateway {gateway}: "
        "suspending one cuts the other off; give each its own",
    )
    config.servers["fusion1"].suspend = "extensions"  # each service its own lever
    assert doctor_lib.check_shared_levers(store, config).ok


def _service_in(store, client_currency: str, product: str, product_currency: str | None):
    """A client and a service on a product priced in `product_currency` (None: the
    configuration's), written the way a product changed after the service was added is."""
    from voipctl import catalog  # noqa: PLC0415
    from voipctl.store.models import Product  # noqa: PLC0415

    with store.transaction() as session:
        if session.get(catalog.Client, 42) is None:
            catalog.add_client(
                session,
                42,
                first_name="A",
                last_name="B",
                email="a@example.com",
                currency=client_currency,
            )
        catalog.add_product(session, product, currency=client_currency)
        service = catalog.add_service(
            session,
            client_id=42,
            product=product,
            server="vodia1",
            server_type="vodia",
            domain="c42.example.com | 5195550142",
        )
        session.get(Product, service.product_id).currency = product_currency
        return service.id


def test_a_service_priced_in_another_currency_fails_the_currency_line(store, cli, tmp_path, sink):
    config = write_config(tmp_path, '[billing]\ncurrency = "CAD"\n' + smtp_section(sink.port))
    first = _service_in(store, "CAD", "US Deck", "USD")
    result = cli("doctor", config=config)
    assert result.exit_code == 1, result.output
    assert lines(result.stdout)["currencies"] == "FAIL"
    (line,) = [x for x in result.stdout.splitlines() if "currencies" in x]
    assert line.split("  ", 2)[2].strip() == (
        f"1 service is priced in another currency than the client pays in: service {first}: "
        "client 42 pays in CAD, product 'US Deck' is priced in USD"
    )


def test_a_product_without_a_currency_is_priced_in_the_configurations(store, cli, tmp_path, sink):
    # A product made before products.currency existed (NULL) follows [billing] currency.
    _service_in(store, "CAD", "Old Deck", None)
    cad = write_config(tmp_path, '[billing]\ncurrency = "CAD"\n' + smtp_section(sink.port))
    assert cli("doctor", config=cad).exit_code == 0
    usd = write_config(tmp_path, '[billing]\ncurrency = "USD"\n' + smtp_section(sink.port))
    result = cli("doctor", config=usd)
    assert result.exit_code == 1
    assert "client 42 pays in CAD, product 'Old Deck' is priced in USD" in result.stdout


def test_a_database_file_readable_by_group_or_others_fails(tmp_path, sink):
    database = tmp_path / "voipctl.db"
    config = write_config(tmp_path, smtp_section(sink.port))
    store = open_store(f"sqlite:///{database}")
    upgrade(store)
    store.dispose()
    assert database.stat().st_mode & 0o777 == 0o600
    ok = {c.what: c for c in doctor_lib.diagnose(str(config), db_url=f"sqlite:///{database}")}
    assert ok["database file mode"].line() == f"ok    database file mode  {database} is mode 0600"
    database.chmod(0o644)
    checks = {c.what: c for c in doctor_lib.diagnose(str(config), db_url=f"sqlite:///{database}")}
    assert checks["database file mode"].line() == (
        f"FAIL  database file mode  {database} is mode 0644, readable by group or others: "
        f"chmod 600 {database}"
    )
    assert checks["currencies"].ok  # the other checks still run
