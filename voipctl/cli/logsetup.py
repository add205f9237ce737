"""Logging, set up once at the entry point: quiet by default, -v, -q, JSON lines with a run id."""

from __future__ import annotations

import json
import logging
import sys
import time


class _JsonFormatter(logging.Formatter):
    def __init__(self, run_id: str):
        super().__init__()
        self.run_id = run_id

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "run_id": self.run_id,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class _TextFormatter(logging.Formatter):
    """One log line per record: control characters in the message are escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        from voipctl.cli.output import inert

        return inert(super().formatMessage(record))


def setup_logging(verbosity: int, log_format: str, run_id: str) -> None:
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonFormatter(run_id))
    else:
        handler.setFormatter(_TextFormatter("voipctl: %(levelname)s: %(message)s"))
    root = logging.getLogger("voipctl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # httpx logs full URLs at INFO; a URL may carry an API key (FusionPBX export).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
