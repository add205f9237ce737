"""The state one invocation carries: options, lazily loaded config and store."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import click

from voipctl.config import Config, load_config
from voipctl.store import Store, open_store


@dataclass
class App:
    config_path: str | None = None
    db_url: str | None = None
    env_file: str | None = None
    verbosity: int = 0  # -1 quiet, 0 default, 1+ verbose
    log_format: str = "text"
    run_id: str = ""
    _config: Config | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, db_url=self.db_url, env_file=self.env_file)
        return self._config

    def store(self, *, check_schema: bool = True) -> Store:
        """The database; refuses an old schema unless asked not to (db upgrade)."""
        if self._store is None:
            # Only `db upgrade` (check_schema=False) may create a SQLite file's directory.
            database = self.config.database
            self._store = open_store(
                self.config.database_url,
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
