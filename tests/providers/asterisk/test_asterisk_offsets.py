"""Reading Master.csv incrementally (voipctl.providers.asterisk.offsets).

The files are the fixtures (cdr_csv's lines), appended to and moved aside the
way cdr_csv (`writefile`: fopen "a", fputs, fclose per record) and logrotate do.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import support
from voipctl.errors import DataError
from voipctl.providers.asterisk.offsets import Line, MasterCsvReader, ReadOffset

FIXTURES = support.FIXTURES / "asterisk"
DEFAULT = (FIXTURES / "master__default.csv").read_text().splitlines(keepends=True)


def run(path: Path, previous: ReadOffset | None):
    reader = MasterCsvReader(path, previous)
    lines = list(reader.lines())
    return lines, reader.offset, reader.notes


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def test_first_read_then_only_new_lines(tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text("".join(DEFAULT[:2]))
    lines, offset, notes = run(path, None)
    assert lines == [Line(str(path), 1, DEFAULT[0][:-1]), Line(str(path), 2, DEFAULT[1][:-1])]
    assert notes == []
    st = path.stat()
    assert (offset.device, offset.inode) == (st.st_dev, st.st_ino)
    assert (offset.offset, offset.lines) == (len(DEFAULT[0]) + len(DEFAULT[1]), 2)
    assert offset.path == str(path)
    again, same, _ = run(path, offset)
    assert again == []
    assert same == offset
    append(path, "".join(DEFAULT[2:]))
    lines, offset2, notes = run(path, offset)
    assert [(x.lineno, x.text) for x in lines] == [(n, DEFAULT[n - 1][:-1]) for n in (3, 4, 5)]
    assert offset2.offset == path.stat().st_size
    assert offset2.first_line == offset.first_line
    assert notes == []


def test_half_written_last_line_is_left_for_the_next_run(tmp_path):
    path = tmp_path / "Master.csv"
    shutil.copyfile(FIXTURES / "master__half_line.csv", path)
    data = path.read_bytes()
    whole = data[: data.index(b"\n") + 1]
    lines, offset, _ = run(path, None)
    assert [x.text for x in lines] == [whole[:-1].decode()]
    assert offset.offset == len(whole)
    # The record's writer finishes it: the next run reads it whole.
    append(path, '2:03",123,120,"ANSWERED","DOCUMENTATION"\n')
    lines, offset, _ = run(path, offset)
    assert [x.lineno for x in lines] == [2]
    assert lines[0].text == DEFAULT[3][:-1]
    assert offset.offset == path.stat().st_size


def test_file_without_a_whole_line_is_remembered_from_its_start(tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text(DEFAULT[0][:40])
    lines, offset, _ = run(path, None)
    assert lines == []
    assert (offset.offset, offset.lines, offset.first_line) == (0, 0, None)
    append(path, DEFAULT[0][40:])
    lines, _, _ = run(path, offset)
    assert [x.text for x in lines] == [DEFAULT[0][:-1]]


def test_rotation_reads_the_moved_file_to_its_end_first(tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text("".join(DEFAULT[:2]))
    _, offset, _ = run(path, None)
    append(path, DEFAULT[2])  # written after the last run, before the rotation
    os.rename(path, tmp_path / "Master.csv.1")  # logrotate's create mode
    path.write_text("".join(DEFAULT[3:]))  # cdr_csv's next fopen("a") creates it
    lines, offset2, notes = run(path, offset)
    assert [(Path(x.file).name, x.lineno, x.text) for x in lines] == [
        ("Master.csv.1", 3, DEFAULT[2][:-1]),
        ("Master.csv", 1, DEFAULT[3][:-1]),
        ("Master.csv", 2, DEFAULT[4][:-1]),
    ]
    assert notes == [f"{path} was rotated: Master.csv.1 read to its end first"]
    st = path.stat()
    assert (offset2.inode, offset2.offset, offset2.lines) == (st.st_ino, st.st_size, 2)


def test_a_run_stopped_inside_the_moved_file_goes_on_there(tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text(DEFAULT[0])
    _, offset, _ = run(path, None)
    append(path, "".join(DEFAULT[1:3]))
    old_inode = path.stat().st_ino
    os.rename(path, tmp_path / "Master.csv.1")
    path.write_text(DEFAULT[3])
    reader = MasterCsvReader(path, offset)
    it = reader.lines()
    assert next(it).lineno == 2
    stopped = reader.offset
    assert (stopped.inode, stopped.lines) == (old_inode, 2)
    lines, _, _ = run(path, stopped)
    assert [(Path(x.file).name, x.lineno) for x in lines] == [
        ("Master.csv.1", 3),
        ("Master.csv", 1),
    ]


def test_moved_file_gone_is_said_and_the_new_file_read(tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text(DEFAULT[0])
    _, offset, _ = run(path, None)
    os.rename(path, tmp_path / "Master.csv.1.gz")  # compressed at once: not readable here
    path.write_text(DEFAULT[1])
    lines, _, notes = run(path, offset)
    assert [x.text for x in lines] == [DEFAULT[1][:-1]]
    assert notes == [
        f"{path} was replaced and Master.csv.1 is not the file last read: "
        f"lines written to the old file after byte {len(DEFAULT[0])} were not read"
    ]


def test_truncated_file_is_read_from_its_start(tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text("".join(DEFAULT[:3]))
    _, offset, _ = run(path, None)
    with path.open("r+") as f:  # logrotate's copytruncate
        f.truncate(0)
    append(path, DEFAULT[3])
    lines, _, notes = run(path, offset)
    assert [(x.lineno, x.text) for x in lines] == [(1, DEFAULT[3][:-1])]
    assert notes == [
        f"{path} is shorter than where the last read stopped (byte {offset.offset}): "
        "truncated, read from its start"
    ]


def test_first_line_changed_in_place_is_read_from_its_start(tmp_path):
    path = tmp_path / "Master.csv"
    path.write_text("".join(DEFAULT[:2]))
    _, offset, _ = run(path, None)
    with path.open("r+") as f:  # same inode, same size or more, other rows
        f.write("".join(DEFAULT[2:5]))
    lines, _, notes = run(path, offset)
    assert [x.lineno for x in lines] == [1, 2, 3]
    assert notes == [f"{path} has another first line: read from its start"]


def test_missing_file_is_one_line_error(tmp_path):
    with pytest.raises(DataError) as exc:
        list(MasterCsvReader(tmp_path / "Master.csv").lines())
    assert str(exc.value) == f"{tmp_path / 'Master.csv'}: no such file"


def test_offset_round_trips_as_text_and_bad_text_is_one_line():
    offset = ReadOffset("/var/log/asterisk/cdr-csv/Master.csv", 2049, 131, 4096, 12, "ab" * 32)
    assert ReadOffset.from_text(offset.to_text()) == offset
    assert ReadOffset.from_text(offset.to_text().replace('"ab', '"cd')) != offset
    with pytest.raises(DataError) as exc:
        ReadOffset.from_text('{"path": "x"}')
    assert str(exc.value) == "stored Master.csv offset is not readable ('device')"


def test_newline_inside_a_quoted_field_joins_lines(tmp_path, write_line):
    path = tmp_path / "Master.csv"
    shutil.copyfile(FIXTURES / "master__bad.csv", path)
    lines, offset, _ = run(path, None)
    physical = (FIXTURES / "master__bad.csv").read_text().splitlines()
    assert [x.lineno for x in lines] == [1, 2, 3, 5]
    assert lines[2].text == physical[2] + "\n" + physical[3]
    assert (offset.lines, offset.offset) == (5, path.stat().st_size)


def test_a_record_being_written_across_lines_waits(tmp_path):
    path = tmp_path / "Master.csv"
    physical = (FIXTURES / "master__bad.csv").read_text().splitlines(keepends=True)
    path.write_text("".join(physical[:3]))  # line 3 opens a quote it has not closed yet
    lines, offset, _ = run(path, None)
    assert [x.lineno for x in lines] == [1, 2]
    assert offset.offset == len(physical[0]) + len(physical[1])
    append(path, physical[3])
    lines, _, _ = run(path, offset)
    assert [(x.lineno, x.text.count("\n")) for x in lines] == [(3, 1)]


def test_an_unclosed_quote_is_not_a_record_past_cdr_csv_buffer(tmp_path):
    # cdr_csv.c csv_log(): char buf[1024]; a longer record is never written, so
    # lines that stay open for 1024 bytes are not one record.
    path = tmp_path / "Master.csv"
    cut = '"","101","1","from-internal","""Alice\n'
    path.write_text(cut + "".join(DEFAULT * 4))
    lines, offset, _ = run(path, None)
    assert lines[0] == Line(str(path), 1, cut[:-1])
    assert [x.text for x in lines[1:]] == [d[:-1] for d in DEFAULT * 4]
    assert offset.offset == path.stat().st_size
