"""`voipctl doctor`: is this installation ready to bill and suspend?

Each check gives one `Check` (ok or not, what, detail). A check that fails never
stops the others: an operator wants the whole list in one run, and a broken
configuration is itself a failing line, not a crash.
"""

from __future__ import annotations

import os
import smtplib
import ssl
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from voipctl import providers
from voipctl.catalog import lever_key, shared_levers
from voipctl.config import Config, load_config, secret, unset_secrets
from voipctl.errors import ConfigError, VoipctlError
from voipctl.store.engine import Store, connect_check, open_store
from voipctl.store.locks import lock_key
from voipctl.store.migrate import current_revision, head_revision

SMTP_TIMEOUT_S = 10.0
# Permission bits that let someone other than the owner read the file.
_OTHERS_READ = stat.S_IRGRP | stat.S_IROTH


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    ok: bool
    what: str
    detail: str

    def line(self, width: int = 0) -> str:
        status = "ok" if self.ok else "FAIL"
        return f"{status:<4}  {self.what.ljust(width)}  {self.detail}".rstrip()


def _reason(exc: BaseException) -> str:
    """A one-line, secret-free reason for an unexpected exception."""
    if isinstance(exc, VoipctlError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        first = str(orig or exc).strip().splitlines()
        return first[0] if first else type(exc).__name__
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def _env_file_path(env_file: str | None) -> Path | None:
    # The same file load_config reads: --env-file, else ./.env when present.
    if env_file:
        return Path(env_file)
    default = Path(".env")
    return default if default.is_file() else None


def check_file_mode(path: Path, what: str) -> Check:
    """A file holding configuration or secrets must not be readable by group or others."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return Check(False, what, f"{path}: cannot stat: {exc.strerror}")
    if mode & _OTHERS_READ:
        return Check(
            False,
            what,
            f"{path} is mode {stat.S_IMODE(mode):04o}, readable by group or others: "
            f"chmod 600 {path}",
        )
    return Check(True, what, f"{path} is mode {stat.S_IMODE(mode):04o}")


def check_secrets(config: Config) -> Check:
    """Every `*_env` key names a variable that is set (values are never shown); all the
    unset ones are named on the one line, so one run finds them all."""
    missing = unset_secrets(config)
    if missing:
        shown = ", ".join(f"{key} ({name})" for key, name in missing)
        return Check(False, "secrets", f"{len(missing)} named but not set: {shown}")
    sections: list[tuple[str, object]] = [("email", config.email)]
    if config.billing.backend == "whmcs":
        sections.append(("whmcs", config.whmcs))
    sections += [(f"servers.{name}", srv) for name, srv in config.servers.items()]
    named = [
        value
        for _, section in sections
        for key, value in section  # pydantic models iterate as (key, value)
        if key.endswith("_env") and value
    ]
    if not named:
        return Check(True, "secrets", "no secrets are named in the configuration")
    # Servers sharing a secret name it once each: count the variables, not the keys.
    names = sorted(set(named))
    return Check(True, "secrets", f"{len(names)} set: " + ", ".join(names))


def check_database(store: Store) -> Iterator[Check]:
    """The database answers, and its schema is at the newest revision."""
    path = store.sqlite_path
    if path is not None and not path.is_file():
        yield Check(False, "database", f"{path} does not exist: run `voipctl db upgrade`")
        return
    try:
        connect_check(store)
    except VoipctlError as exc:
        yield Check(False, "database", _reason(exc))
        return
    yield Check(True, "database", f"{store.safe_url} ({store.dialect})")
    try:
        current = current_revision(store)
    except SQLAlchemyError as exc:
        yield Check(False, "schema", _reason(exc))
        return
    head = head_revision()
    if current == head:
        yield Check(True, "schema", f"at revision {head}")
    else:
        state = "empty" if current is None else f"at revision {current}"
        yield Check(
            False, "schema", f"{state}, this voipctl needs {head}: run `voipctl db upgrade`"
        )


def check_currencies(store: Store, default: str) -> Check:
    """Every active service's client pays in the currency its product's deck is priced in
    (a product without a currency of its own is priced in the configuration's)."""
    from voipctl import catalog  # noqa: PLC0415 - the catalog is only needed here

    try:
        with store.session_factory() as session:
            found = catalog.currency_mismatches(session, default)
            session.rollback()
    except (SQLAlchemyError, VoipctlError) as exc:
        return Check(False, "currencies", _reason(exc))
    if not found:
        return Check(
            True, "currencies", "every active service's client pays in its deck's currency"
        )
    shown = "; ".join(found[:3]) + (f"; and {len(found) - 3} more" if len(found) > 3 else "")
    noun = "service is" if len(found) == 1 else "services are"
    return Check(
        False,
        "currencies",
        f"{len(found)} {noun} priced in another currency than the client pays in: {shown}",
    )


def check_locks(store: Store) -> Check:
    """Jobs can take their locks: lock files beside a SQLite file, advisory locks on PostgreSQL."""
    path = store.sqlite_path
    if store.is_sqlite:
        if path is None:
            return Check(True, "locks", "in-memory database: no lock files")
        directory = path.parent
        if not directory.is_dir():
            return Check(False, "locks", f"{directory} is not a directory")
        try:
            # A real write, not os.access: that one says yes to root on a read-only mount.
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".voipctl-doctor-"):
                pass
        except OSError as exc:
            return Check(False, "locks", f"cannot create lock files in {directory}: {exc.strerror}")
        return Check(True, "locks", f"lock files in {directory} (writable)")
    key = lock_key("doctor")
    try:
        with store.engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
    except SQLAlchemyError as exc:
        return Check(False, "locks", f"advisory lock failed: {_reason(exc)}")
    return Check(True, "locks", "PostgreSQL advisory locks work")


def check_server(name: str, server_config) -> Check:
    """Reach one server through its adapter's `check()`."""
    what = f"server {name}"
    try:
        adapter = providers.adapter_for(name, server_config)
    except ImportError as exc:
        return Check(
            False, what, f"no adapter for type {server_config.type!r} in this install ({exc})"
        )
    except (AttributeError, TypeError) as exc:
        return Check(False, what, f"the {server_config.type} adapter cannot start: {_reason(exc)}")
    except VoipctlError as exc:
        return Check(False, what, _reason(exc))
    try:
        with adapter:
            reached = adapter.check()
    except VoipctlError as exc:
        return Check(False, what, _reason(exc))
    except Exception as exc:  # noqa: BLE001 - any adapter bug is one failing line
        return Check(False, what, f"check failed: {_reason(exc)}")
    # Named like a failing line ("vodia1: ..."), not by type: two servers of one type differ.
    return Check(True, what, f"{name}: {reached}")


def check_smtp(config: Config, *, timeout_s: float = SMTP_TIMEOUT_S) -> Check:
    """Connect to the SMTP server and say EHLO (STARTTLS and login as configured)."""
    email = config.email
    if email.capture_dir is not None:
        directory = Path(email.capture_dir)
        if directory.is_dir() and os.access(directory, os.W_OK):
            return Check(True, "smtp", f"emails are written to {directory} (capture_dir)")
        # The first email creates the directory (and its parents): fine if that can be done.
        parent = next((p for p in directory.parents if p.exists()), None)
        if (
            not directory.exists()
            and parent is not None
            and parent.is_dir()
            and os.access(parent, os.W_OK)
        ):
            return Check(
                True,
                "smtp",
                f"emails will be written to {directory} (capture_dir, made on first use)",
            )
        return Check(False, "smtp", f"capture_dir {directory} is not a writable directory")
    where = f"{email.smtp_host}:{email.smtp_port}"
    timeout = min(timeout_s, email.timeout_s)
    try:
        password = secret(email.password_env, what="email.password_env")
        context = ssl.create_default_context()
        if email.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                email.smtp_host, email.smtp_port, timeout=timeout, context=context
            )
        else:
            client = smtplib.SMTP(email.smtp_host, email.smtp_port, timeout=timeout)
        try:
            code, _ = client.ehlo()
            if code != 250:
                return Check(False, "smtp", f"{where}: EHLO answered {code}")
            if email.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if email.username:
                client.login(email.username, password or "")
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    except ConfigError as exc:
        return Check(False, "smtp", _reason(exc))
    except smtplib.SMTPAuthenticationError:
        return Check(False, "smtp", f"{where}: the server refused the credentials")
    except (smtplib.SMTPException, OSError) as exc:  # TimeoutError is an OSError
        return Check(False, "smtp", f"{where}: {_reason(exc)}")
    login = f", logged in as {email.username}" if email.username else ""
    return Check(True, "smtp", f"{where} answered EHLO ({email.security}{login})")


