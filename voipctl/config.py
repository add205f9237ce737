"""Configuration: the TOML file, `VOIPCTL_*` environment overrides and `.env` secrets.

Secrets never live in the TOML file: a key ending in `_env` names the
environment variable that holds the secret, and `secret()` reads it when it is
needed, so no configuration object ever carries a password in its repr.
"""

from __future__ import annotations

import io
import json
import os
import tomllib
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import dotenv
from dotenv.parser import parse_stream
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FilePath,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from voipctl import money
from voipctl.errors import ConfigError

ENV_PREFIX = "VOIPCTL_"
SYSTEM_CONFIG = Path("/etc/voipctl/voipctl.toml")


def _plain(kind: type) -> Any:
    """`kind` (int or float) that, given as text (an environment override, a quoted
    TOML value), has the one plain syntax of docs/rating.md: pydantic alone takes
    "6_0" and, for a float, "1e3"."""
    what = "a whole number" if kind is int else "a number"

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            if kind is int:
                return money.parse_int(value, field="value")
            return float(money.plain(value, field="value"))
        except money.NumberError:
            raise PydanticCustomError(
                "plain_number",
                f"not {what} in plain digits 0-9 (no exponent, underscore or other digits)",
            ) from None

    return Annotated[kind, BeforeValidator(check)]


PlainInt = _plain(int)
PlainFloat = _plain(float)


class _Section(BaseModel):
    # inf and nan are TOML floats, never a timeout or a rate.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class DatabaseConfig(_Section):
    url: str | None = None
    # How long a job waits for a lock another session holds (docs/install.md,
    # "Timeouts and deadlines"): SQLite's busy timeout, PostgreSQL's lock_timeout.
    busy_timeout_ms: PlainInt = Field(30_000, ge=0)
    lock_timeout_s: PlainFloat = Field(60.0, ge=0)
    # PostgreSQL's statement_timeout for every statement of a job; 0: no limit.
    statement_timeout_s: PlainFloat = Field(0.0, ge=0)


class EmailConfig(_Section):
    from_: str = Field("billing@localhost", alias="from")
    smtp_host: str = "localhost"
    smtp_port: PlainInt = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password_env: str | None = None
    templates_dir: Path | None = None
    bcc: str = ""
    operator: str = ""
    timeout_s: PlainFloat = 30.0
    # Write each email as a file in this directory instead of sending it (demo, trials).
    capture_dir: Path | None = None


# 31 days: FusionPBX's own ceiling; Vodia and LES.NET would take up to 2**31-1 s.
MAX_CALL_SECONDS = 31 * 24 * 3600


class PullConfig(_Section):
    # The one call-length limit of every provider (docs/rating.md, "Numbers, limits
    # and decks"): a longer call is refused as data. At most what cdrs.billsec holds.
    max_call_seconds: PlainInt = Field(MAX_CALL_SECONDS, gt=0, le=2**31 - 1)


# How often each job runs in crontab.example, with room for one late run: a job with
# no successful run within this many minutes is stale (`voipctl status`, exit 1).
DEFAULT_JOB_INTERVALS = {
    "pull-cdrs": 15,  # every 5 minutes
    "rate": 15,  # every 5 minutes, after pull-cdrs
    "autobill": 25 * 60,  # daily
    "low-balance": 25 * 60,  # daily
    "auto-topup": 15,  # every 5 minutes, before autosuspend
    "autosuspend": 15,  # every 5 minutes
}
# A server with no successful pull within this many minutes is stale, unless its
# provider's plugin says otherwise (`Plugin.pull_interval_minutes`).
DEFAULT_SERVER_INTERVAL = 15


