"""`voipctl init`: a first configuration and .env; `doctor` names every unset secret."""

import stat
import tomllib

import pytest

from voipctl import example

SECRETS = [
    ("email.password_env", "VOIPCTL_SMTP_PASSWORD"),
    ("servers.fusion1.db_url_env", "FUSION1_DB_URL"),
    ("servers.fusion1.esl_password_env", "FUSION1_ESL_PASSWORD"),
    ("servers.les1.api_key_env", "LES1_API_KEY"),
    ("servers.les1.id_key_env", "LES1_ID_KEY"),
]


@pytest.fixture
def unset(monkeypatch):
    # dotenv writes .env into os.environ: monkeypatch removes them again afterwards.
    for _, name in SECRETS:
        monkeypatch.delenv(name, raising=False)


def test_init_writes_the_servers_named_and_their_secrets(cli, tmp_path, unset):
    result = cli("init", "--server", "fusionpbx:fusion1", "--server", "lesnet:les1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "wrote voipctl.toml (2 servers: fusion1, les1) and .env (5 secrets to fill in), "
        "both mode 0600",
        "next: fill in the URLs and the secrets, then:",
        "  voipctl doctor",
        "  voipctl db upgrade",
        "  voipctl pull-cdrs",
    ]
    for name in ("voipctl.toml", ".env"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    data = tomllib.loads((tmp_path / "voipctl.toml").read_text())
    assert sorted(data["servers"]) == ["fusion1", "les1"]
    assert data["servers"]["les1"]["type"] == "lesnet"
    assert data["servers"]["les1"]["cdr_format"]["delimiter"] == ","
    # db mode: the export keys (and the API key's secret) are left commented out.
    assert "api_key_env" not in data["servers"]["fusion1"]
    assert data["servers"]["les1"]["api_key_env"] == "LES1_API_KEY"
    env_lines = (tmp_path / ".env").read_text().splitlines()
    assert [line for line in env_lines if line.startswith("#") and line.endswith("=")] == [
        f"#{name}=" for _, name in SECRETS
    ]


def test_doctor_names_every_unset_secret_in_one_run_then_the_jobs_run(cli, tmp_path, unset):
    assert cli("init", "--server", "fusionpbx:fusion1", "--server", "lesnet:les1").exit_code == 0
    result = cli("doctor", "--smtp-timeout", "0.5")
    assert result.exit_code == 1
    shown = ", ".join(f"{key} ({name})" for key, name in SECRETS)
    lines = [line.split(None, 2) for line in result.stdout.splitlines()]
    assert ["FAIL", "secrets", f"5 named but not set: {shown}"] in lines
    # A job that uses them refuses to start, naming them all on one line.
    result = cli("pull-cdrs")
    assert result.exit_code == 2
    assert result.stderr == (
        f"voipctl: error: voipctl.toml: environment variables named but not set: {shown}\n"
    )
    # db upgrade and rate use none of them.
    for job in (("db", "upgrade"), ("rate",)):
        result = cli(*job)
        assert result.exit_code == 0, (job, result.output)

    env = tmp_path / ".env"
    text = env.read_text()
    for _, name in SECRETS:
        value = "postgresql://nobody@127.0.0.1:1/fusionpbx" if name.endswith("DB_URL") else "x"
        text = text.replace(f"#{name}=", f"{name}={value}")
    env.write_text(text)
    for job in ("pull-cdrs", "rate", "autobill", "low-balance"):
        result = cli(job)
        assert result.exit_code == 0, (job, result.output)


def test_init_refuses_to_overwrite_with_exit_2(cli, tmp_path):
    (tmp_path / ".env").write_text("A=1\n")
    result = cli("init", "--server", "vodia:v1")
    assert result.exit_code == 2
    assert result.stderr == (
        "voipctl: error: init: .env exists: not overwritten (move it aside or use --dir)\n"
    )
    assert not (tmp_path / "voipctl.toml").exists()
    assert (tmp_path / ".env").read_text() == "A=1\n"


def test_init_into_a_directory_names_the_files_in_the_next_commands(cli, tmp_path):
    result = cli("init", "--server", "vodia:pbx-2", "--dir", "etc")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2] == (
        "  voipctl --config etc/voipctl.toml --env-file etc/.env doctor"
    )
    data = tomllib.loads((tmp_path / "etc" / "voipctl.toml").read_text())
    assert data["servers"]["pbx-2"]["password_env"] == "PBX_2_PASSWORD"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--server", "freeswitch:a"],
            "init: --server 'freeswitch:a': expected TYPE:NAME, TYPE one of fusionpbx, vodia, "
            "lesnet, asterisk, NAME of letters, digits, _ and -",
        ),
        (["--server", "vodia:a", "--server", "lesnet:a"], "init: --server: a named twice"),
        ([], "init: --server: required"),
    ],
)
def test_init_usage_errors_are_one_line(cli, tmp_path, args, says):
    result = cli("init", *args)
    assert result.exit_code == 2
    assert result.stderr == f"voipctl: error: {says}\n"
    assert not (tmp_path / "voipctl.toml").exists()


