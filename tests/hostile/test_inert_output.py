"""Issue 13 item 3: a table cell cannot drive the terminal or forge a line."""

from voipctl.cli.output import inert, render


def test_inert_escapes_controls_and_bidi():
    assert inert("a\x1b]0;pwn\x07b") == "a\\x1b]0;pwn\\x07b"
    assert inert("id\r\nFAKE") == "id\\x0d\\x0aFAKE"
    assert inert("\x9b\u202eabc\u2066") == "\\x9b\\u202eabc\\u2066"
    assert inert("plain +1 204") == "plain +1 204"


def test_table_row_with_newline_stays_one_line(capsys):
    render([{"id": "x\nforged"}], [("id", "ID")], "table")
    assert capsys.readouterr().out == "ID\n-----------\nx\\x0aforged\n"


def test_log_line_cannot_forge_a_second_line(capsys):
    import logging

    from voipctl.cli.logsetup import setup_logging

    setup_logging(0, "text", "r1")
    logging.getLogger("voipctl.test").warning("call %s", "x\nvoipctl: ERROR: forged")
    assert capsys.readouterr().err == "voipctl: WARNING: call x\\x0avoipctl: ERROR: forged\n"
