"""Email templates: Jinja2 in a sandbox, undefined variables as errors.

A template is up to three files named after it: `NAME.subject`, `NAME.txt` and,
optionally, `NAME.html`. The defaults ship in this package (`templates/`); a file
of the same name in `[email] templates_dir` replaces the default one.

Templates are written by operators and imported from WHMCS, so they are treated
as untrusted: rendered in Jinja2's SandboxedEnvironment, and any reach for an
attribute or key starting with `_` (`{{ ''.__class__ }}`) is refused before the
template is ever rendered. A template is also bounded (docs/rating.md, "Numbers,
limits and decks"): no value it makes may exceed MAX_SIZE characters or items, its
output MAX_OUTPUT characters, its rendering MAX_SECONDS; past any of them it is a
one-line TemplateError, never a hang or an exhausted memory.
"""

from __future__ import annotations

import functools
import operator
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from voipctl import money
from voipctl.errors import DataError
from voipctl.private import private_dir, write_private

PACKAGE_DIR = Path(__file__).parent / "templates"

LOW_BALANCE_ALERT = "low_balance_alert"
VOIP_ZERO_BALANCE = "voip_zero_balance"
MANUAL_ACTION = "manual_action_required"
AUTO_TOPUP_DONE = "auto_topup_done"
AUTO_TOPUP_FAILED = "auto_topup_failed"
AUTO_TOPUP_RENEW_AUTH = "auto_topup_renew_auth"
AUTO_TOPUP_OPERATOR = "auto_topup_operator"
AUTO_TOPUP_TEMPLATES = (
    AUTO_TOPUP_DONE,
    AUTO_TOPUP_FAILED,
    AUTO_TOPUP_RENEW_AUTH,
    AUTO_TOPUP_OPERATOR,
)
# The fraud guard's emails (docs/fraud.md): the operator's always, the client's if configured.
FRAUD_OPERATOR = "fraud_guard_operator"
FRAUD_GUARD = "fraud_guard"

# The variables of the client emails, named as operators know them from WHMCS.
CLIENT_VARIABLES = (
    "client_id",
    "client_first_name",
    "client_last_name",
    "client_name",
    "client_company_name",
    "client_email",
    "client_credit",
    "client_due_invoices_balance",
    "client_custom_field_lowbalancethreshold",
    "currency",
)
# The operator's "manual action required" email has these as well.
MANUAL_VARIABLES = (*CLIENT_VARIABLES, "service_id", "server", "action", "instructions")
# The automatic top-up emails have these as well (docs/topup.md).
TOPUP_VARIABLES = (
    *CLIENT_VARIABLES,
    "topup_amount",
    "topup_reference",
    "topup_status",
    "topup_reason",
    "client_custom_field_ccauthdate",
)
# The fraud guard's emails have the limit, the figure and (the operator's) the last calls.
FRAUD_VARIABLES = (*CLIENT_VARIABLES, "limit", "limit_value", "figure", "reason", "calls")
# The variables a template may use beyond the client's, by template name.
TEMPLATE_VARIABLES: dict[str, tuple[str, ...]] = {
    MANUAL_ACTION: MANUAL_VARIABLES,
    **dict.fromkeys(AUTO_TOPUP_TEMPLATES, TOPUP_VARIABLES),
    FRAUD_OPERATOR: FRAUD_VARIABLES,
    FRAUD_GUARD: FRAUD_VARIABLES,
}


def _manual_sample() -> dict[str, str]:
    from voipctl import providers

    return next((dict(p.manual_sample) for p in providers.plugins() if p.manual_sample), {})


SAMPLE_VARIABLES: dict[str, Any] = {
    "client_id": 42,
    "client_first_name": "Ada",
    "client_last_name": "Lovelace",
    "client_name": "Ada Lovelace",
    "client_company_name": "Analytical Engines Ltd",
    "client_email": "ada@example.com",
    "client_credit": "-1.25",
    "client_due_invoices_balance": "0.00",
    "client_custom_field_lowbalancethreshold": "5.00",
    "currency": "CAD",
    "service_id": 7,
    "action": "suspend",
    "topup_amount": "25.00",
    "topup_reference": "auto-topup-42-1",
    "topup_status": "declined",
    "topup_reason": "card declined",
    "client_custom_field_ccauthdate": "2025-01-31",
    "limit": "max_spend_per_hour",
    "limit_value": "50.00",
    "figure": "61.20",
    "reason": "fraud guard: max_spend_per_hour 61.20",
    "calls": "2026-03-01 02:10:00 UTC  outbound  5350000000  600 s  12.0000",
    # "server" and "instructions": a manual lever's, from the plugin that has one.
    **_manual_sample(),
}


