"""pull-cdrs' one-pass rating through the driver stores exactly what the slow paths store.

Three ways to the same stored rows, compared value by value as the database holds
them (integer money units, epoch seconds): the driver path (`rate=True`: a
`PullRater`'s `rate_rows` values appended to each row's tuple, sqlite3
executemany or PostgreSQL COPY), the Core path (the same rater as a plain
`before_insert` hook filling Decimal money into row dicts), and `voipctl rate`
rating the stored calls afterwards. The sample reaches every status of
docs/rating.md §6, an override, a markup, inbound billing, free minutes and a
product without a deck. Also: the per-number cache of classification, and the
LES.NET raw record's JSON made by template, give what the slow ways give.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from tests.support.rating_support import write
from tests.support.support_data import add_client, add_product, add_service
from voipctl.config import Config
from voipctl.jobs.pull_cdrs import _Writer, pull_cdrs
from voipctl.jobs.rate import rate_cdrs
from voipctl.providers.base import CallRecord, ProviderAdapter, RawRecord, ServiceInfo
from voipctl.providers.lesnet.adapter import _RawTemplate
from voipctl.rating.deck import import_deck_file, set_override
from voipctl.rating.load import SessionSource
from voipctl.rating.pull import PULL_COLUMNS, PullRater
from voipctl.rating.rater import STATUSES, Rater

T0 = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)
DECK = """prefix,rate,increment,connect fee,direction
1,0.02,60/6,0,outbound
1519,0.01,6/6,0,outbound
44,0.05,1/1,0.10,outbound
4420,0.0312345,30/6,0,outbound
1800,0.02,6/6,0,inbound
"""
# (direction, number, billsec): every status, in a metered product with markup.
CALLS = [
    ("outbound", "+15195550100", 61),  # rated, 1519 with markup
    ("outbound", "+12125550100", 61),  # rated, the 1212 override (no markup)
    ("outbound", "5195550100", 7),  # NANP 10 digits
    ("outbound", "011442071234567", 31),  # exit code, 4420
    ("outbound", "+441611234567", 1),  # connect fee
    ("outbound", "18885550000", 30),  # suppressed
    ("outbound", "911", 30),  # excluded
    ("outbound", "*97", 5),  # excluded (feature code)
    ("outbound", "2112", 30),  # internal
    ("local", "+15195550100", 30),  # internal
    ("outbound", "12ab", 30),  # invalid_number
    ("outbound", None, 30),  # invalid_number
    ("outbound", "+15195550100", 0),  # unanswered
    ("inbound", "18005550100", 61),  # rated inbound (bill_inbound)
    ("inbound", "+19055550100", 61),  # no_rate inbound
    ("outbound", "+33123456789", 30),  # no_rate
]
PRODUCTS = {
    "Mixed": {
        "markup_percent": Decimal("25"),
        "bill_inbound": True,
        "exclude": "911",
        "suppress": "18885550000",
        "decimals": 4,
    },
    "Unmetered": {"metered": False},
    "NoInbound": {"bill_inbound": False, "decimals": 2},
    "Free": {"free_minutes": 1},
    "NoDeck": {},
}


class _Feed(ProviderAdapter):
    """The same calls for every service, provider ids unique per service."""

    type = "feed"

    def check(self):
        return "ok"

    def fetch_cdrs(self, service: ServiceInfo, since, until):
        for n, (direction, number, billsec) in enumerate(CALLS):
            start = T0 + timedelta(hours=n)
            yield CallRecord(
                provider_id=f"s{service.id}-{n}",
                direction=direction,
                start=start,
                billsec=billsec,
                number=number,
                caller="+15195550199",
                answer=start if billsec else None,
                end=start + timedelta(seconds=billsec),
                hangup_cause="answered" if billsec else "no_answer",
                raw={"n": n, "note": "é"},
            )

    def suspend(self, service, reason):
        raise NotImplementedError

    def unsuspend(self, service):
        raise NotImplementedError


def _setup(store, tmp_path):
    deck = write(tmp_path, "deck.csv", DECK)
    with store.transaction() as session:
        for n, (name, settings) in enumerate(PRODUCTS.items(), start=1):
            product = add_product(session, name, **settings)
            client = add_client(session, 100 + n)
            for server in ("fast", "core"):
                add_service(session, client, product, server=server, domain_field=f"{server}{n}")
            if name == "Mixed":
                set_override(session, product, "1212", Decimal("0.015"), increment=(1, 1))
    for name in PRODUCTS:
        if name != "NoDeck":
            import_deck_file(store, name, deck, effective_from=T0 - timedelta(days=1))


def _stored(store, server: str) -> dict[str, tuple]:
    """Every column of the server's CDRs as the database holds them, by call (not by id)."""
    skip = {"id", "server", "service_id", "client_id", "pulled_at", "rated_at", "provider_id"}
    with store.engine.connect() as conn:
        result = conn.execute(
            text("SELECT * FROM cdrs WHERE server = :s ORDER BY provider_id"), {"s": server}
        )
        names = list(result.keys())
        rows = {}
        for row in result:
            values = dict(zip(names, row, strict=True))
            key = values["provider_id"].split("-", 1)[1]
            product = values["service_id"]
            rows[(product, key)] = tuple(
                (name, values[name]) for name in names if name not in skip
            ) + (("rated", values["rated_at"] is not None),)
    return rows


