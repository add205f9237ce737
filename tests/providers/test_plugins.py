"""The provider registry: lazy adapters, and provider types named only in their packages."""

from __future__ import annotations

import re
import subprocess
import sys

from tests import support
from voipctl import providers

ROOT = support.ROOT


def test_the_cli_and_a_configuration_import_no_adapter(tmp_path):
    config = tmp_path / "voipctl.toml"
    config.write_text('[servers.v]\ntype = "vodia"\nurl = "https://vodia.test"\n')
    code = (
        "import sys\n"
        "import voipctl.cli, voipctl.jobs.pull_cdrs\n"
        "from voipctl.config import load_config\n"
        f"load_config({str(config)!r}, environ={{}})\n"
        "print(sorted(m for m in sys.modules if m.endswith('.adapter')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout == "[]\n"


def test_provider_types_are_named_only_in_their_packages_and_the_registry():
    word = re.compile(r"\b(" + "|".join(map(re.escape, providers.server_types())) + r")\b")
    allowed = [f"voipctl/providers/{t}/" for t in providers.server_types()]
    allowed += ["voipctl/providers/__init__.py", "voipctl/sim/", "voipctl/demo.py"]
    named = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "voipctl").rglob("*.py")
        if not any(str(path.relative_to(ROOT)).startswith(a) for a in allowed)
        and word.search(path.read_text(encoding="utf-8"))
    )
    assert named == []


def test_every_plugin_declares_both_forms_and_its_extras_once():
    keys = [extra.key for p in providers.plugins() for extra in p.extras]
    assert len(keys) == len(set(keys))
    for p in providers.plugins():
        assert set(p.forms) == {"domain", "billed"}
        assert set(p.lever_extras.values()) <= {extra.key for extra in p.extras}