class TemplateError(DataError):
    """A template does not parse, uses an unknown variable, or reaches for Python internals."""


# An email is a few kilobytes: these leave room for any real one and stop the rest.
MAX_SIZE = 1_000_000  # characters of a string, items of a list, made by one operation
MAX_OUTPUT = 1_000_000  # characters of one rendered part
MAX_SECONDS = 5.0  # of one rendered part
# A width or precision of 6+ digits in a format string ("%999999999d", "{:>999999999}").
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(?:\d{6,}|\d*\.\d{6,})|\{[^{}]*:[^{}]*\d{6,}[^{}]*\}")


class _TooBig(SecurityError):
    """A template operation would exceed the bounds above."""


def _size(value: Any) -> int:
    """What a value weighs: its length, and for a list of strings their lengths too."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(len(v) for v in value if isinstance(v, str | bytes | list | tuple))
    return 0


def _check_args(what: str, args: tuple, kwargs: Mapping[str, Any]) -> None:
    values = (*args, *kwargs.values())
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SIZE:
            raise _TooBig(f"{what}: argument {value} is beyond the limit of {MAX_SIZE}")
        if isinstance(value, str) and _WIDE_FORMAT.search(value):
            raise _TooBig(f"{what}: a format width beyond the limit of {MAX_SIZE}")
    sizes = sorted((_size(v) for v in values), reverse=True)
    if len(sizes) >= 2 and sizes[0] * max(sizes[1], 1) > MAX_SIZE * 10 and sizes[1] > 1:
        # str.replace of a long text by a long text, and the like.
        raise _TooBig(f"{what}: its arguments could make more than {MAX_SIZE} characters")


def _bounded_filter(name: str, func: Callable) -> Callable:
    @functools.wraps(func)  # keeps Jinja's pass_context / pass_environment marks
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_args(f"filter {name}", args, kwargs)
        return func(*args, **kwargs)

    return bounded


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with bounds on what one expression may allocate.

    `*` and `**` (and `+`, `%`) are intercepted: `[1]*10**9` is refused before any
    list is made. Filters and calls have their arguments checked the same way
    (`'x'|center(10**9)`). Lists and dicts cannot be changed in place (the
    immutable sandbox), and `namespace` is not offered, so nothing grows in a loop.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.globals.pop("namespace", None)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            # Floats overflow at once (OverflowError); ints grow: bound the result's bits.
            if isinstance(left, int) and isinstance(right, int):
                base = abs(left)
                if base > 1 and right > 0 and right * base.bit_length() > 64 * 1024:
                    raise _TooBig(f"{left!r} ** {right!r} is beyond the limit of 65536 bits")
        elif operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                repeats = isinstance(count, int) and not isinstance(seq, int | float)
                if repeats and _size(seq) * count > MAX_SIZE:
                    raise _TooBig(
                        f"a value of {_size(seq)} repeated {count} times is beyond "
                        f"the limit of {MAX_SIZE}"
                    )
            both = isinstance(left, int) and isinstance(right, int)
            if both and left.bit_length() + right.bit_length() > 64 * 1024:
                raise _TooBig("a product beyond the limit of 65536 bits")
        elif operator_ == "+":
            if _size(left) + _size(right) > MAX_SIZE:
                raise _TooBig(f"a sum of more than the limit of {MAX_SIZE}")
        elif operator_ == "%" and isinstance(left, str):
            _check_args("%", (left,), {})
        return _BINOPS[operator_](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        name = getattr(__obj, "__name__", type(__obj).__name__)
        # The sandbox hands str.format out wrapped: its string is the wrapped method's.
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(owner, str) and name in (
            "format",
            "format_map",
            "replace",
            "center",
            "ljust",
            "rjust",
            "zfill",
            "expandtabs",
        ):
            args = (owner, *args)  # fmt: skip
            _check_args(f"{name}()", args, kwargs)
            args = args[1:]
        else:
            _check_args(f"{name}()", args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


_BINOPS = {
    "*": operator.mul,
    "**": operator.pow,
    "+": operator.add,
    "%": operator.mod,
}


class _Deadline(BaseException):  # noqa: N818 - not an error a template's code may catch
    """The render ran past MAX_SECONDS."""


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Stop a render that runs past `seconds`, on whatever thread renders it.

    A trace function of this thread (sys.settrace is per thread) looks at the
    clock as the template's compiled code runs: every call and every line,
    which includes each turn of a loop with an empty body. A signal (SIGALRM)
    would reach the main thread only. Any trace function already set (a
    debugger, coverage) is put back afterwards.
    """
    end = time.monotonic() + seconds
    previous = sys.gettrace()
    steps = 0

    def check(frame: Any, event: str, arg: Any) -> Any:
        nonlocal steps
        steps += 1
        if not steps & 0xFF and time.monotonic() > end:
            raise _Deadline
        return check

    sys.settrace(check)
    try:
        yield
    finally:
        sys.settrace(previous)