def check_shared_levers(store: Store, config: Config) -> Check:
    """No two active services are suspended through one gateway, tenant or trunk."""
    levers = {name: server.suspend for name, server in config.servers.items()}
    try:
        with store.session_factory() as session:
            pairs = shared_levers(session, levers)
    except SQLAlchemyError as exc:
        return Check(False, "suspend levers", _reason(exc))
    if not pairs:
        return Check(True, "suspend levers", "no two services share one")
    first, second = pairs[0]
    what, which = lever_key(first, levers[first.server]) or ("lever", "?")
    more = f" (and {len(pairs) - 1} more pairs)" if len(pairs) > 1 else ""
    return Check(
        False,
        "suspend levers",
        f"services {first.id} and {second.id} on {first.server} share {what} {which}: "
        f"suspending one cuts the other off; give each its own{more}",
    )


def diagnose(
    config_path: str | None = None,
    *,
    db_url: str | None = None,
    env_file: str | None = None,
    smtp_timeout_s: float = SMTP_TIMEOUT_S,
    loader: Callable[..., Config] = load_config,
) -> list[Check]:
    """Run every check and return the lines, in order. Never raises for what it checks."""
    checks: list[Check] = []
    env_path = _env_file_path(env_file)
    try:
        # Secrets are the next check's, which names every unset one, not the first.
        config = loader(config_path, db_url=db_url, env_file=env_file, secrets=False)
    except ConfigError as exc:
        checks.append(Check(False, "config", str(exc).replace("\n", "; ")))
        config = None
    if config is not None:
        checks.append(Check(True, "config", f"{config.source}: valid"))
        checks.append(check_secrets(config))
        if config.source != "built-in defaults":
            checks.append(check_file_mode(Path(config.source), "config file mode"))
    if env_path is not None and env_path.is_file():
        checks.append(check_file_mode(env_path, ".env file mode"))
    if config is None:
        # Without a configuration there is no database, server or SMTP to speak of.
        return checks
    try:
        store = open_store(config.database_url, create_dir=False)
    except VoipctlError as exc:
        checks.append(Check(False, "database", _reason(exc)))
        store = None
    if store is not None:
        try:
            database = list(check_database(store))
            checks.extend(database)
            path = store.sqlite_path
            if path is not None and path.is_file():
                # Client names, numbers and balances: the file is the owner's alone.
                checks.append(check_file_mode(path, "database file mode"))
            checks.append(check_locks(store))
            if config.servers and any(c.what == "schema" and c.ok for c in checks):
                checks.append(check_shared_levers(store, config))
            if all(c.ok for c in database):  # an old schema has no products.currency
                checks.append(check_currencies(store, config.billing.currency))
        finally:
            store.dispose()
    for name, server_config in sorted(config.servers.items()):
        checks.append(check_server(name, server_config))
    checks.append(check_smtp(config, timeout_s=smtp_timeout_s))
    return checks
