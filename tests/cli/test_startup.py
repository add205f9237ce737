"""Start-up: `--version` and `--help` import only the CLI frame; a job skips Alembic."""

import subprocess
import sys

HEAVY = ("sqlalchemy", "pydantic", "alembic", "httpx", "jinja2", "voipctl.config")


def imported_after(code: str, *, cwd) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=cwd
    )
    return set(proc.stdout.splitlines()[-1].split())


def test_version_imports_no_database_or_configuration_library(tmp_path):
    mods = imported_after("from voipctl.cli import run\nrun(['--version'])", cwd=tmp_path)
    assert "click" in mods
    assert sorted(m for m in mods if m.split(".")[0] in HEAVY or m in HEAVY) == []


def test_a_job_checks_the_schema_without_alembic(tmp_path):
    db = tmp_path / "v.db"
    code = (
        "from voipctl.cli import run\n"
        f"run(['--db', 'sqlite:///{db}', 'db', 'upgrade'])\n"
        "for name in [m for m in sys.modules if m.startswith(('alembic', 'mako'))]:\n"
        "    del sys.modules[name]\n"
        f"assert run(['--db', 'sqlite:///{db}', 'balance', '1']) == 2\n"
    )
    mods = imported_after(code, cwd=tmp_path)
    assert "sqlalchemy" in mods
    assert sorted(m for m in mods if m.startswith(("alembic", "mako"))) == []


def test_the_schema_head_is_read_from_the_migration_files():
    from voipctl.store import migrate, revision

    assert revision.head_revision() == migrate.head_revision()