class StatusConfig(_Section):
    # job -> minutes (merged over DEFAULT_JOB_INTERVALS; 0: do not check that job).
    jobs: dict[str, PlainInt] = Field(default_factory=dict)
    # server -> minutes (default DEFAULT_SERVER_INTERVAL, LES.NET a day; 0: not checked).
    servers: dict[str, PlainInt] = Field(default_factory=dict)
    # Backlog limits, minutes (0: not checked).
    unrated_max_minutes: PlainInt = Field(60, ge=0)
    no_rate_max_minutes: PlainInt = Field(24 * 60, ge=0)
    unbilled_max_minutes: PlainInt = Field(26 * 60, ge=0)
    email_max_minutes: PlainInt = Field(60, ge=0)

    @field_validator("jobs", "servers")
    @classmethod
    def _minutes(cls, value: dict[str, int]) -> dict[str, int]:
        for name, minutes in value.items():
            if minutes < 0:
                raise ValueError(f"{name}: minutes must be 0 or more, got {minutes}")
        return value

    def job_intervals(self) -> dict[str, int]:
        return {**DEFAULT_JOB_INTERVALS, **self.jobs}

    def server_interval(self, name: str, server_type: str | None) -> int:
        if name in self.servers:
            return self.servers[name]
        from voipctl import providers

        try:
            minutes = providers.plugin(server_type or "").pull_interval_minutes
        except ConfigError:
            minutes = None
        return DEFAULT_SERVER_INTERVAL if minutes is None else minutes


class MetricsConfig(_Section):
    # node_exporter's textfile collector directory; every job writes voipctl_<job>.prom
    # there (as with --metrics-dir DIR). None: no metrics files.
    textfile_dir: Path | None = None


# The names of the fraud guard's limits: `[fraud]` and the per-product and per-client
# overrides (docs/fraud.md) use exactly these.
FRAUD_LIMITS = (
    "max_spend_per_hour",
    "max_spend_per_day",
    "risk_prefixes",
    "max_risk_calls_per_hour",
    "trailing_multiple",
)


def _fraud_empty(value: Any) -> Any:
    # An empty value disables a limit: "" in TOML, or an empty environment override.
    return None if isinstance(value, str) and not value.strip() else value


def _fraud_amount(value: Any) -> Any:
    value = _fraud_empty(value)
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool | float):
        raise PydanticCustomError(
            "fraud_amount", 'an amount is written as text or a whole number, e.g. "50.00"'
        )
    try:
        amount = money.parse(value, field="value")
    except money.MoneyError as exc:
        raise PydanticCustomError("fraud_amount", str(exc).removeprefix("value: ")) from None
    if amount <= 0:
        raise PydanticCustomError("fraud_amount", 'must be above 0 ("" disables the limit)')
    return amount


def _fraud_prefixes(value: Any) -> Any:
    value = _fraud_empty(value)
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
    if not isinstance(value, list):
        raise PydanticCustomError("fraud_prefixes", 'a list of number prefixes, e.g. ["53"]')
    prefixes = []
    for item in value:
        text = str(item).strip().removeprefix("+")
        if not (text.isascii() and text.isdigit()) or len(text) > 15:
            raise PydanticCustomError(
                "fraud_prefixes",
                f"{str(item)[:20]!r} is not a number prefix (digits of an E.164 number, "
                "country code first)",
            )
        prefixes.append(text)
    return tuple(sorted(set(prefixes)))


FraudAmount = Annotated[Decimal | None, BeforeValidator(_fraud_amount)]
FraudCount = Annotated[PlainInt | None, BeforeValidator(_fraud_empty), Field(gt=0)]
FraudPrefixes = Annotated[tuple[str, ...] | None, BeforeValidator(_fraud_prefixes)]


class FraudLimits(_Section):
    """The fraud guard's limits (docs/fraud.md); None (an empty value) disables one.

    The same model reads `[fraud]` and the overrides stored on a product or a
    client; in an override only the names it sets count (`model_fields_set`).
    """

    max_spend_per_hour: FraudAmount = None
    max_spend_per_day: FraudAmount = None
    risk_prefixes: FraudPrefixes = None
    max_risk_calls_per_hour: FraudCount = None
    trailing_multiple: FraudAmount = None


class FraudConfig(FraudLimits):
    # The client email "fraud_guard" is sent only when this is true.
    notify_client: bool = False

    @property
    def enabled(self) -> bool:
        """The guard runs when any limit is set here (an override alone does not start it)."""
        return any(
            getattr(self, name) is not None for name in FRAUD_LIMITS if name != "risk_prefixes"
        )


class BillingConfig(_Section):
    backend: Literal["local", "whmcs"] = "local"
    currency: str = "USD"


