"""Options shared by many commands, written once."""

from __future__ import annotations

import difflib
import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import click

from voipctl import money

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
        with app.store().session() as session:
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


def parse_day_or_time(text: str, tz: ZoneInfo, *, end: bool) -> datetime:
    """`--from/--to`: a DATE is a whole day in `tz` (both ends inclusive); a full ISO time as is."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time(), tz).astimezone(UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD) or an ISO time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


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
