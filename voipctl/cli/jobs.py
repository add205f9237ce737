"""The billing jobs: `autobill`, `low-balance`, `auto-topup`, `autosuspend`, `suspend`,
`unsuspend`, and `template import` for the email templates."""

from __future__ import annotations

from pathlib import Path

import click

from voipctl import money
from voipctl.billing.backend import backend_for
from voipctl.cli.app import get_app
from voipctl.cli.options import ID, client_option, dry_run_option, metrics_option
from voipctl.cli.output import say, say_text
from voipctl.cli.runner import run_job
from voipctl.errors import ConfigError
from voipctl.jobs import auto_topup as auto_topup_job
from voipctl.jobs import autobill as autobill_job
from voipctl.jobs import autosuspend as autosuspend_job
from voipctl.jobs import low_balance as low_balance_job
from voipctl.jobs import suspend as suspend_job
from voipctl.jobs.report import JobReport, summary_of
from voipctl.jobs.runner import RunState
from voipctl.notify import templates as notify_templates


def _report(job: str, state: RunState, figures: str, details: list[str]) -> JobReport:
    """The billing jobs' report: their summary line and the failures the run recorded."""
    return JobReport(
        job=job,
        summary=summary_of(job, figures, dry_run=state.dry_run),
        failures=list(state.failures),
        details=details,
        data=dict(state.summary),
        dry_run=state.dry_run,
    )


@click.command()
@metrics_option("autobill")
@client_option
@dry_run_option
def autobill(client_id, dry_run):
    """Charge rated, unbilled calls of metered services to the ledger.

    One charge per service and run (a backlog of over 50,000 calls: one per
    service in each window of 50,000); each call is marked billed by its charge in
    the same transaction, so a run killed at any point and run again bills each
    call exactly once. A second run while one is going exits 75.

    \b
    Example: voipctl autobill --client 42 --dry-run
    """
    app = get_app()
    store = app.store()
    backend = backend_for(app.config)

    def work(state: RunState) -> JobReport:
        charges = autobill_job.run_autobill(
            store, backend, state, client_id=client_id, dry_run=dry_run
        )
        details = [
            f"would charge client {c.client_id} service {c.service_id}: "
            f"{money.fmt(-c.amount)} for {c.cdr_count} calls "
            f"(CDR {c.first_id}..{c.last_id}, reference {c.reference})"
            for c in (charges if dry_run else [])
        ]
        s = state.summary
        figures = f"{s['charges']} charges, {s['cdrs']} calls, {s['amount']} total"
        return _report("autobill", state, figures, details)

    return run_job("autobill", work, dry_run=dry_run)


@click.command("low-balance")
@metrics_option("low-balance")
@dry_run_option
def low_balance(dry_run):
    """Send the latched "Low Balance Alert" emails, then deliver the outbox.

    A client at or below its Low Balance Threshold is mailed once per crossing;
    a top-up above the threshold re-arms the alert.

    \b
    Example: voipctl low-balance --dry-run
    """
    app = get_app()
    store = app.store()
    config = app.config

    def work(state: RunState) -> JobReport:
        decisions = low_balance_job.run_low_balance(
            store, config, backend_for(config), state, dry_run=dry_run
        )
        shown = dry_run or app.verbosity > 0
        details = [("would: " if dry_run else "") + d.describe() for d in decisions if shown]
        s = state.summary
        line = f"{s['alerts']} alerts, {s['rearmed']} re-armed"
        if "emails_sent" in s:
            line += f", {s['emails_sent']} emails sent"
        if s.get("emails_pending"):
            line += f", {s['emails_pending']} waiting for the next run"
        return _report("low-balance", state, line, details)

    return run_job("low-balance", work, dry_run=dry_run)


@click.command("auto-topup")
@metrics_option("auto-topup")
@click.option(
    "--retry",
    "retry_client",
    metavar="CLIENT",
    type=ID,
    help="Only this client, taken again now although latched (after a declined charge).",
)
@dry_run_option
def auto_topup(retry_client, dry_run):
    """Charge the card on file of clients whose credit ran low: once per crossing.

    Clients with CC Auth on File and an Auto VoIP Top Amount, at or below their
    Low Balance Threshold (or zero), are charged that amount once; the credit
    must rise above the threshold before the next. At most [topup] max_per_day
    a day; an authorisation older than [topup] auth_valid_days is not charged
    (the client is asked to renew it). A charge whose outcome is unknown is
    retried on every run under its own reference only. Run it before autosuspend.

    \b
    Example: voipctl auto-topup -q; voipctl autosuspend -q
    """
    app = get_app()
    store = app.store()
    config = app.config

    def work(state: RunState) -> JobReport:
        lines = auto_topup_job.run_auto_topup(
            store,
            config,
            backend_for(config),
            state,
            retry_client=retry_client,
            dry_run=dry_run,
        )
        shown = dry_run or app.verbosity > 0 or retry_client is not None
        details = [line.describe() for line in lines if shown]
        s = state.summary
        line = (
            f"{s['topups']} topped up, {s['declined']} declined, {s['unknown']} unknown, "
            f"{s['capped']} at the daily cap, {s['renew']} authorisations expired, "
            f"{s['rearmed']} re-armed"
        )
        if "emails_sent" in s:
            line += f", {s['emails_sent']} emails sent"
        if s.get("emails_pending"):
            line += f", {s['emails_pending']} waiting for the next run"
        return _report("auto-topup", state, line, details)

    return run_job("auto-topup", work, dry_run=dry_run)


