"""`voipctl status`: is billing working? What the jobs recorded, and what is stale.

Everything here is read from what the jobs already write: `job_runs` (each run,
its outcome and summary), `server_pulls` (each server's last pull and its count
of stored calls), `pull_watermarks` (the newest call seen per server), the
`cdrs` backlog and the outbox. A problem is one line: a job with no successful
run within its interval, a server with no successful pull within its own, a
backlog older than its limit (docs/status.md).

`notify()` mails the operator once when a problem appears and once when it
clears: the latch is `status_alerts`, written in the transaction that queues
the email.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from voipctl.config import Config
from voipctl.errors import ConfigError
from voipctl.notify import outbox
from voipctl.store.engine import Store
from voipctl.store.locks import job_lock
from voipctl.store.models import (
    PENDING_CDR,
    UNBILLED_CDR,
    Cdr,
    JobRun,
    OutboxEmail,
    Product,
    PullWatermark,
    ServerPullState,
    Service,
    StatusAlert,
)

STATUS_LOCK = "status"
DEDUPE_SCOPE = "dedupe-key:"  # pull_watermarks rows that hold a key name, not a call time
# Summary keys that mean "calls", named so in the metrics.
_FIGURE_NAMES = {"stored": "calls", "cdrs": "calls"}
_METRIC_NAME = re.compile(r"[^a-z0-9_]")


def span(minutes: int) -> str:
    """15 -> "15m", 1500 -> "25h", 1440 -> "1d"."""
    if minutes and minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes and minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def stamp(at: datetime | None) -> str:
    return "never" if at is None else at.strftime("%Y-%m-%dT%H:%M:%SZ")


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """A problem line stays one line: a provider's error text may hold a newline, and
    the line is also an email's Subject, where one would be refused."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass(frozen=True)
class Problem:
    key: str  # stable while the problem lasts: "job:autobill", "server:fusion1"
    line: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "line", one_line(self.line))


@dataclass
class JobStatus:
    job: str
    interval_minutes: int | None
    last_started_at: datetime | None = None
    last_finished_at: datetime | None = None
    last_status: str | None = None  # running | ok | failed
    last_summary: dict[str, Any] = field(default_factory=dict)
    last_success_at: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        if self.last_started_at is None or self.last_finished_at is None:
            return None
        return (self.last_finished_at - self.last_started_at).total_seconds()

    def figures(self) -> list[tuple[str, dict[str, str], int]]:
        """The counts of the last run: (name, labels, value); a table of counts per server."""
        out: list[tuple[str, dict[str, str], int]] = []
        for key, value in sorted(self.last_summary.items()):
            if isinstance(value, int) and not isinstance(value, bool):
                out.append((_figure(key), {}, value))
            elif isinstance(value, dict):
                for sub, count in sorted(value.items()):
                    if isinstance(count, int) and not isinstance(count, bool):
                        out.append((_figure(sub), {"server": key}, count))
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "interval_minutes": self.interval_minutes,
            "last_run": None
            if self.last_started_at is None
            else {
                "started_at": self.last_started_at,
                "finished_at": self.last_finished_at,
                "duration_s": self.duration_s,
                "status": self.last_status,
                "summary": self.last_summary,
            },
            "last_success_at": self.last_success_at,
        }


def _figure(key: str) -> str:
    return _METRIC_NAME.sub("_", _FIGURE_NAMES.get(key, key).lower())


@dataclass
class ServerStatus:
    server: str
    type: str | None
    active_services: int
    interval_minutes: int
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    newest_call_at: datetime | None = None
    cdrs_stored_total: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Backlog:
    """A count of calls or emails waiting, and since when the oldest has waited."""

    count: int = 0
    since: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "since": self.since}


@dataclass
class Status:
    now: datetime
    jobs: list[JobStatus]
    servers: list[ServerStatus]
    backlog: dict[str, Backlog] | None
    manual_action_services: int = 0
    suspended_clients: int = 0
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "generated_at": self.now,
            "ok": not self.problems,
            "problems": [{"problem": p.key, "line": p.line} for p in self.problems],
            "jobs": [j.as_dict() for j in self.jobs],
            "servers": [s.as_dict() for s in self.servers],
        }
        if self.backlog is not None:
            doc["backlog"] = {
                **{name: b.as_dict() for name, b in self.backlog.items()},
                "manual_action_services": self.manual_action_services,
                "suspended_clients": self.suspended_clients,
            }
        return doc


