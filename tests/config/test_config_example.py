"""config.example.toml loads cleanly and documents every key of voipctl.config."""

import re
import tomllib

import pytest
from pydantic import BaseModel

from tests.support import ROOT
from voipctl import config as cfg

EXAMPLE = ROOT / "config.example.toml"


def _env_names(node) -> set[str]:
    names = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_env") and isinstance(value, str):
                names.add(value)
            names |= _env_names(value)
    return names


def test_the_example_loads_with_the_variables_it_names(monkeypatch, tmp_path):
    data = tomllib.loads(EXAMPLE.read_text())
    monkeypatch.chdir(tmp_path)  # no ./.env
    for name in _env_names(data):
        monkeypatch.setenv(name, "secret-for-test")
    config = cfg.load_config(str(EXAMPLE), environ={})
    assert set(config.servers) == {"fusion1", "vodia1", "lesnet", "pbx1"}
    assert config.billing.currency == "CAD"
    assert config.servers["lesnet"].cdr_format.columns["seconds"] == "duration"


def test_the_example_is_refused_when_a_named_variable_is_unset(monkeypatch, tmp_path):
    data = tomllib.loads(EXAMPLE.read_text())
    monkeypatch.chdir(tmp_path)
    for name in _env_names(data):
        monkeypatch.setenv(name, "x")
    monkeypatch.delenv("VODIA1_PASSWORD")
    with pytest.raises(cfg.ConfigError, match="VODIA1_PASSWORD is named but not set"):
        cfg.load_config(str(EXAMPLE), environ={})


MODELS = [
    cfg.DatabaseConfig,
    cfg.EmailConfig,
    cfg.BillingConfig,
    cfg.StatusConfig,
    cfg.MetricsConfig,
    cfg.WhmcsConfig,
    cfg.TopupConfig,
    cfg.FusionPBXServer,
    cfg.VodiaServer,
    cfg.LesnetServer,
    cfg.LesnetCdrFormat,
    cfg.AsteriskServer,
]


def _keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_key_is_documented(model):
    text = EXAMPLE.read_text()
    for key in _keys(model):
        # Set, or shown in a comment (keys that are alternatives or off by default).
        assert re.search(
            rf"^\s*#?\s*({re.escape(key)}\s*=|\[[\w.]*\.{re.escape(key)}\])", text, re.MULTILINE
        ), f"config.example.toml does not document {model.__name__}.{key}"


def test_every_section_is_in_the_example():
    data = tomllib.loads(EXAMPLE.read_text())
    sections = set(cfg.Config.model_fields) - {"source"}
    assert sections <= set(data)
