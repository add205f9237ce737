"""Templates are bounded (docs/rating.md, "Numbers, limits and decks"):
an expression that would allocate without limit, an output past the size limit or a
render past the time limit is one refusal naming the file, never a hang."""

from __future__ import annotations

import time

import pytest

from voipctl.notify import templates
from voipctl.notify.templates import LOW_BALANCE_ALERT, SAMPLE_VARIABLES, TemplateError, Templates

LIMIT = templates.MAX_SIZE
BEYOND = f"beyond the limit of {LIMIT}"


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ [1]*10**9 }}", f"a value of 1 repeated 1000000000 times is {BEYOND}"),
        ("{{ 'ab'*10**9 }}", f"a value of 2 repeated 1000000000 times is {BEYOND}"),
        ("{{ 10**100000 }}", "10 ** 100000 is beyond the limit of 65536 bits"),
        ("{{ 2**100000 }}", "2 ** 100000 is beyond the limit of 65536 bits"),
        ("{{ 'x'|center(10**9) }}", f"filter center: argument 1000000000 is {BEYOND}"),
        ("{{ ('a'*999999)|replace('a', 'a'*999999) }}",
         f"filter replace: its arguments could make more than {LIMIT} characters"),
        ("{{ '%999999999d'|format(1) }}", f"filter format: a format width {BEYOND}"),
        ("{{ '%999999999d' % 1 }}", f"%: a format width {BEYOND}"),
        ("{{ '{:>999999999}'.format(1) }}", f"format(): a format width {BEYOND}"),
        ("{{ lipsum(10**9) }}",
         f"generate_lorem_ipsum(): argument 1000000000 is beyond the limit of {LIMIT}"),
        ("{% for i in range(20000) %}{{ 'x'*100 }}{% endfor %}",
         f"the output is longer than {templates.MAX_OUTPUT} characters"),
        ("{% set l = [1] %}{% for i in range(60) %}{{ l.extend(l) }}{% endfor %}",
         "access to attribute 'extend' of 'list' object is unsafe."),
    ],
)  # fmt: skip
def test_an_unbounded_template_is_refused_in_one_line(tmp_path, source, reason):
    (tmp_path / "low_balance_alert.txt").write_text(source)
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        Templates(tmp_path).render(LOW_BALANCE_ALERT, SAMPLE_VARIABLES)
    assert str(caught.value) == f"{tmp_path / 'low_balance_alert.txt'}: refused: {reason}"
    assert time.monotonic() - started < 3


def test_namespace_is_not_offered_so_nothing_grows_in_a_loop(tmp_path):
    source = "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    (tmp_path / "low_balance_alert.txt").write_text(source + "{% endfor %}")
    with pytest.raises(TemplateError, match="'namespace' is undefined"):
        Templates(tmp_path).render(LOW_BALANCE_ALERT, SAMPLE_VARIABLES)


def test_a_render_past_the_time_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(templates, "MAX_SECONDS", 0.5)
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    (tmp_path / "low_balance_alert.txt").write_text(loops)
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        Templates(tmp_path).render(LOW_BALANCE_ALERT, SAMPLE_VARIABLES)
    assert str(caught.value) == (
        f"{tmp_path / 'low_balance_alert.txt'}: refused: rendering takes longer than 0.5 s"
    )
    assert time.monotonic() - started < 3


def test_ordinary_arithmetic_and_filters_still_render(tmp_path):
    source = "{{ client_first_name|upper }} {{ '%.2f'|format(1.5) }} {{ 'ab' * 3 }} {{ 2**10 }}"
    (tmp_path / "low_balance_alert.txt").write_text(
        source + " {{ (client_name ~ '\n')|wordwrap(20) }}"
    )
    rendered = Templates(tmp_path).render(LOW_BALANCE_ALERT, SAMPLE_VARIABLES)
    assert rendered.text == "ADA 1.50 ababab 1024 Ada Lovelace"


def test_template_show_refuses_an_unbounded_template_with_exit_1(cli, tmp_path):
    tdir = tmp_path / "tpl"
    tdir.mkdir()
    (tdir / "low_balance_alert.txt").write_text("Dear {{ client_first_name }},\n{{ [1]*10**9 }}\n")
    config = tmp_path / "voipctl.toml"
    config.write_text(f'[email]\ntemplates_dir = "{tdir}"\n')
    started = time.monotonic()
    result = cli("template", "show", "low_balance_alert", config=config)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"voipctl: error: {tdir / 'low_balance_alert.txt'}: refused: a value of 1 repeated "
        f"1000000000 times is beyond the limit of {LIMIT}"
    ]
    assert time.monotonic() - started < 5


def test_the_time_limit_holds_on_a_thread_that_is_not_the_main_one(tmp_path, monkeypatch):
    # A job may render on a worker thread, where no signal can reach it.
    import threading

    monkeypatch.setattr(templates, "MAX_SECONDS", 0.5)
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    (tmp_path / "low_balance_alert.txt").write_text(loops)
    outcome: list[BaseException | str] = []

    def render() -> None:
        try:
            Templates(tmp_path).render(LOW_BALANCE_ALERT, SAMPLE_VARIABLES)
            outcome.append("rendered")
        except BaseException as exc:  # noqa: BLE001 - whatever it is, the test names it
            outcome.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=render, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "the render on the worker thread ran on past the limit"
    assert time.monotonic() - started < 3
    assert len(outcome) == 1 and isinstance(outcome[0], TemplateError), outcome
    assert str(outcome[0]) == (
        f"{tmp_path / 'low_balance_alert.txt'}: refused: rendering takes longer than 0.5 s"
    )


def test_a_trace_function_set_before_the_render_is_put_back(tmp_path):
    import sys

    def tracer(frame, event, arg):
        return None

    (tmp_path / "low_balance_alert.txt").write_text("{{ client_first_name }}")
    sys.settrace(tracer)
    try:
        assert Templates(tmp_path).render(LOW_BALANCE_ALERT, SAMPLE_VARIABLES).text == "Ada"
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