@click.command()
@metrics_option("autosuspend")
@dry_run_option
def autosuspend(dry_run):
    """Suspend or restore VoIP services from each client's credit, owing and overrides.

    Only clients with Has VoIP Service = yes; an operator's hold is never
    lifted; a provider that fails is retried on the next run (exit 1). The fraud
    guard's limits ([fraud], docs/fraud.md) are checked first: a client that
    reaches one is suspended and held until `voipctl unsuspend`.

    \b
    Example: voipctl autosuspend --dry-run
    """
    app = get_app()
    store = app.store()
    config = app.config

    def work(state: RunState) -> JobReport:
        lines = autosuspend_job.run_autosuspend(
            store, config, backend_for(config), state, dry_run=dry_run
        )
        details = list(lines) if dry_run or app.verbosity > 0 else []
        s = state.summary
        line = f"{s['suspended']} suspended, {s['unsuspended']} unsuspended, {s['failed']} failed"
        if s.get("manual"):
            line += f", {s['manual']} need manual action"
        if "emails_sent" in s:
            line += f", {s['emails_sent']} emails sent"
        return _report("autosuspend", state, line, details)

    return run_job("autosuspend", work, dry_run=dry_run)


def _manual(action: str, service_id, client_id, reason, dry_run) -> int:
    if (service_id is None) == (client_id is None):
        raise click.UsageError("give exactly one of --service ID or --client ID")
    app = get_app()
    store = app.store()

    def work(state: RunState) -> JobReport:
        lines = suspend_job.run_manual(
            store,
            app.config,
            state,
            action=action,
            service_id=service_id,
            client_id=client_id,
            reason=reason or "",
            dry_run=dry_run,
        )
        # The operator asked for this at the terminal: say what happened to each service;
        # no summary line.
        return JobReport(
            job=action,
            failures=list(state.failures),
            details=list(lines),
            data=dict(state.summary),
            dry_run=dry_run,
        )

    return run_job(action, work, dry_run=dry_run)


_target = [
    click.option("--service", "service_id", type=ID, help="This service."),
    click.option("--client", "client_id", type=ID, help="Every active service of this client."),
    click.option("--reason", help="Why; kept in the audit row."),
    dry_run_option,
]


def _with_target(fn):
    for option in reversed(_target):
        fn = option(fn)
    return fn


@click.command()
@metrics_option("suspend")
@_with_target
def suspend(service_id, client_id, reason, dry_run):
    """Suspend at once through the provider: an operator's hold.

    A service suspended this way stays suspended whatever its credit until
    `voipctl unsuspend`. Suspending a suspended service is a no-op that says so.

    \b
    Example: voipctl suspend --service 17 --reason "fraud check"
    """
    return _manual("suspend", service_id, client_id, reason, dry_run)


@click.command()
@metrics_option("unsuspend")
@_with_target
def unsuspend(service_id, client_id, reason, dry_run):
    """Restore at once through the provider, lifting any hold.

    autosuspend decides again on its next run: a client still out of credit is
    suspended again unless its VoIP Suspended field is set to `no`.

    \b
    Example: voipctl unsuspend --client 42 --reason "paid by cheque"
    """
    return _manual("unsuspend", service_id, client_id, reason, dry_run)


@click.group()
def template():
    """The email templates: each one shown with sample data, or imported from WHMCS.

    The names: low_balance_alert, voip_zero_balance, manual_action_required,
    auto_topup_done, auto_topup_failed, auto_topup_renew_auth, auto_topup_operator,
    fraud_guard, fraud_guard_operator.
    """


@template.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name")
@click.option("--subject", help="The subject line (WHMCS style allowed: {$client_first_name}).")
@click.option("--html", is_flag=True, help="FILE is the HTML body (default: the text body).")
@click.option(
    "--dir",
    "dest",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write (default: [email] templates_dir).",
)
def template_import(file, name, subject, html, dest):
    """Convert a WHMCS email template ({$var}) into a voipctl template.

    Writes NAME.txt (or NAME.html) and, with --subject, NAME.subject into the
    templates directory; refuses Smarty tags and variables voipctl cannot fill.

    \b
    Example: voipctl template import low_balance.tpl low_balance_alert --subject "Low balance"
    """
    dest = dest or get_app().config.email.templates_dir
    if dest is None:
        raise ConfigError("template import: set [email] templates_dir or give --dir")
    for path in notify_templates.import_whmcs(file, name, dest, subject=subject, html=html):
        say(f"wrote {path}")


@template.command("show")
@click.argument("name")
def template_show(name):
    """Render a template with sample values, as a check of an override.

    \b
    Example: voipctl template show low_balance_alert
    """
    templates = notify_templates.Templates(get_app().config.email.templates_dir)
    rendered = templates.check(name)
    # The rendered text holds client data: its lines are printed inert, as every line is.
    say(f"Subject: {rendered.subject}")
    say_text(f"\n{rendered.text}", nl=False)
    if rendered.html:
        say_text(f"\n--- HTML ---\n{rendered.html}", nl=False)


COMMANDS = [autobill, low_balance, auto_topup, autosuspend, suspend, unsuspend, template]