def render_bounded(template: Any, variables: Mapping[str, Any], where: str) -> str:
    """Render within MAX_OUTPUT characters and MAX_SECONDS; TemplateError otherwise."""
    pieces: list[str] = []
    total = 0
    started = time.monotonic()
    try:
        with _deadline(MAX_SECONDS):
            for piece in template.generate(**variables):
                total += len(piece)
                if total > MAX_OUTPUT:
                    raise TemplateError(
                        f"{where}: refused: the output is longer than {MAX_OUTPUT} characters"
                    )
                pieces.append(piece)
                if time.monotonic() - started > MAX_SECONDS:
                    raise _Deadline
    except _Deadline:
        raise TemplateError(
            f"{where}: refused: rendering takes longer than {MAX_SECONDS:g} s"
        ) from None
    except _TooBig as exc:
        raise TemplateError(f"{where}: refused: {exc}") from None
    return "".join(pieces)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def client_variables(
    client: Any, *, credit: Decimal, owing: Decimal, currency: str | None = None
) -> dict[str, Any]:
    """The WHMCS-named variables of a client email; money as plain decimal strings."""
    threshold = client.low_balance_threshold
    first = client.first_name or ""
    last = client.last_name or ""
    return {
        "client_id": client.id,
        "client_first_name": first,
        "client_last_name": last,
        "client_name": f"{first} {last}".strip(),
        "client_company_name": client.company or "",
        "client_email": client.email,
        "client_credit": money.fmt(credit),
        "client_due_invoices_balance": money.fmt(owing),
        "client_custom_field_lowbalancethreshold": (
            money.fmt(threshold) if threshold is not None else ""
        ),
        "currency": currency or client.currency,
    }


def _refuse_internals(source: str, env: SandboxedEnvironment, where: str) -> None:
    """Refuse `x.__class__`, `x['__globals__']`, `x._private` before rendering anything."""
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"{where}:{exc.lineno}: {exc.message}") from None
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            name = node.arg.value
        if name is not None and name.startswith("_"):
            raise TemplateError(
                f"{where}:{node.lineno}: refused: the template reaches for {name!r}, "
                "an internal attribute; templates may only use their variables"
            )


class Templates:
    """The email templates: package defaults, each file overridable from `templates_dir`."""

    def __init__(self, templates_dir: Path | None = None):
        loaders = []
        if templates_dir is not None:
            loaders.append(FileSystemLoader(str(templates_dir)))
        loaders.append(FileSystemLoader(str(PACKAGE_DIR)))
        self.templates_dir = templates_dir
        self.env = BoundedSandbox(
            loader=ChoiceLoader(loaders),
            undefined=StrictUndefined,
            autoescape=lambda name: bool(name and name.endswith(".html")),
            keep_trailing_newline=True,
        )

    def _source(self, filename: str) -> tuple[str, str] | None:
        try:
            source, path, _ = self.env.loader.get_source(self.env, filename)
        except TemplateNotFound:
            return None
        return source, path or filename

    def _render_part(self, filename: str, variables: Mapping[str, Any]) -> str | None:
        found = self._source(filename)
        if found is None:
            return None
        source, where = found
        _refuse_internals(source, self.env, where)
        try:
            return render_bounded(self.env.get_template(filename), variables, where)
        except TemplateError:
            raise
        except SecurityError as exc:
            raise TemplateError(f"{where}: refused: {exc}") from None
        except UndefinedError as exc:
            known = ", ".join(sorted(variables))
            raise TemplateError(f"{where}: {exc.message} (variables: {known})") from None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"{where}:{exc.lineno}: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - a template's own error, e.g. 1/0
            raise TemplateError(f"{where}: cannot render: {exc}") from None

    def render(self, name: str, variables: Mapping[str, Any]) -> Rendered:
        """Render a template's subject, text body and optional HTML body."""
        subject = self._render_part(f"{name}.subject", variables)
        text = self._render_part(f"{name}.txt", variables)
        if subject is None or text is None:
            missing = f"{name}.subject" if subject is None else f"{name}.txt"
            raise TemplateError(f"email template {name!r}: no file {missing}")
        html = self._render_part(f"{name}.html", variables)
        # A header cannot hold a newline: the subject is the template's text on one line.
        subject = " ".join(subject.split())
        return Rendered(subject=subject, text=text, html=html)

    def check(self, name: str) -> Rendered:
        """Render a template with sample values: a bad template fails before any decision."""
        return self.render(name, SAMPLE_VARIABLES)