def _jobs(session: Session, config: Config, only: str | None) -> list[JobStatus]:
    intervals = config.status.job_intervals()
    last_ids = select(func.max(JobRun.id)).group_by(JobRun.job)
    ok_ids = select(func.max(JobRun.id)).where(JobRun.status == "ok").group_by(JobRun.job)
    if only is not None:
        last_ids = last_ids.where(JobRun.job == only)
        ok_ids = ok_ids.where(JobRun.job == only)
    last = {r.job: r for r in session.scalars(select(JobRun).where(JobRun.id.in_(last_ids)))}
    ok = {r.job: r for r in session.scalars(select(JobRun).where(JobRun.id.in_(ok_ids)))}
    names = set(last) | ({only} if only else {j for j, m in intervals.items() if m > 0})
    jobs = []
    for name in sorted(names):
        minutes = intervals.get(name)
        job = JobStatus(job=name, interval_minutes=minutes if minutes else None)
        run = last.get(name)
        if run is not None:
            job.last_started_at = run.started_at
            job.last_finished_at = run.finished_at
            job.last_status = run.status
            job.last_summary = dict(run.summary or {})
        if name in ok:
            job.last_success_at = ok[name].finished_at
        jobs.append(job)
    return jobs


def _servers(session: Session, config: Config) -> list[ServerStatus]:
    active = dict(
        session.execute(
            select(Service.server, func.count())
            .where(Service.active.is_(True))
            .group_by(Service.server)
        ).all()
    )
    types = dict(session.execute(select(Service.server, Service.server_type).distinct()).all())
    states = {r.server: r for r in session.scalars(select(ServerPullState))}
    newest = dict(
        session.execute(
            select(PullWatermark.server, func.max(PullWatermark.watermark))
            .where(~PullWatermark.scope.startswith(DEDUPE_SCOPE))
            .group_by(PullWatermark.server)
        ).all()
    )
    servers = []
    for name in sorted(set(active) | set(states) | set(config.servers)):
        kind = config.servers[name].type if name in config.servers else types.get(name)
        server = ServerStatus(
            server=name,
            type=kind,
            active_services=active.get(name, 0),
            interval_minutes=config.status.server_interval(name, kind),
            newest_call_at=newest.get(name),
        )
        state = states.get(name)
        if state is not None:
            server.last_run_at = state.last_run_at
            server.last_success_at = state.last_success_at
            server.last_error = state.last_error
            server.cdrs_stored_total = state.cdrs_stored_total
        servers.append(server)
    return servers


def _backlog(session: Session) -> dict[str, Backlog]:
    backlog = {name: Backlog() for name in ("unrated", "no_rate", "invalid_number", "unbilled")}
    # The same terms as ix_cdrs_pending / ix_cdrs_unbilled, so those indexes are used.
    for status, count, since in session.execute(
        select(Cdr.status, func.count(), func.min(Cdr.pulled_at))
        .where(text(PENDING_CDR))
        .group_by(Cdr.status)
    ):
        backlog["unrated" if status is None else status] = Backlog(count, since)
    count, since = session.execute(
        select(func.count(), func.min(Cdr.rated_at))
        .select_from(Cdr)
        .join(Service, Service.id == Cdr.service_id)
        .join(Product, Product.id == Service.product_id)
        .where(text(UNBILLED_CDR), Product.metered.is_(True))
    ).one()
    backlog["unbilled"] = Backlog(count, since)
    for name, attempted in (("emails_pending", False), ("emails_failed", True)):
        tried = OutboxEmail.attempts > 0 if attempted else OutboxEmail.attempts == 0
        count, since = session.execute(
            select(func.count(), func.min(OutboxEmail.created_at)).where(
                OutboxEmail.sent_at.is_(None), tried
            )
        ).one()
        backlog[name] = Backlog(count, since)
    return backlog


def _problems(status: Status, config: Config) -> list[Problem]:
    now = status.now
    problems: list[Problem] = []

    def old(at: datetime | None, minutes: int) -> bool:
        return at is None or now - at > timedelta(minutes=minutes)

    for job in status.jobs:
        minutes = job.interval_minutes
        if minutes and old(job.last_success_at, minutes):
            problems.append(
                Problem(
                    f"job:{job.job}",
                    f"job {job.job}: no successful run in {span(minutes)} "
                    f"(last success: {stamp(job.last_success_at)})",
                )
            )
    for server in status.servers:
        minutes = server.interval_minutes
        if server.active_services and minutes and old(server.last_success_at, minutes):
            why = f"; last error: {server.last_error}" if server.last_error else ""
            problems.append(
                Problem(
                    f"server:{server.server}",
                    f"server {server.server}: no successful pull in {span(minutes)} "
                    f"(last success: {stamp(server.last_success_at)}{why})",
                )
            )
    if status.backlog is None:
        return problems
    limits = config.status
    checks = [
        ("unrated", limits.unrated_max_minutes, "call", "not rated"),
        ("no_rate", limits.no_rate_max_minutes, "call", "in no_rate"),
        ("unbilled", limits.unbilled_max_minutes, "rated call", "not billed"),
        ("emails_pending", limits.email_max_minutes, "email", "not sent"),
        ("emails_failed", limits.email_max_minutes, "email", "failing to send"),
    ]
    for name, minutes, noun, what in checks:
        item = status.backlog[name]
        if minutes and item.count and old(item.since, minutes):
            nouns = noun if item.count == 1 else noun + "s"
            problems.append(
                Problem(
                    f"backlog:{name}",
                    f"backlog: {item.count} {nouns} {what} since {stamp(item.since)} "
                    f"(limit {span(minutes)})",
                )
            )
    return problems


