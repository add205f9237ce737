"""Options shared by many commands, written once."""

from __future__ import annotations

import difflib
import functools
import logging
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from voipctl import money

log = logging.getLogger(__name__)

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)

# Commands whose output is one document, not rows (`doctor`, `explain`): no CSV.
document_format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)

dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Decide as usual, but write nothing and send nothing."
)


def _known_client(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    # A job given a mistyped client id would find nothing to do and exit 0: refuse it.
    if value is None:
        return value
    from voipctl.catalog import get_client
    from voipctl.cli.app import App

    app = ctx.find_object(App)
    if app is not None:
        with app.store().transaction() as session:
            get_client(session, value)
    return value


class WholeType(click.ParamType):
    """A whole number exactly as written: optional sign and ASCII digits, nothing else.

    Click's `int` is Python's int(), which also takes `6_0`, ` 7` and other
    scripts' digits (`١٢`); a command-line number is refused unless it is plain.
    `low`/`high` bound it (inclusive).
    """

    name = "integer"

    def __init__(self, low: int | None = None, high: int | None = None):
        self.low, self.high = low, high

    def convert(self, value, param, ctx) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value  # a default given in the code
        else:
            text = str(value)
            if len(text) > 40 or not _WHOLE.fullmatch(text):
                self.fail(f"{text[:40]!r} is not a whole number (ASCII digits only)", param, ctx)
            number = int(text)
        if (self.low is not None and number < self.low) or (
            self.high is not None and number > self.high
        ):
            low = "" if self.low is None else self.low
            high = "" if self.high is None else self.high
            self.fail(f"{number} is out of range ({low}..{high})", param, ctx)
        return number


_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
WHOLE = WholeType()
# Ids: any plain whole number; one that names no row is "no client N" from the command.
ID = WHOLE
COUNT = WholeType(low=0)


class SecondsType(click.ParamType):
    """A number of seconds, plain digits with an optional fraction (`2`, `0.5`)."""

    name = "seconds"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        text = str(value)
        if len(text) > 40 or not _SECONDS.fullmatch(text):
            self.fail(f"{text[:40]!r} is not a number of seconds like 2 or 0.5", param, ctx)
        seconds = float(text)
        if seconds <= 0:
            self.fail(f"{text} is not more than 0 seconds", param, ctx)
        return seconds


_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)
SECONDS = SecondsType()


client_option = click.option(
    "--client", "client_id", type=ID, callback=_known_client, help="Only this client."
)


class MoneyType(click.ParamType):
    """A decimal amount, exact; negative amounts allowed where the command says so."""

    name = "AMOUNT"

    def convert(self, value, param, ctx) -> Decimal:
        if isinstance(value, Decimal):
            return value
        if str(value) != str(value).strip():
            # money.parse allows blanks around a number read from a file; not here.
            self.fail(f"{str(value)!r} is not a number (blanks around it)", param, ctx)
        try:
            return money.parse(value, field=param.name if param else "amount")
        except money.MoneyError as exc:
            self.fail(str(exc), param, ctx)


MONEY = MoneyType()


class IncrementType(click.ParamType):
    """A/B billing increments: `60/6`, or `6` meaning `6/6`."""

    name = "A/B"

    def convert(self, value, param, ctx) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        parts = str(value).split("/")
        if not all(_WHOLE.fullmatch(p) and len(p) <= 40 for p in parts):
            self.fail(f"{value!r} is not an increment like 60/6 or 6", param, ctx)
        nums = [int(p) for p in parts]
        if len(nums) == 1:
            nums = nums * 2
        if len(nums) != 2 or nums[0] < 1 or nums[1] < 1:
            self.fail(f"{value!r} is not an increment like 60/6 or 6 (both at least 1)", param, ctx)
        return nums[0], nums[1]


INCREMENT = IncrementType()


# A span back from now: `3d`, `12h`, `30m` (ASCII digits only).
_SPAN = re.compile(r"^([0-9]{1,6})([dhm])$")
_SPAN_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
WHEN_FORMS = (
    "a date (YYYY-MM-DD), an ISO time, today, yesterday or a span back from now (3d, 12h, 30m)"
)


def _day_start(day: date, tz: ZoneInfo, *, end: bool) -> datetime:
    if end:
        day += timedelta(days=1)
    return datetime.combine(day, time(), tz).astimezone(UTC)


