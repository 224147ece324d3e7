"""`gatehouse serve`, counting every SQL statement its store sends (for the triggerer benchmark).

The same start-up as ``gate_core.cli serve`` (settings from the environment, the service's
create_app, uvicorn), plus a SQLAlchemy ``before_cursor_execute`` listener on the store's engine.
Counts by kind ("SELECT gh_gates", "INSERT gh_audit_log"…) are written to the JSON file named by
GATEHOUSE_BENCH_COUNTS twice a second — exact, unlike PostgreSQL's statistics, which lag and count
parallel workers' scans separately.

    GATEHOUSE_BENCH_COUNTS=counts.json python -m bench._counting_serve --port 8080
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event

from gate_core import Settings, SqlStore, open_gatekeeper
from gate_core.service import ServiceConfig, create_app
from gate_core.service._serve import serve_app

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def kind(statement: str) -> str:
    verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
    table = _TABLE.search(statement)
    return f"{verb} {table.group(1) if table else '-'}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    counts_file = Path(os.environ["GATEHOUSE_BENCH_COUNTS"])
    settings = Settings.from_env()
    gatekeeper = open_gatekeeper(settings)
    store = gatekeeper.store
    assert isinstance(store, SqlStore)
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    @event.listens_for(store.engine, "before_cursor_execute")
    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        with lock:
            counts[kind(statement)] += 1

    def publish() -> None:
        while True:
            with lock:
                snapshot = dict(counts)
            partial = counts_file.with_suffix(".partial")
            partial.write_text(json.dumps(snapshot))
            partial.replace(counts_file)
            time.sleep(0.5)

    threading.Thread(target=publish, daemon=True).start()
    app = create_app(gatekeeper, ServiceConfig.load(settings.home), local_signin=False)
    serve_app(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
