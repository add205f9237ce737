"""A v_xml_cdr row set aside in database mode is read again from its kept text by
`pull-cdrs --retry-rejected` (docs/providers.md, "Records set aside"): a real
PostgreSQL holding FusionPBX's tables, the pull and the retry through the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from tests.support.fusionpbx_env import TENANT
from voipctl.providers.fusionpbx import adapter as fusionpbx_module
from voipctl.store.models import Cdr, RejectedRecord

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_a_set_aside_database_row_is_read_again_from_its_kept_text(
    cli, store, fusion_db, tmp_path, monkeypatch
):
    fusion_db.add_domain(TENANT)
    ext = fusion_db.add_extension(TENANT, "2112")
    good = fusion_db.add_cdr(TENANT, extension_uuid=ext, start=T0)
    bad = fusion_db.add_cdr(TENANT, extension_uuid=ext, start=T0 + timedelta(minutes=1), billsec=-5)
    monkeypatch.setenv("FUSION1_DB_URL", fusion_db.url)
    config = tmp_path / "fusion.toml"
    config.write_text(
        '[servers.fusion1]\ntype = "fusionpbx"\nmode = "db"\ndb_url_env = "FUSION1_DB_URL"\n'
        'suspend = "domain"\ntimeout_s = 5\n',
        encoding="utf-8",
    )
    steps = [
        ("product", "add", "Metered"),
        ("client", "add", "42", "--first-name", "Ada", "--last-name", "Lovelace",
         "--email", "ada@example.com", "--has-voip-service"),
        ("service", "add", "--client", "42", "--product", "Metered", "--server", "fusion1",
         "--domain", f"{TENANT} | 5192229000", "--billed", "2112"),
    ]  # fmt: skip
    for step in steps:
        done = cli(*step, config=config)
        assert done.exit_code == 0, done.output
    window = ("--since", T0.isoformat(), "--until", (T0 + timedelta(hours=1)).isoformat())

    first = cli("pull-cdrs", *window, config=config)
    assert first.exit_code == 1, first.output
    assert first.stderr.startswith(
        f"pull-cdrs: fusion1: set aside service:1 {bad}: v_xml_cdr {bad}"
    )
    with store.transaction() as session:
        assert list(session.scalars(select(Cdr.provider_id))) == [good]

    # Before a fix: read again from the kept text, it still fails, with the same reason.
    still = cli("pull-cdrs", "--retry-rejected", config=config)
    assert still.exit_code == 1
    assert still.stderr.startswith(f"pull-cdrs: fusion1: still set aside service:1 {bad}: ")
    assert "cannot read a set-aside record again" not in still.stderr

    # The row is gone from FusionPBX (purged after the fix was made): the kept text is
    # what is read, not the table.
    fusion_db.execute("DELETE FROM v_xml_cdr WHERE xml_cdr_uuid = CAST(:u AS uuid)", u=bad)
    real = fusionpbx_module._billsec
    monkeypatch.setattr(
        fusionpbx_module,
        "_billsec",
        lambda value, where, server: real(str(abs(Decimal(str(value)))), where, server),
    )
    fixed = cli("pull-cdrs", "--retry-rejected", "--server", "fusion1", config=config)
    assert fixed.exit_code == 0, fixed.output
    assert fixed.stdout == (
        "pull-cdrs: retried 1 set-aside records: 1 resolved (1 calls stored), 0 still set aside\n"
    )
    with store.transaction() as session:
        stored = session.execute(
            select(Cdr.provider_id, Cdr.billsec, Cdr.start, Cdr.direction).order_by(Cdr.start)
        ).all()
        assert session.scalars(select(RejectedRecord.resolved_at)).one() is not None
    assert [(p, b, d) for p, b, _, d in stored] == [
        (good, 60, "outbound"),
        (bad, 5, "outbound"),
    ]
    assert stored[1][2] == T0 + timedelta(minutes=1)
