"""The cdr table mode against real servers: FreePBX's table on MariaDB, cdr_pgsql's on PostgreSQL.

The tables are created from tests/fixtures/asterisk/freepbx_cdr.sql and
cdr_pgsql.sql (their sources in the README there); the rows hold what the CDR
backends write: FreePBX's through cdr_adaptive_odbc (`alias start => calldate`,
local time), cdr_pgsql's as `%Y-%m-%d %T` in local time with an unset column
(a call never answered) left NULL (cdr/cdr_pgsql.c pgsql_log).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import make_url

from tests import support
from voipctl.errors import ConfigError, DataError
from voipctl.providers.asterisk.master_csv import CallRules, Layout, RowReader, Skipped
from voipctl.providers.asterisk.table import CdrTable
from voipctl.providers.base import CallRecord, Rejected

FIXTURES = support.FIXTURES / "asterisk"
RULES = CallRules(trunk_prefixes=("PJSIP/trunk-",))
ZONE = "America/Toronto"
SINCE = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
UNTIL = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)

FREEPBX_COLUMNS = (
    "calldate, clid, src, dst, dcontext, channel, dstchannel, lastapp, lastdata, duration, "
    "billsec, disposition, amaflags, accountcode, uniqueid, userfield, did, linkedid, sequence"
)
# The rows of master__default.csv as FreePBX keeps them (amaflags 3 = DOCUMENTATION,
# include/asterisk/channel.h), with the DID the inbound call came in on.
FREEPBX_ROWS = [
    ("2026-11-20 09:15:02", '"Alice Smith" <101>', "101", "15195550100", "from-internal",
     "PJSIP/101-00000001", "PJSIP/trunk-voipms-00000002", "Dial",
     "PJSIP/15195550100@trunk-voipms,300,Tt", 72, 65, "ANSWERED", 3, "", "1795184102.1", "",
     "", "1795184102.1", 7),
    ("2026-11-20 09:20:00", '"CALLER, ONE" <12045550111>', "12045550111", "600", "ext-group",
     "PJSIP/trunk-voipms-00000003", "PJSIP/101-00000004", "Dial", "PJSIP/101,20,tr", 60, 56,
     "ANSWERED", 3, "", "1795184400.3", "", "5195550199", "1795184400.3", 8),
    ("2026-11-20 09:20:00", '"CALLER, ONE" <12045550111>', "12045550111", "600", "ext-group",
     "PJSIP/trunk-voipms-00000003", "PJSIP/102-00000005", "Dial", "PJSIP/102,20,tr", 4, 0,
     "NO ANSWER", 3, "", "1795184400.3", "", "5195550199", "1795184400.3", 9),
    ("2026-11-20 09:45:00", '"Alice Smith" <101>', "101", "102", "from-internal",
     "PJSIP/101-00000006", "PJSIP/102-00000007", "Dial", "PJSIP/102,,HhTtr", 123, 120,
     "ANSWERED", 3, "", "1795185900.6", "", "", "1795185900.6", 10),
    # Written by an Asterisk without linkedid/sequence (the columns' defaults).
    ("2026-11-20 09:30:00", '"Alice Smith" <101>', "101", "18005550199", "from-internal",
     "PJSIP/101-00000008", "PJSIP/trunk-voipms-00000009", "Dial", "x", 30, 20, "ANSWERED", 3,
     "", "1795185000.8", "", "", "", 0),
    # Outside the window [14:00, 15:00) UTC: 08:59:59 and 10:00:00 local (EST, UTC-5).
    ("2026-11-20 08:59:59", "", "101", "1", "from-internal", "PJSIP/101-1", "PJSIP/trunk-a-2",
     "Dial", "x", 5, 5, "ANSWERED", 3, "", "1795182000.1", "", "", "1795182000.1", 1),
    ("2026-11-20 10:00:00", "", "101", "1", "from-internal", "PJSIP/101-1", "PJSIP/trunk-a-2",
     "Dial", "x", 5, 5, "NO ANSWER", 3, "", "1795186800.1", "", "", "1795186800.1", 2),
]  # fmt: skip


@pytest.fixture
def freepbx_db(mariadb):
    name = f"asteriskcdrdb_{uuid.uuid4().hex[:8]}"
    admin = mariadb.connect()
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn = mariadb.connect(name)
    with conn.cursor() as cur:
        cur.execute((FIXTURES / "freepbx_cdr.sql").read_text())
        cur.executemany(
            f"INSERT INTO cdr ({FREEPBX_COLUMNS}) VALUES ({', '.join(['%s'] * 19)})",
            FREEPBX_ROWS,
        )
    yield conn
    conn.close()
    with admin.cursor() as cur:
        cur.execute(f"DROP DATABASE {name}")
    admin.close()


def test_freepbx_table_on_mariadb(freepbx_db):
    table = CdrTable(freepbx_db, dialect="mysql", table="cdr", zone=ZONE, rules=RULES)
    assert table.start_column == "calldate"
    assert table.layout.newcdrcolumns and table.layout.loguniqueid
    out = list(table.fetch(SINCE, UNTIL))
    outbound, inbound, missed, old, local = out
    assert isinstance(outbound, CallRecord)
    assert outbound.provider_id == "1795184102.1:7"
    assert (outbound.direction, outbound.number, outbound.extension) == (
        "outbound",
        "15195550100",
        "101",
    )
    assert outbound.start == datetime(2026, 11, 20, 14, 15, 2, tzinfo=UTC)
    assert (outbound.billsec, outbound.answer, outbound.end) == (65, None, None)
    assert outbound.raw["clid"] == '"Alice Smith" <101>'
    assert outbound.raw["amaflags"] == "DOCUMENTATION"
    # Inbound: the number is FreePBX's did column, the extension the dst reached.
    assert (inbound.direction, inbound.number, inbound.extension, inbound.caller) == (
        "inbound",
        "5195550199",
        "600",
        "12045550111",
    )
    assert missed == Skipped(
        "table cdr row of 2026-11-20 09:20:00 (uniqueid 1795184400.3)",
        "disposition 'NO ANSWER', not ANSWERED",
    )
    assert local == Skipped(
        "table cdr row of 2026-11-20 09:45:00 (uniqueid 1795185900.6)",
        "a local row (no trunk, no inbound context or DID)",
    )
    # No linkedid written: the key falls back to the row's digest, led by its uniqueid.
    assert old.provider_id.startswith("1795185000.8-") and old.provider_id.endswith("-0")
    assert old.start == datetime(2026, 11, 20, 14, 30, tzinfo=UTC)


def test_freepbx_bad_row_is_set_aside_naming_it(freepbx_db):
    with freepbx_db.cursor() as cur:
        cur.execute(
            f"INSERT INTO cdr ({FREEPBX_COLUMNS}) VALUES ({', '.join(['%s'] * 19)})",
            ("2026-11-20 09:40:00", "", "101", "1", "from-internal", "PJSIP/101-1",
             "PJSIP/trunk-a-2", "Dial", "x", 5, 9, "ANSWERED", 3, "", "1795185600.1", "", "",
             "1795185600.1", 11),
        )  # fmt: skip
    table = CdrTable(freepbx_db, dialect="mysql", zone=ZONE, rules=RULES)
    (bad,) = [o for o in table.fetch(SINCE, UNTIL) if isinstance(o, Rejected)]
    assert bad.reason == (
        "table cdr row of 2026-11-20 09:40:00 (uniqueid 1795185600.1): "
        "billsec 9 is more than duration 5"
    )
    assert '"uniqueid":"1795185600.1"' in bad.raw


def test_not_a_cdr_table_is_one_line(freepbx_db):
    with freepbx_db.cursor() as cur:
        cur.execute("CREATE TABLE cel (id int, eventtime datetime)")
    with pytest.raises(DataError) as exc:
        CdrTable(freepbx_db, dialect="mysql", table="cel", zone=ZONE)
    assert str(exc.value) == (
        "table cel: no column start or calldate, src, dst, dcontext, channel, dstchannel, "
        "duration, billsec, disposition: not a cdr table"
    )
    with pytest.raises(ConfigError) as exc:
        CdrTable(freepbx_db, dialect="mysql", table="cdr; DROP TABLE cdr", zone=ZONE)
    assert (
        str(exc.value) == "table: 'cdr; DROP TABLE cdr' is not a table name (name or schema.name)"
    )
    with pytest.raises(ConfigError) as exc:
        CdrTable(freepbx_db, dialect="sqlite", zone=ZONE)
    assert str(exc.value) == "dialect: 'sqlite' is not one of mysql, postgresql"


@pytest.fixture
def pgsql_cdr(pg_server):
    import psycopg

    url = make_url(pg_server.create("astcdr")).set(drivername="postgresql")
    conn = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    conn.execute((FIXTURES / "cdr_pgsql.sql").read_text())
    yield conn
    conn.close()


def test_cdr_pgsql_table_reads_as_master_csv_does(pgsql_cdr):
    # The rows of master__all_flags.csv, as cdr_pgsql inserts them: every column the
    # table has, an unanswered call's answer left NULL.
    layout = Layout(loguniqueid=True, loguserfield=True, newcdrcolumns=True, zone=ZONE)
    reader = RowReader(layout, RULES, source="Master.csv")
    csv_out = []
    with pgsql_cdr.cursor() as cur:
        lines = (FIXTURES / "master__all_flags.csv").read_text().splitlines()
        for n, line in enumerate(lines, 1):
            row = reader.split(line, n)
            csv_out.append(reader.record(row, f"line {n}", line))
            values = {
                k: (v if v != "" or k not in ("answer", "end") else None) for k, v in row.items()
            }
            cols = ", ".join(f'"{k}"' for k in values)
            cur.execute(
                f"INSERT INTO cdr ({cols}) VALUES ({', '.join(['%s'] * len(values))})",
                [
                    int(v) if k in ("duration", "billsec", "sequence") else v
                    for k, v in values.items()
                ],
            )
    table = CdrTable(pgsql_cdr, dialect="postgresql", zone=ZONE, rules=RULES)
    assert table.start_column == "start"
    out = list(table.fetch(SINCE, UNTIL))
    records = [o for o in out if isinstance(o, CallRecord)]
    assert records == [o for o in csv_out if isinstance(o, CallRecord)]
    assert [r.provider_id for r in records] == ["1795184102.1:7", "1795184400.3:8"]
    assert records[0].answer == datetime(2026, 11, 20, 14, 15, 9, tzinfo=UTC)
    assert out[2] == Skipped(
        "table cdr row of 2026-11-20 09:20:00 (uniqueid 1795184400.3)",
        "disposition 'NO ANSWER', not ANSWERED",
    )


def test_select_quotes_names_mysql(freepbx_db):
    mysql = CdrTable(freepbx_db, dialect="mysql", zone=ZONE).select()
    assert mysql.startswith("SELECT `calldate`, `clid`, `src`, ")
    assert mysql.endswith(
        "FROM `cdr` WHERE `calldate` >= %s AND `calldate` < %s ORDER BY `calldate`"
    )


def test_select_quotes_names_postgresql(pgsql_cdr):
    pg = CdrTable(pgsql_cdr, dialect="postgresql", zone=ZONE).select()
    # "end" is a reserved word in PostgreSQL: every name is quoted.
    assert ', "answer", "end", "duration", ' in pg
    assert pg.endswith('FROM "cdr" WHERE "start" >= %s AND "start" < %s ORDER BY "start"')