# The client fields docs/billing.md names, as keys of `whmcs.fields`.
WHMCS_CLIENT_FIELDS = (
    "has_voip_service",
    "low_balance_threshold",
    "voip_suspended",
    "manual_voip_suspend",
    "credit_limit",
    "timezone",
    # Auto VoIP Top-Up (docs/topup.md): not mapped unless the operator names them.
    "auto_topup_amount",
    "cc_auth_on_file",
    "cc_auth_date",
)


def _whmcs_extra_fields() -> dict[str, str]:
    """The service extras' keys in `[whmcs] service_fields` and their WHMCS field names."""
    from voipctl import providers

    return {extra.whmcs_key: extra.whmcs_field for _, extra in providers.service_extras().values()}


class WhmcsConfig(_Section):
    url: str = ""
    identifier_env: str | None = None
    secret_env: str | None = None
    accesskey_env: str | None = None
    timeout_s: PlainFloat = 30.0
    # Retries of reads on connection errors and 5xx (writes: only when never sent).
    retries: PlainInt = Field(3, ge=0, le=10)
    verify_tls: bool = True
    # How autobill posts usage: AddCredit type=remove, or billable items on an invoice.
    post_usage: Literal["credit", "invoice"] = "credit"
    # Who sends the two alert emails: WHMCS SendEmail (its templates) or voipctl's SMTP.
    emails: Literal["whmcs", "smtp"] = "whmcs"
    # Custom client field names (or "id:N") as they are set up in WHMCS; "" = not kept there.
    # `suspension_state` is where autosuspend writes the state back ("yes" / "none").
    fields: dict[str, str] = Field(
        default_factory=lambda: {
            "has_voip_service": "Has VoIP Service",
            "low_balance_threshold": "Low Balance Threshold",
            "voip_suspended": "VoIP Suspended",
            "manual_voip_suspend": "Manual VoIP Suspend",
            "credit_limit": "Credit Limit",
            "timezone": "Time Zone",
            "suspension_state": "VoIP Suspended",
        }
    )
    # Product custom fields of a VoIP service (GetClientsProducts, by name or "id:N"),
    # keyed like the options of `voipctl service add`.
    service_fields: dict[str, str] = Field(
        default_factory=lambda: {
            "domain": "Tenant / DIDs",
            "billed": "Extensions",
            **_whmcs_extra_fields(),
        }
    )
    # WHMCS product name -> voipctl product, WHMCS server name -> voipctl server; a name
    # not listed maps to itself. Services of products voipctl does not know are not VoIP.
    products: dict[str, str] = Field(default_factory=dict)
    servers: dict[str, str] = Field(default_factory=dict)
    # voipctl template -> WHMCS email template (SendEmail messagename).
    templates: dict[str, str] = Field(
        default_factory=lambda: {
            "low_balance_alert": "Low Balance Alert",
            "voip_zero_balance": "VoIP Zero Balance",
        }
    )

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        known = set(WHMCS_CLIENT_FIELDS) | {"suspension_state"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(
                f"unknown field key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return value

    @field_validator("service_fields")
    @classmethod
    def _known_service_fields(cls, value: dict[str, str]) -> dict[str, str]:
        known = {"domain", "billed", *_whmcs_extra_fields()}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return value


TOPUP_PLACEHOLDERS = ("client_id", "amount", "reference")


class TopupConfig(_Section):
    """Auto VoIP Top-Up (docs/topup.md)."""

    # local backend: the program that charges the card, run as a list (no shell).
    command: list[str] | None = None
    timeout_s: PlainFloat = Field(120.0, gt=0)
    max_per_day: PlainInt = Field(3, ge=1)
    auth_valid_days: PlainInt = Field(365, ge=1)
    # WHMCS backend: CreateInvoice's paymentmethod ("" = the client's default gateway),
    # and how the paid invoice becomes credit: AddCredit, or "none" when WHMCS itself
    # turns it into credit (unverified: docs/topup.md).
    whmcs_payment_method: str = ""
    whmcs_credit: Literal["add_credit", "none"] = "add_credit"

    @field_validator("command")
    @classmethod
    def _placeholders(cls, value: list[str] | None) -> list[str] | None:
        import string

        if value is None:
            return None
        if not value or not value[0].strip():
            raise ValueError('a program and its arguments, e.g. ["/usr/local/sbin/charge-card"]')
        names: set[str] = set()
        for arg in value:
            try:
                names |= {n for _, n, _, _ in string.Formatter().parse(arg) if n is not None}
            except ValueError as exc:
                raise ValueError(f"{arg!r} is not a template ({exc})") from None
        unknown = sorted(names - set(TOPUP_PLACEHOLDERS))
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{unknown[0]}}} (known: "
                + ", ".join("{" + n + "}" for n in TOPUP_PLACEHOLDERS)
                + ")"
            )
        if "reference" not in names:
            raise ValueError(
                "{reference} is required: it lets the program charge each reference once"
            )
        return value