def gather(
    session: Session,
    config: Config,
    *,
    now: datetime | None = None,
    job: str | None = None,
    backlog: bool = True,
) -> Status:
    """The whole picture (or only `job`'s and the servers', without the backlog)."""
    now = now or datetime.now(UTC)
    status = Status(
        now=now, jobs=_jobs(session, config, job), servers=_servers(session, config), backlog=None
    )
    if backlog:
        status.backlog = _backlog(session)
        status.manual_action_services = (
            session.scalar(
                select(func.count()).where(
                    Service.active.is_(True), Service.manual_action_required.is_(True)
                )
            )
            or 0
        )
        status.suspended_clients = (
            session.scalar(
                select(func.count(func.distinct(Service.client_id))).where(
                    Service.active.is_(True), Service.suspended.is_(True)
                )
            )
            or 0
        )
        status.problems = _problems(status, config)
    return status


# --- notification -----------------------------------------------------------------


@dataclass
class Notified:
    appeared: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    delivery: outbox.Delivery | None = None


def notify(store: Store, config: Config, *, now: datetime | None = None) -> tuple[Status, Notified]:
    """Decide and queue the operator's emails in one transaction, then deliver the outbox.

    A problem already in status_alerts is not mailed again; one that left the list
    is mailed as cleared and its row removed. Raises LockHeld when another
    `status --notify` is deciding.
    """
    operator = config.email.operator.strip()
    if not operator:
        raise ConfigError(f"{config.source}: email.operator: required by status --notify")
    result = Notified()
    host = socket.gethostname()
    with job_lock(store, STATUS_LOCK), store.transaction() as session:
        status = gather(session, config, now=now)
        now = status.now
        current = {p.key: p for p in status.problems}
        latched = {row.problem: row for row in session.scalars(select(StatusAlert))}
        for key, problem in current.items():
            if key in latched:
                continue
            session.add(StatusAlert(problem=key, line=problem.line, since=now))
            outbox.queue(
                session,
                template="status_problem",
                dedupe_key=f"status:{key}:{int(now.timestamp())}:appeared",
                recipient=operator,
                subject=f"voipctl: {problem.line}",
                body_text=(
                    f"voipctl status on {host} found a problem at {stamp(now)}:\n\n"
                    f"  {problem.line}\n\n"
                    "You will get one more email when it clears. "
                    "`voipctl status` shows the whole picture.\n"
                ),
            )
            result.appeared.append(problem.line)
        for key, row in latched.items():
            if key in current:
                continue
            outbox.queue(
                session,
                template="status_cleared",
                dedupe_key=f"status:{key}:{int(row.since.timestamp())}:cleared",
                recipient=operator,
                subject=f"voipctl: cleared: {row.line}",
                body_text=(
                    f"voipctl status on {host}: the problem found at {stamp(row.since)} "
                    f"has cleared at {stamp(now)}:\n\n  {row.line}\n"
                ),
            )
            session.delete(row)
            result.cleared.append(row.line)
    # As the jobs deliver: with WHMCS sending the client alerts, a client email that
    # waits in the outbox must still go through WHMCS, not through SMTP.
    from voipctl.billing.backend import backend_for  # noqa: PLC0415 - only --notify delivers

    result.delivery = backend_for(config).deliver_alerts(store, config)
    return status, result


# --- Prometheus text exposition ---------------------------------------------------


@dataclass
class Family:
    name: str
    kind: str  # gauge | counter
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def exposition(families: list[Family]) -> str:
    """The Prometheus text format (0.0.4): HELP and TYPE once per family, then samples."""
    lines: list[str] = []
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {family.help}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for labels, value in family.samples:
            shown = ",".join(f'{k}="{_label_value(v)}"' for k, v in sorted(labels.items()))
            lines.append(
                f"{family.name}{{{shown}}} {_number(value)}"
                if shown
                else f"{family.name} {_number(value)}"
            )
    return "\n".join(lines) + "\n" if lines else ""