def _by_product(rows: dict, offset: int) -> dict:
    return {(sid - offset, key): value for (sid, key), value in rows.items()}


def test_driver_path_core_path_and_rate_job_store_the_same_rows(store, tmp_path, monkeypatch):
    _setup(store, tmp_path)
    driver_rows = []
    insert_driver = _Writer._insert_driver

    def spy(self, conn, params):
        driver_rows.extend(params)
        return insert_driver(self, conn, params)

    monkeypatch.setattr(_Writer, "_insert_driver", spy)
    config = Config.model_validate(
        {"servers": {"fast": {"type": "lesnet"}, "core": {"type": "lesnet"}}}
    )

    def factory(name, cfg):
        return _Feed(name, cfg)

    fast = pull_cdrs(store, config, server="fast", rate=True, adapter_factory=factory, until=END)
    hook = PullRater(store)
    try:
        # A plain function: the writer cannot see `rater_for`, so the Core path runs.
        core = pull_cdrs(
            store,
            config,
            server="core",
            before_insert=lambda rows: hook(rows),
            adapter_factory=factory,
            until=END,
            chunk_size=7,
        )
    finally:
        hook.close()
    assert fast.exit_code == core.exit_code == 0
    # The fast pull went through the driver with the rating values; the Core one did not.
    assert len(driver_rows) == len(CALLS) * len(PRODUCTS)
    assert {row[-len(PULL_COLUMNS)] for row in driver_rows} >= {"rated", "unmetered", None}
    assert fast.stored == core.stored == len(CALLS) * len(PRODUCTS)

    # Services were added fast, core, fast, core...: service ids differ by one.
    one_pass = _by_product(_stored(store, "fast"), 0)
    assert one_pass == _by_product(_stored(store, "core"), 1)
    statuses = {dict(row)["status"] for row in one_pass.values()}
    assert statuses == {
        None,
        "suppressed",
        "excluded",
        "internal",
        "unanswered",
        "unmetered",
        "inbound_not_billed",
        "rated",
    }
    mixed = {key[1]: dict(row) for key, row in one_pass.items() if key[0] == 1}
    assert mixed["0"]["cost"] == 13_800_000  # 0.0125 x 66/60 = 0.01375 -> 0.0138
    assert (mixed["1"]["cost"], mixed["1"]["rate_source"]) == (15_300_000, "override")
    assert mixed["13"]["cost"] == 27_500_000  # inbound 1800, 0.025 x 66/60
    assert mixed["15"]["status"] is None  # no_rate: left for `voipctl rate`
    free_and_no_deck = [row for key, row in one_pass.items() if key[0] in (7, 9)]
    assert {dict(row)["status"] for row in free_and_no_deck} == {None}

    # `voipctl rate` from scratch stores what the pull stored, and rates what it left.
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE cdrs SET "
                + ", ".join(f"{c} = NULL" for c in PULL_COLUMNS)
                + " WHERE server = 'fast'"
            )
        )
    report = rate_cdrs(store)
    two_pass = _by_product(_stored(store, "fast"), 0)
    for key, row in one_pass.items():
        if dict(row)["status"] is not None:
            assert two_pass[key] == row, key
    assert {dict(row)["status"] for row in two_pass.values()} == set(STATUSES)
    assert report.counts["no_rate"] >= 2