class _ServerBase(_Section):
    timeout_s: PlainFloat = 30.0
    retries: PlainInt = Field(3, ge=0, le=10)
    # Transfer deadlines (docs/install.md, "Timeouts and deadlines"): a body that
    # arrives slower than min_rate_bps over rate_window_s, or a request longer than
    # max_request_s, fails that server. Defaults leave room for a day-long file.
    min_rate_bps: PlainInt = Field(1024, ge=0)
    rate_window_s: PlainFloat = Field(30.0, gt=0)
    max_request_s: PlainFloat = Field(1800.0, gt=0)
    verify_tls: bool = True
    # Checked when loaded: a missing bundle would otherwise fail at the first request.
    ca_bundle: FilePath | None = None
    timezone: str = "UTC"
    overlap_minutes: PlainInt = Field(60, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception:  # noqa: BLE001 - zoneinfo raises several kinds
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value


# Server models live in their provider's package (`Plugin.config_model`); the
# discriminated union of them is built from the registry when first needed.
ServerBase = _ServerBase
Section = _Section


def __getattr__(name: str) -> Any:
    # The server models by their names (`from voipctl.config import VodiaServer`),
    # found in the plugins' configuration modules.
    import sys

    from voipctl import providers
    from voipctl.providers.plugin import load

    if not name.startswith("_"):
        for p in providers.plugins():
            found = getattr(sys.modules[load(p.config_model).__module__], name, None)
            if found is not None:
                return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _servers_adapter() -> TypeAdapter:
    """The `[servers]` table's validator: every plugin's model, told apart by `type`."""
    from voipctl import providers
    from voipctl.providers.plugin import load

    models = tuple(load(p.config_model) for p in providers.plugins())
    return TypeAdapter(dict[str, Annotated[Union[models], Field(discriminator="type")]])  # noqa: UP007


def _union_order() -> tuple[str, ...]:
    """The server types the `[servers]` union takes, in registry order."""
    from voipctl import providers

    return providers.server_types()


class Config(_Section):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    email: EmailConfig = Field(default_factory=EmailConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    pull: PullConfig = Field(default_factory=PullConfig)
    whmcs: WhmcsConfig = Field(default_factory=WhmcsConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    topup: TopupConfig = Field(default_factory=TopupConfig)
    fraud: FraudConfig = Field(default_factory=FraudConfig)
    # Each value is the model of its server type's plugin (`_servers_adapter`).
    servers: dict[str, Any] = Field(default_factory=dict)

    # Where the configuration came from, for messages ("built-in defaults" when nowhere).
    source: str = Field("built-in defaults", exclude=True)

    @field_validator("servers", mode="before")
    @classmethod
    def _server_models(cls, value: Any) -> Any:
        # load_config validates [servers] itself, for messages naming each key.
        return _servers_adapter().validate_python(value)

    @property
    def database_url(self) -> str:
        return self.database.url or default_database_url()

    def server(self, name: str) -> Any:
        try:
            return self.servers[name]
        except KeyError:
            known = ", ".join(sorted(self.servers)) or "none configured"
            raise ConfigError(f"{self.source}: no server {name!r} (servers: {known})") from None


def default_database_url() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'voipctl' / 'voipctl.db'}"


def secret(env_name: str | None, *, what: str) -> str | None:
    """The value of the secret held in environment variable `env_name`.

    `what` names the config key for the error ("servers.vodia1.password_env").
    """
    if not env_name:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise ConfigError(f"{what}: environment variable {env_name} is named but not set")
    return value


def _find_config_file(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found")
        return path
    env = os.environ.get("VOIPCTL_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found (from $VOIPCTL_CONFIG)")
        return path
    for candidate in (Path("voipctl.toml"), SYSTEM_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def _env_value(raw: str) -> Any:
    # Lists and tables can be given as JSON (VOIPCTL_SERVERS__L__SUSPEND_COMMAND='["a","b"]').
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Write the VOIPCTL_* variables into `data`; returns dotted key -> the variable that set it."""
    applied: dict[str, str] = {}
    if environ.get("VOIPCTL_DATABASE_URL"):
        data.setdefault("database", {})["url"] = environ["VOIPCTL_DATABASE_URL"]
        applied["database.url"] = "VOIPCTL_DATABASE_URL"
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            continue
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {'.'.join(path[:-1])} is not a table")
            node = child
        node[path[-1]] = _env_value(raw)
        applied[".".join(path)] = name
    return applied


def _format_validation_error(
    file_source: str, errors: list[dict[str, Any]], from_env: Mapping[str, str] | None = None
) -> str:
    lines = []
    tags = set(_union_order())
    for err in errors:
        key = ".".join(str(part) for part in err["loc"] if part not in tags)
        # A bad value that came from the environment is named by its variable, not the file.
        env_name = next(
            (name for k, name in (from_env or {}).items() if key == k or key.startswith(k + ".")),
            None,
        )
        if env_name is None and "." in key:
            # A table that exists only because a variable named a key in it
            # (VOIPCTL_SERVERS__NEW__URL makes servers.new): name that variable.
            parent = key.rsplit(".", 1)[0] + "."
            env_name = next((n for k, n in (from_env or {}).items() if k.startswith(parent)), None)
        source = f"${env_name}" if env_name else file_source
        if err["type"] == "extra_forbidden":
            hint = "unknown key" + _did_you_mean(err["loc"])
            if any(word in key for word in ("password", "secret", "key", "token")):
                hint += (
                    " (secrets are not kept in the file: name an environment variable with *_env)"
                )
            lines.append(f"{source}: {key}: {hint}")
        elif err["type"] == "missing":
            lines.append(f"{source}: {key}: required key is missing")
        elif err["type"] == "union_tag_not_found":
            # A server table without `type`: name the key, not pydantic's discriminator.
            *first, last = _union_order()
            lines.append(
                f"{source}: {key}.type: required key is missing ({', '.join(first)} or {last})"
            )
        else:
            given = err.get("input")
            shown = "" if isinstance(given, dict | list) else f", got {given!r}"
            lines.append(f"{source}: {key}: {err['msg'].lower()}{shown}")
    return "\n".join(lines)


def _known_keys(loc: tuple) -> list[str]:
    """The keys the table at `loc` (a pydantic error location, without its last part) takes."""
    from voipctl import providers
    from voipctl.providers.plugin import load

    servers = {p.type: load(p.config_model) for p in providers.plugins()}
    model: type[BaseModel] = Config
    parts = [str(p) for p in loc]
    i = 0
    while i < len(parts):
        if model is Config and parts[i] == "servers":
            if i + 2 >= len(parts) or parts[i + 2] not in servers:
                return []
            model, i = servers[parts[i + 2]], i + 3
            continue
        field = model.model_fields.get(parts[i])
        kind = field.annotation if field is not None else None
        if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
            return []
        model, i = kind, i + 1
    return [f.alias or name for name, f in model.model_fields.items() if name != "source"]


def _did_you_mean(loc: tuple) -> str:
    """` (did you mean smtp_host?)` for a misspelt key, or ""."""
    import difflib

    close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc[:-1]), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def unset_secrets(config: Config) -> list[tuple[str, str]]:
    """Every `*_env` key whose variable is unset, as (dotted key, variable), in file order.

    The WHMCS keys count only with backend = "whmcs".
    """
    sections: list[tuple[str, BaseModel]] = [("email", config.email)]
    if config.billing.backend == "whmcs":
        sections.append(("whmcs", config.whmcs))
    sections += [(f"servers.{name}", server) for name, server in config.servers.items()]
    missing = []
    for prefix, section in sections:
        for key, value in section:  # pydantic models iterate as (key, value)
            if key.endswith("_env") and value and os.environ.get(value) is None:
                missing.append((f"{prefix}.{key}", value))
    return missing


def check_secrets(config: Config) -> None:
    """Every `*_env` key that is set must name a variable that exists, checked now, not
    at 2 a.m.; all the unset ones are named in one line, so one run finds them all."""
    missing = unset_secrets(config)
    if len(missing) == 1:
        key, name = missing[0]
        raise ConfigError(
            f"{config.source}: {key}: environment variable {name} is named but not set"
        )
    if missing:
        shown = ", ".join(f"{key} ({name})" for key, name in missing)
        raise ConfigError(f"{config.source}: environment variables named but not set: {shown}")


def _check_servers(config: Config) -> None:
    from voipctl import providers

    for name, server in config.servers.items():
        providers.plugin(server.type).check_config(server, f"{config.source}: servers.{name}")


def _check_billing(config: Config) -> None:
    """The WHMCS backend's keys are checked when the file is loaded, not at the first API call."""
    if config.billing.backend != "whmcs":
        return
    where = f"{config.source}: whmcs"
    if not config.whmcs.url:
        raise ConfigError(f'{where}.url: required with [billing] backend = "whmcs"')
    if not (config.whmcs.identifier_env and config.whmcs.secret_env):
        raise ConfigError(
            f"{where}.identifier_env and whmcs.secret_env: required with [billing] backend = "
            '"whmcs": name the environment variables holding the API credentials'
        )


def _load_env_file(path: str) -> None:
    """Load a secrets file; a line that is not `NAME=value` is refused with its line number.

    python-dotenv skips such a line with a warning of its own, and the secret on
    it would then be reported missing far from its cause.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            content = fh.read()
        for binding in parse_stream(io.StringIO(content)):
            if binding.error:
                raise ConfigError(
                    f"{path}:{binding.original.line}: not a NAME=value line "
                    "(the value is not shown: it may be a secret)"
                )
        dotenv.load_dotenv(stream=io.StringIO(content), override=False)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_config(
    path: str | None = None,
    *,
    db_url: str | None = None,
    env_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    secrets: bool = True,
) -> Config:
    """Load and validate the configuration as docs/cli.md describes. Raises ConfigError.

    With secrets=False the `*_env` variables are not checked (`db upgrade` and `doctor`,
    which lists them all itself); `check_secrets()` does that later.
    """
    if env_file is not None:
        if not Path(env_file).is_file():
            raise ConfigError(f"{env_file}: --env-file not found")
        _load_env_file(env_file)
    elif Path(".env").is_file():
        _load_env_file(".env")
    environ = os.environ if environ is None else environ

    file = _find_config_file(path)
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if file is not None:
        source = str(file)
        try:
            with file.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: not UTF-8 (byte {exc.start})") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    if not isinstance(data.get("database", {}), dict):
        # The URL overrides below write into it: refuse it here, not with a TypeError.
        raise ConfigError(f"{source}: database: expected a table ([database])")
    from_env = _apply_env_overrides(data, environ)
    if db_url:
        from_env.pop("database.url", None)
        data.setdefault("database", {})["url"] = db_url
    # [servers] is validated on its own, by the plugins' models, with the same
    # messages: its errors come after the other sections', as the field is last.
    errors: list[dict[str, Any]] = []
    rest = {key: value for key, value in data.items() if key != "servers"}
    servers: dict[str, Any] = {}
    try:
        config = Config.model_validate(rest)
    except ValidationError as exc:
        errors += exc.errors()
    if "servers" in data:
        try:
            servers = _servers_adapter().validate_python(data["servers"])
        except ValidationError as exc:
            errors += [{**err, "loc": ("servers", *err["loc"])} for err in exc.errors()]
    if errors:
        raise ConfigError(_format_validation_error(source, errors, from_env)) from None
    config.servers = servers
    config.source = source
    _check_servers(config)
    _check_billing(config)
    if secrets:
        check_secrets(config)
    return config