# --- WHMCS (Smarty) templates -------------------------------------------------

_SMARTY_TAG = re.compile(r"\{\*.*?\*\}|\{literal\}.*?\{/literal\}|\{[^{}\s][^{}]*\}", re.DOTALL)
_SMARTY_VAR = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
_SMARTY_IF = re.compile(r"^(if|elseif)\s+(!?)\$([A-Za-z_][A-Za-z0-9_]*)$")


def _jinja_literal(text: str) -> str:
    """Plain text, with anything Jinja2 would read as a tag kept as text."""
    if not any(mark in text for mark in ("{{", "{%", "{#")):
        return text
    return "{% raw %}" + text.replace("{% endraw %}", "") + "{% endraw %}"


def convert_whmcs(source: str, *, where: str, known: tuple[str, ...] = CLIENT_VARIABLES) -> str:
    """Convert a WHMCS (Smarty) email template to Jinja2.

    `{$var}` becomes `{{ var }}`, `{if $var}` / `{if !$var}` / `{elseif ...}` /
    `{else}` / `{/if}` become Jinja2 conditions, `{* comments *}` are dropped and
    `{literal}` blocks kept as text. Any other Smarty tag, modifier or a variable
    voipctl does not provide is refused with its line, rather than failing at send time.
    """
    out: list[str] = []
    pos = 0
    for match in _SMARTY_TAG.finditer(source):
        out.append(_jinja_literal(source[pos : match.start()]))
        pos = match.end()
        tag = match.group(0)
        line = source.count("\n", 0, match.start()) + 1
        if tag.startswith("{*"):
            continue
        if tag.startswith("{literal}"):
            out.append(_jinja_literal(tag[len("{literal}") : -len("{/literal}")]))
            continue
        inner = tag[1:-1].strip()
        var = _SMARTY_VAR.match(inner)
        cond = _SMARTY_IF.match(inner)
        name = var.group(1) if var else cond.group(3) if cond else None
        if name is not None and name not in known:
            raise TemplateError(
                f"{where}:{line}: unknown variable ${name} (voipctl provides: {', '.join(known)})"
            )
        if var:
            out.append("{{ " + name + " }}")
        elif cond:
            negate = "not " if cond.group(2) else ""
            out.append("{% " + cond.group(1) + " " + negate + name + " %}")
        elif inner == "else":
            out.append("{% else %}")
        elif inner == "/if":
            out.append("{% endif %}")
        else:
            raise TemplateError(
                f"{where}:{line}: Smarty tag {tag!r} cannot be converted "
                "(supported: {$var}, {if $var}, {if !$var}, {elseif $var}, {else}, {/if})"
            )
    out.append(_jinja_literal(source[pos:]))
    return "".join(out)


def import_whmcs(
    file: Path,
    name: str,
    dest_dir: Path,
    *,
    subject: str | None = None,
    html: bool = False,
) -> list[Path]:
    """Convert a WHMCS template file into `dest_dir/NAME.txt` (or `.html`) and, if given,
    its subject into `NAME.subject`. Checked by a sample render before anything is written."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise TemplateError(f"template name {name!r}: use letters, digits, _ and - only")
    known = TEMPLATE_VARIABLES.get(name, CLIENT_VARIABLES)
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"{file}: cannot read: {exc}") from None
    parts = {("html" if html else "txt"): convert_whmcs(source, where=str(file), known=known)}
    if subject is not None:
        parts["subject"] = convert_whmcs(subject, where="--subject", known=known)
    env = Templates().env
    for suffix, text in parts.items():
        where = f"{file}" if suffix != "subject" else "--subject"
        _refuse_internals(text, env, where)
        try:
            render_bounded(env.from_string(text), SAMPLE_VARIABLES, where)
        except TemplateError:
            raise
        except Exception as exc:  # noqa: BLE001 - any render failure refuses the import
            raise TemplateError(f"{where}: converted template does not render: {exc}") from None
    private_dir(dest_dir)
    written = []
    for suffix, text in parts.items():
        path = dest_dir / f"{name}.{suffix}"
        write_private(path, text.encode("utf-8"))
        written.append(path)
    return written
