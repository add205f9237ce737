"""Times read by slicing are exactly what strptime reads (voipctl/providers/times.py).

The oracle is `datetime.strptime` itself, with the zone attached as the
adapters attach it: for every fixed-width layout, any text of the layout's
width built from its digits and separators gives the same epoch by slicing as
by strptime, or the same refusal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fuzzing import FUZZ
from voipctl.providers.times import LocalTimes

ZONE = ZoneInfo("America/Toronto")
FIXED = [
    "%Y-%m-%d %H:%M:%S",  # LES.NET's default, cdr_csv's
    "%d/%m/%Y %H:%M:%S",  # day-first
    "%m/%d/%Y %H:%M:%S",  # month-first
    "%d.%m.%Y %H:%M",  # no seconds
    "%Y%m%d%H%M%S",  # no separators
    "%Y-%m-%dT%H:%M:%S 100%%",  # a literal percent sign
]


def strptime_epoch(text: str, time_format: str) -> int:
    return int(datetime.strptime(text, time_format).replace(tzinfo=ZONE).timestamp())


def outcome(read, text: str):
    try:
        return read(text)
    except ValueError:
        return "refused"


@pytest.mark.parametrize("time_format", FIXED)
def test_fixed_width_layouts_are_read_by_slicing(time_format):
    assert LocalTimes(time_format, ZONE).fast


@pytest.mark.parametrize("time_format", ["%d %b %Y %H:%M:%S", "%y-%m-%d %H:%M:%S", "%Y-%m-%d"])
def test_other_layouts_are_read_by_strptime(time_format):
    # A month name, a two-digit year, no hour: strptime reads them, no slicing.
    times = LocalTimes(time_format, ZONE)
    assert not times.fast
    text = datetime(2026, 11, 20, 9, 15, 2).strftime(time_format)
    assert times.epoch(text) == strptime_epoch(text, time_format)


@FUZZ
@given(
    time_format=st.sampled_from(FIXED),
    when=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31)),
)
def test_every_time_written_in_a_layout_reads_as_strptime_reads_it(time_format, when):
    text = when.strftime(time_format)
    assert LocalTimes(time_format, ZONE).epoch(text) == strptime_epoch(text, time_format)


@FUZZ
@given(time_format=st.sampled_from(FIXED), data=st.data())
def test_any_text_of_a_layouts_width_is_read_or_refused_as_strptime_does(time_format, data):
    width = len(datetime(2026, 1, 1).strftime(time_format))
    alphabet = st.sampled_from("0123456789-/.:T %" + "٣")
    text = data.draw(st.text(alphabet, min_size=width - 1, max_size=width + 1))
    times = LocalTimes(time_format, ZONE)
    assert outcome(times.epoch, text) == outcome(lambda t: strptime_epoch(t, time_format), text)


def test_the_repeated_hour_of_a_dst_change_is_its_first_occurrence():
    # 2026-11-01 01:30 happens twice in Toronto: first at EDT (-4), as fold=0.
    times = LocalTimes("%d/%m/%Y %H:%M:%S", ZONE)
    first = times.epoch("01/11/2026 01:30:00")
    assert datetime.fromtimestamp(first, ZONE).utcoffset() == timedelta(hours=-4)
    assert first == strptime_epoch("01/11/2026 01:30:00", "%d/%m/%Y %H:%M:%S")


def test_one_hour_cached_does_not_leak_into_another_zone():
    text = "20/11/2026 09:15:02"
    toronto = LocalTimes("%d/%m/%Y %H:%M:%S", ZONE).epoch(text)
    utc = LocalTimes("%d/%m/%Y %H:%M:%S", ZoneInfo("UTC")).epoch(text)
    assert utc - toronto == -5 * 3600


@FUZZ
@given(time_format=st.sampled_from(FIXED), data=st.data())
def test_any_digits_in_a_layouts_places_read_or_are_refused_as_strptime_does(time_format, data):
    # The separators right and any digit in each field's place: month 13, 31 April,
    # hour 24, minute 60... are what slicing must hand to strptime.
    shape = datetime(2026, 1, 1).strftime(time_format)
    sample = datetime(2026, 1, 1, 1, 1, 1).strftime(time_format)
    text = "".join(
        data.draw(st.sampled_from("0123456789")) if a != b or a.isdigit() else a
        for a, b in zip(shape, sample, strict=True)
    )
    times = LocalTimes(time_format, ZONE)
    assert outcome(times.epoch, text) == outcome(lambda t: strptime_epoch(t, time_format), text)