def test_a_dry_run_rates_nothing_and_stores_nothing(store, tmp_path):
    _setup(store, tmp_path)
    config = Config.model_validate({"servers": {"fast": {"type": "lesnet"}}})
    report = pull_cdrs(
        store,
        config,
        server="fast",
        rate=True,
        dry_run=True,
        adapter_factory=lambda name, cfg: _Feed(name, cfg),
        until=END,
    )
    assert report.exit_code == 0 and report.servers[0].stored == len(CALLS) * len(PRODUCTS)
    assert _stored(store, "fast") == {}


def test_a_number_seen_before_rates_as_a_fresh_one(store, tmp_path):
    _setup(store, tmp_path)
    start = int(T0.timestamp())
    with store.session_factory() as session:
        rater = Rater(SessionSource(session))
        product = rater.product(1)  # Mixed: patterns, markup, inbound billed

        def all_calls():
            return [
                rater.rate(product, direction, number, billsec, start, billsec > 0)
                for number in {c[1] for c in CALLS}
                for direction in ("outbound", "inbound", "local")
                for billsec in (0, 61)
            ]

        first = all_calls()
        assert len(product.numbers) == len({c[1] for c in CALLS})
        again = all_calls()  # every number from the cache now
        product.numbers.clear()
        assert first == again == all_calls()
        assert {r.status for r in first} >= {"suppressed", "excluded", "internal", "rated"}


@settings(max_examples=300, deadline=None)
@given(
    keys=st.lists(st.text(max_size=6), min_size=1, max_size=6),
    row=st.lists(st.text(max_size=10), max_size=7),
)
def test_lesnet_raw_json_by_template_is_what_json_gives(keys, row):
    record = _RawTemplate(keys)(row)
    assert record == dict(zip(keys, row, strict=False))
    if isinstance(record, RawRecord):
        assert record.json == json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    else:
        assert len(set(keys)) < len(keys) or len(row) != len(keys)


def test_the_international_and_plain_digit_shortcuts_give_what_classify_gives(store, tmp_path):
    _setup(store, tmp_path)
    start = int(T0.timestamp())
    numbers = [
        "+1",
        "+1234567",
        "+12345678",
        "+123456789",
        "+15195550100",
        "+123456789012345",
        "+1234567890123456",
        "+١٢٣٤٥٦٧٨٩٠",
        "+1 519 555 0100",
        "++15195550100",
        "+",
        "15195550100",
        "011442071234567",
        "0114420712345678901",
        "123456789012345",
        "1234567890123456",
        "5195550100",
        "12345678901",
        "١٢٣٤٥٦٧٨٩٠١",
        "1234567",
        "911",
    ]
    with store.session_factory() as session:
        rater = Rater(SessionSource(session))
        product = rater.product(3)  # NoInbound: no patterns, so the shortcut applies
        assert not product.patterns

        def rate_all():
            return [
                rater.rate(product, direction, number, 61, start, True)
                for number in numbers
                for direction in ("outbound", "local")
            ]

        shortcut = rate_all()
        product.patterns = True  # the slow way: every number through classify()
        assert rate_all() == shortcut
        assert {r.status for r in shortcut} == {"rated", "internal", "invalid_number"}


def test_lesnet_repeated_rows_count_on_past_two(tmp_path):
    from tests.providers.lesnet.test_lesnet import SINCE, UNTIL, make, svc
    from tests.providers.lesnet.test_lesnet import write as write_file

    line = "2026-11-20 09:15:02,12046664021,15195550100,65,D4E3CD2BFC791,12046664021"
    other = "2026-11-20 09:15:02,12046664021,15195550199,65,D4E3CD2BFC791,12046664021"
    path = write_file(tmp_path, line, other, line, line, other, name="rows.txt")
    with make() as adapter:
        ids = [r.provider_id for r in adapter.fetch_cdrs(svc(link=str(path)), SINCE, UNTIL)]
    assert [i.rsplit("-", 1)[1] for i in ids] == ["0", "0", "1", "2", "1"]
    assert ids[0].rsplit("-", 1)[0] == ids[2].rsplit("-", 1)[0] != ids[1].rsplit("-", 1)[0]