def test_the_server_tables_come_from_the_example_file():
    text = example.example_path().read_text()
    block = example.server_block(example.chunks(text), "vodia", "vodia1")
    # The example's own name: the block is the example's text, unchanged.
    assert block in text


def test_from_init_to_billed_calls_against_the_simulator(cli, tmp_path, monkeypatch):
    import re
    from datetime import timedelta

    from tests.support.sim_env import start_sim
    from voipctl.demo import DECK
    from voipctl.sim import SimConfig

    sims = start_sim(monkeypatch, SimConfig(seed=3, days=2, calls_per_day=20))
    sim = next(sims)
    try:
        for name in sim.env():
            monkeypatch.delenv(name)  # the .env below sets them; monkeypatch removes them after
        monkeypatch.delenv("VOIPCTL_SMTP_PASSWORD", raising=False)
        servers = ("--server", "vodia:sim_vodia", "--server", "lesnet:sim_lesnet")
        assert cli("init", *servers).exit_code == 0
        names = ["VOIPCTL_SMTP_PASSWORD", "SIM_VODIA_PASSWORD", "SIM_LESNET_API_KEY"]
        names.append("SIM_LESNET_ID_KEY")
        doctor = cli("doctor", "--smtp-timeout", "0.5")
        assert doctor.exit_code == 1
        assert re.search(r"FAIL +secrets +4 named but not set: ", doctor.stdout)
        env = tmp_path / ".env"
        text = env.read_text()
        values = {**sim.env(), "VOIPCTL_SMTP_PASSWORD": "unused"}
        for name in names:
            text = text.replace(f"#{name}=", f"{name}={values[name]}")
        env.write_text(text)
        # The example's URLs point at the real services: point them at the simulator.
        monkeypatch.setenv("VOIPCTL_SERVERS__SIM_VODIA__URL", sim.base_url)
        monkeypatch.setenv("VOIPCTL_SERVERS__SIM_VODIA__AUTH", "session")
        monkeypatch.setenv("VOIPCTL_SERVERS__SIM_LESNET__URL", sim.base_url + "/v1")

        def ok(*args):
            result = cli(*args)
            assert result.exit_code == 0, (args, result.output)
            return result

        ok("db", "upgrade")
        deck = tmp_path / "deck.csv"
        deck.write_text(DECK)  # the demo's: every destination the simulator dials
        effective = (sim.start_at - timedelta(days=2)).date().isoformat()
        ok("product", "add", "Standard")
        ok("rates", "import", "Standard", str(deck), "--effective", effective)
        services = sim.services()
        for cid, index in ((101, 0), (103, 2)):
            fields = services[index]
            ok("client", "add", str(cid), "--first-name", "A", "--last-name", "B",
               "--email", f"c{cid}@example.com", "--has-voip-service")  # fmt: skip
            ok("credit", "add", str(cid), "100.00", "--reference", f"t{cid}")
            extra = ["--trunk", fields["trunk"]] if "trunk" in fields else []
            extra += ["--cdr-link", fields["cdr_link"]] if "cdr_link" in fields else []
            ok("service", "add", "--client", str(cid), "--product", "Standard",
               "--server", fields["server"], "--domain", fields["domain"],
               "--billed", fields["billed"], *extra)  # fmt: skip
        since = (sim.start_at - timedelta(hours=1)).isoformat()
        pulled = ok("-v", "pull-cdrs", "--since", since).stdout
        stored = [int(n) for n in re.findall(r"stored (\d+)", pulled)]
        assert len(stored) == 2 and all(n > 0 for n in stored), pulled
        ok("rate")
        billed = ok("-v", "autobill").stdout
        assert re.search(r"autobill: 2 charges", billed), billed
    finally:
        sims.close()