def _ts(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def families(status: Status, *, job_files: bool = False) -> list[Family]:
    """The metrics of `status`; `job_files`: only job and server series (a job's file)."""
    fams: dict[str, Family] = {}

    def add(name: str, kind: str, help_text: str, labels: dict[str, str], value) -> None:
        if value is None:
            return
        fams.setdefault(name, Family(name, kind, help_text)).samples.append((labels, value))

    for job in status.jobs:
        lab = {"job": job.job}
        add(
            "voipctl_job_last_run_timestamp_seconds",
            "gauge",
            "When the job's last run started.",
            lab,
            _ts(job.last_started_at),
        )
        add(
            "voipctl_job_last_run_finished_timestamp_seconds",
            "gauge",
            "When the job's last run finished.",
            lab,
            _ts(job.last_finished_at),
        )
        add(
            "voipctl_job_last_run_duration_seconds",
            "gauge",
            "How long the job's last run took.",
            lab,
            job.duration_s,
        )
        if job.last_status is not None:
            add(
                "voipctl_job_last_run_success",
                "gauge",
                "1 if the job's last run finished without failures, else 0.",
                lab,
                1 if job.last_status == "ok" else 0,
            )
        add(
            "voipctl_job_last_success_timestamp_seconds",
            "gauge",
            "When the job last finished a run without failures.",
            lab,
            _ts(job.last_success_at),
        )
        if job.interval_minutes:
            add(
                "voipctl_job_interval_seconds",
                "gauge",
                "Within how long the job must succeed before it is stale.",
                lab,
                job.interval_minutes * 60,
            )
        for name, labels, value in job.figures():
            add(
                f"voipctl_job_last_run_{name}",
                "gauge",
                f"The job's last run: {name.replace('_', ' ')}.",
                {**lab, **labels},
                value,
            )
    if not job_files or any(j.job == "pull-cdrs" for j in status.jobs):
        for server in status.servers:
            lab = {"server": server.server}
            add(
                "voipctl_server_last_success_timestamp_seconds",
                "gauge",
                "When pull-cdrs last read the server without an error.",
                lab,
                _ts(server.last_success_at),
            )
            add(
                "voipctl_server_newest_call_timestamp_seconds",
                "gauge",
                "Start of the newest call pulled from the server.",
                lab,
                _ts(server.newest_call_at),
            )
            add(
                "voipctl_server_active_services",
                "gauge",
                "Active services on the server.",
                lab,
                server.active_services,
            )
            add(
                "voipctl_cdrs_stored_total",
                "counter",
                "Calls stored from the server by pull-cdrs.",
                lab,
                server.cdrs_stored_total,
            )
    if status.backlog is not None and not job_files:
        for name, item in status.backlog.items():
            if name.startswith("emails_"):
                state = name.removeprefix("emails_")
                add(
                    "voipctl_outbox_emails",
                    "gauge",
                    "Outbox emails not sent, by state.",
                    {"state": state},
                    item.count,
                )
                add(
                    "voipctl_outbox_oldest_timestamp_seconds",
                    "gauge",
                    "When the oldest unsent email of the state was queued.",
                    {"state": state},
                    _ts(item.since),
                )
            else:
                add(
                    "voipctl_backlog_calls",
                    "gauge",
                    "Calls waiting, by state.",
                    {"state": name},
                    item.count,
                )
                add(
                    "voipctl_backlog_oldest_timestamp_seconds",
                    "gauge",
                    "Since when the oldest call of the state has waited.",
                    {"state": name},
                    _ts(item.since),
                )
        add(
            "voipctl_services_manual_action",
            "gauge",
            "Active services waiting for a manual action.",
            {},
            status.manual_action_services,
        )
        add(
            "voipctl_clients_suspended",
            "gauge",
            "Clients with a suspended active service.",
            {},
            status.suspended_clients,
        )
        add(
            "voipctl_status_problems",
            "gauge",
            "Problems voipctl status reports (0: nothing is stale).",
            {},
            len(status.problems),
        )
    return list(fams.values())


def write_textfile(directory: Path, job: str, content: str) -> Path:
    """Write DIR/voipctl_<job>.prom atomically: a temporary file in DIR, then a rename.

    node_exporter reads only `*.prom`, and a rename within one file system is
    atomic, so a scrape sees the old file or the new one, never half of one.
    """
    target = directory / f"voipctl_{job}.prom"
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".voipctl_{job}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"metrics directory {directory}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        # Counts and times only, no client data: readable by node_exporter's user.
        os.chmod(tmp, 0o644)  # noqa: S103 - deliberately world-readable, see above
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"metrics directory {directory}: cannot write: {exc.strerror}") from None
    return target


def write_job_metrics(store: Store, config: Config, job: str, directory: Path) -> Path:
    """The job's last run (and, for pull-cdrs, each server's pull) as DIR/voipctl_<job>.prom."""
    with store.transaction() as session:
        status = gather(session, config, job=job, backlog=False)
    return write_textfile(directory, job, exposition(families(status, job_files=True)))