def parse_day_or_time(
    text: str, tz: ZoneInfo, *, end: bool, now: datetime | None = None
) -> datetime:
    """`--since/--until` (and `--from/--to`), in UTC.

    A DATE, `today` or `yesterday` is a whole day in `tz` (both ends inclusive: as an
    end it means the next midnight); a full ISO time is taken as is (in `tz` without
    an offset); `3d`, `12h`, `30m` are that long before now, at either end.
    """
    text = text.strip()
    lowered = text.lower()
    now = now or datetime.now(UTC)
    if lowered in ("today", "yesterday"):
        today = now.astimezone(tz).date()
        return _day_start(today - timedelta(days=lowered == "yesterday"), tz, end=end)
    span = _SPAN.match(lowered)
    if span:
        return (now - timedelta(**{_SPAN_UNITS[span.group(2)]: int(span.group(1))})).astimezone(UTC)
    try:
        if len(text) == 10:
            return _day_start(date.fromisoformat(text), tz, end=end)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not {WHEN_FORMS}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


class WhenType(click.ParamType):
    """A time bound of `--since/--until/--from/--to`, checked as it is parsed, so a bad
    one is refused naming its option; commands resolve it in their zone later."""

    name = "WHEN"

    def convert(self, value, param, ctx) -> str:
        try:
            parse_day_or_time(str(value), ZoneInfo("UTC"), end=False)
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)
        return str(value).strip()


WHEN = WhenType()


_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)$", re.ASCII)


class SignedArgsCommand(click.Command):
    """A command whose arguments may be negative numbers (`credit adjust 42 -5.00`).

    Click reads `-5.00` as an option. This command lets such tokens through as
    arguments while every other unknown `-x` / `--xyz` is still refused as a
    misspelt option (exit 2), which plain `ignore_unknown_options` would not do.
    """

    def __init__(self, *args, **kwargs):
        settings = kwargs.setdefault("context_settings", {})
        settings["ignore_unknown_options"] = True
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value: dict[str, bool] = {}
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in (*param.opts, *param.secondary_opts):
                    takes_value[name] = not (param.is_flag or param.count)
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                break
            if arg.startswith("-") and len(arg) > 1 and not _NEGATIVE_NUMBER.match(arg):
                name = arg.split("=", 1)[0]
                if name not in takes_value:
                    close = difflib.get_close_matches(name, list(takes_value), n=3)
                    raise click.NoSuchOption(name, possibilities=close, ctx=ctx)
                if takes_value[name] and "=" not in arg:
                    i += 1  # the option's value, whatever it looks like
            i += 1
        return super().parse_args(ctx, args)


def metrics_option(job: str):
    """`--metrics-dir DIR` on a job: after the run, its figures go to DIR/voipctl_<job>.prom.

    Written once here for every job: the file is made from what the run recorded
    in job_runs (and server_pulls), so it says what the database says. Without
    the option, `[metrics] textfile_dir`; without either, no file. A dry run
    records nothing and writes no file.
    """

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, metrics_dir=None, **kwargs):
            done = False
            try:
                rv = fn(*args, **kwargs)
                done = True
                return rv
            finally:
                # Also after a run that ended in an error: its failed run is news too.
                if not kwargs.get("dry_run"):
                    if done:
                        _write_metrics(job, metrics_dir)
                    else:
                        try:
                            _write_metrics(job, metrics_dir)
                        except Exception:  # noqa: BLE001 - the run's own error is the one to show
                            log.debug("%s: metrics not written", job, exc_info=True)

        return click.option(
            "--metrics-dir",
            type=click.Path(file_okay=False, path_type=Path),
            help="Write the run's figures to DIR/voipctl_<job>.prom for node_exporter "
            "(default: [metrics] textfile_dir).",
            metavar="DIR",
        )(wrapper)

    return decorate


def _write_metrics(job: str, metrics_dir: Path | None) -> None:
    from voipctl.cli.app import get_app
    from voipctl.status import write_job_metrics

    app = get_app()
    # The figures come from the database: no secret is needed, so a job that needs
    # none (rate) does not start needing them for its metrics file.
    config = app.config_without_secrets()
    directory = metrics_dir or config.metrics.textfile_dir
    if directory is not None:
        write_job_metrics(app.store(), config, job, Path(directory))
