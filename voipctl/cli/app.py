"""The state one invocation carries: options, lazily loaded config and store."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:  # imported when first used: `--version` and `--help` need neither
    from voipctl.config import Config
    from voipctl.store import Store


@dataclass
class App:
    config_path: str | None = None
    db_url: str | None = None
    env_file: str | None = None
    verbosity: int = 0  # -1 quiet, 0 default, 1+ verbose
    log_format: str = "text"
    run_id: str = ""
    _config: Config | None = field(default=None, repr=False)
    _secrets_checked: bool = field(default=False, repr=False)
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        """The configuration, every secret it names checked as set."""
        config = self.config_without_secrets()
        if not self._secrets_checked:
            from voipctl.config import check_secrets

            check_secrets(config)
            self._secrets_checked = True
        return config

    def config_without_secrets(self) -> Config:
        """The configuration, its `*_env` variables not checked: for what uses none
        of them (`db upgrade`, the database itself)."""
        if self._config is None:
            from voipctl.config import load_config

            self._config = load_config(
                self.config_path, db_url=self.db_url, env_file=self.env_file, secrets=False
            )
        return self._config

    def store(self, *, check_schema: bool = True) -> Store:
        """The database; refuses an old schema unless asked not to (db upgrade)."""
        if self._store is None:
            from voipctl.store import open_store

            # Only `db upgrade` (check_schema=False) may create a SQLite file's directory.
            # The database takes no secret of the file: its URL is checked, not the others.
            config = self.config_without_secrets()
            database = config.database
            self._store = open_store(
                config.database_url,
                create_dir=not check_schema,
                busy_timeout_ms=database.busy_timeout_ms,
                lock_timeout_s=database.lock_timeout_s,
                statement_timeout_s=database.statement_timeout_s,
            )
        if check_schema:
            self._store.check_schema()
        return self._store

    def summary(self, line: str) -> None:
        """A job's one-line summary: on a terminal or with -v, never with -q.

        Under cron (stdout not a terminal) success prints nothing, so cron mails only failures.
        """
        if self.verbosity < 0:
            return
        if self.verbosity > 0 or sys.stdout.isatty():
            from voipctl.cli.output import say

            say(line)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()


def get_app() -> App:
    return click.get_current_context().find_object(App)


log = logging.getLogger("voipctl")
