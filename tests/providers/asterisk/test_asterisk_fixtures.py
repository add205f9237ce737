"""The fixtures are what cdr_csv writes: every line is rebuilt by cdr_csv's rules.

# source: asterisk/asterisk cdr/cdr_csv.c, build_csv_record() / append_string() /
# append_int() / append_date() (tests/fixtures/asterisk/README.md).
"""

from __future__ import annotations

import csv

import pytest

from tests import support
from voipctl.providers.asterisk.master_csv import Layout

FIXTURES = support.FIXTURES / "asterisk"
LAYOUTS = {
    "master__default.csv": Layout(),
    "master__half_line.csv": Layout(),
    "master__uniqueid_userfield_gmt.csv": Layout(
        loguniqueid=True, loguserfield=True, usegmtime=True
    ),
    "master__all_flags.csv": Layout(loguniqueid=True, loguserfield=True, newcdrcolumns=True),
}
INTS = ("duration", "billsec", "sequence")
TIMES = ("start", "answer", "end")


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_fixture_lines_are_cdr_csv_lines(name, write_line):
    layout = LAYOUTS[name]
    lines = (FIXTURES / name).read_text().splitlines(keepends=True)
    assert lines
    whole = [line for line in lines if line.endswith("\n")]
    for line in whole:
        (fields,) = list(csv.reader([line]))
        assert len(fields) == len(layout.columns)
        values = []
        for column, text in zip(layout.columns, fields, strict=True):
            if column in INTS:
                values.append(int(text))
            elif column in TIMES and text == "":
                values.append(None)
            else:
                values.append(text)
        assert write_line(values) == line


def test_half_line_fixture_ends_without_newline():
    data = (FIXTURES / "master__half_line.csv").read_bytes()
    assert data.count(b"\n") == 1
    assert not data.endswith(b"\n")


def test_every_fixture_file_is_described():
    readme = (FIXTURES / "README.md").read_text()
    for path in FIXTURES.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name
