"""A training run's process: `python -m agentalign.server.worker COMMAND ARGS...`.

The server starts it in its own process group with the run folder as its working directory. It
parses the command line with the command's own argument definitions, calls the stage and sends
the stage's structured events (`agentalign.events`) to the server as JSON lines on the file
descriptor named by AGENTALIGN_EVENTS_FD; what it prints becomes the run's log.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

EVENTS_FD = "AGENTALIGN_EVENTS_FD"


def main(argv: list[str]) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: see agentalign.cli
    from agentalign import events
    from agentalign.command import parse
    from agentalign.commands import command
    from agentalign.errors import UserError

    stream = os.fdopen(int(os.environ[EVENTS_FD]), "w", buffering=1)
    lock = threading.Lock()

    def send(event: dict[str, Any]) -> None:
        with lock:
            stream.write(json.dumps(event) + "\n")

    events.set_sink(send)
    try:
        chosen = command(argv[0])
        _, text = chosen.call(parse(chosen, argv[1:]), progress=False)
        print(text, flush=True)
        return 0
    except UserError as e:
        print(f"agentalign {argv[0]}: error: {e}", file=sys.stderr, flush=True)
        return 2
    finally:
        events.set_sink(None)
        stream.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
