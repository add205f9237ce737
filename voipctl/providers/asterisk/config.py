"""The `[servers.<name>]` table of an Asterisk / FreePBX PBX (config.example.toml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from voipctl.config import ServerBase


class AsteriskServer(ServerBase):
    type: Literal["asterisk"]
    # Where the call records are read: cdr_csv's Master.csv, or a cdr table.
    source: Literal["csv", "table"] = "csv"
    # source = "csv": the local path of Master.csv.
    path: str | None = None
    # source = "table": the environment variable holding the database URL
    # (mysql://USER:PASS@HOST/asteriskcdrdb, postgresql://...), the table, the dialect.
    db_url_env: str | None = None
    table: str = "cdr"
    dialect: Literal["mysql", "postgresql"] = "mysql"
    # cdr.conf's [csv] flags, as the PBX has them (cdr_csv's defaults: all off).
    loguniqueid: bool = False
    loguserfield: bool = False
    newcdrcolumns: bool = False
    usegmtime: bool = False
    # Which rows are calls to bill, and their direction (docs/asterisk.md).
    trunk_prefixes: list[str] = Field(default_factory=list)
    inbound_contexts: list[str] = Field(default_factory=lambda: ["from-trunk", "from-pstn"])
    billed_rows: Literal["trunk", "answered", "all"] = "trunk"
    suspend: Literal["manual", "command"] = "manual"
    suspend_command: list[str] | None = None
    unsuspend_command: list[str] | None = None
