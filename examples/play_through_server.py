"""Play the island through the agent server: each environment is one session, acting over its
own Act stream, so the server batches their decisions. Prints the outcome rates.

    agentalign serve --personalities runs/personalities &
    python examples/play_through_server.py --personality left-runner --episodes 20

With --token (or AGENTALIGN_SERVER_TOKEN) and --tls-ca it talks to a server bound elsewhere.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agentalign.client import Client, ServerAgents
from agentalign.rollout import format_table, play, summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--personality", help="default: the server's first")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--num-envs", type=int, default=8, help="sessions playing at once")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--greedy", action="store_true", help="argmax actions")
    parser.add_argument("--token", default=os.environ.get("AGENTALIGN_SERVER_TOKEN"))
    parser.add_argument("--tls-ca", type=Path, help="PEM certificate to trust (TLS)")
    args = parser.parse_args()
    with Client(args.server, token=args.token, tls_ca=args.tls_ca) as client:
        name = args.personality or client.personalities()[0].name
        num_envs = min(args.num_envs, args.episodes)
        agents = ServerAgents(client, name, num_envs, greedy=args.greedy, seed=args.seed)
        try:
            played = play(agents, None, episodes=args.episodes, num_envs=num_envs,
                          seed=args.seed, record_frames=0)
        finally:
            agents.close()
    print(f"{name} through {args.server}: {args.episodes} episodes")
    print(format_table(summarise([e.outcome for e in played.episodes],
                                 [e.length for e in played.episodes])))


if __name__ == "__main__":
    main()
