"""``python -m prefect_blocks watch``: resume suspended (and orphaned paused) flow runs as their
Gatehouse gates are decided. Run it next to the gate service, with the Prefect API in
``PREFECT_API_URL``; the gate service and token come from a saved block (``--block NAME``) or from
``GATEHOUSE_URL`` and ``GATEHOUSE_TOKEN``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from pydantic import SecretStr

from prefect_blocks._block import ApprovalGate
from prefect_blocks._watch import watch_and_resume


def _gate(block: str | None) -> ApprovalGate:
    if block:
        loaded = ApprovalGate.load(block)  # no event loop here: Prefect loads it synchronously
        if not isinstance(loaded, ApprovalGate):
            raise SystemExit(f"prefect_blocks watch: block {block!r} is not a Gatehouse Approval Gate")
        return loaded
    url, token = os.environ.get("GATEHOUSE_URL"), os.environ.get("GATEHOUSE_TOKEN")
    if not url or not token:
        raise SystemExit("prefect_blocks watch: give --block NAME, or set GATEHOUSE_URL and GATEHOUSE_TOKEN")
    return ApprovalGate(url=url, token=SecretStr(token))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prefect_blocks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    watch = commands.add_parser(
        "watch", help="resume flow runs waiting on Gatehouse gates as they are decided"
    )
    watch.add_argument("--block", help="name of a saved Gatehouse Approval Gate block")
    watch.add_argument("--poll", type=float, default=5.0, help="seconds before a newly paused run is noticed")
    watch.add_argument("--once", action="store_true", help="one pass without waiting, then exit")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    settled = watch_and_resume(_gate(args.block), poll_seconds=args.poll, stop=stop, once=args.once)
    logging.getLogger("gatehouse.prefect.watch").info("stopped after settling %d flow run(s)", settled)
    return 0


if __name__ == "__main__":
    sys.exit(main())
