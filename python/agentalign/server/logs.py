"""Structured logs: one JSON object per line on stderr, e.g.
{"time": "2026-11-26T10:00:00.123Z", "level": "info", "event": "session_opened", ...}."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any

logger = logging.getLogger("agentalign.server")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        now = _dt.datetime.fromtimestamp(record.created, _dt.UTC)
        entry = {"time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                 "level": record.levelname.lower(), "event": record.getMessage(),
                 **getattr(record, "fields", {})}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_json_logs(level: str = "info") -> None:
    """Send the server's logs to stderr as JSON lines (what `agentalign serve` does)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def log(event: str, level: str = "info", **fields: Any) -> None:
    logger.log(logging.getLevelName(level.upper()), event, extra={"fields": fields})
