"""Tables of `benchmarks/replicates.sh`'s runs: outcome rates per agent and seed (mean, min,
max over seeds, 95% Wilson intervals per seed) and the reward models' held-out accuracy.

    python benchmarks/replicates_table.py runs/replicates
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

AGENTS = ["base", "sft", "sft-scratch", "sft-offlane", "sft-scratch-offlane", "left-aligned",
          "middle-aligned", "right-aligned", "left-aligned-offlane", "middle-aligned-offlane",
          "right-aligned-offlane"]
OUTCOMES = ["none", "left", "middle", "right"]


def main(root: Path) -> None:
    seeds = sorted(p for p in root.glob("s*") if p.is_dir())
    print(f"seeds: {[p.name for p in seeds]}\n")
    print("| agent | seed | episodes | none | left | middle | right | any pad |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    summary: dict[str, list[dict]] = {}
    for agent in AGENTS:
        for seed in seeds:
            path = seed / "eval" / agent / "results.json"
            if not path.exists():
                continue
            rates = json.loads(path.read_text())["rates"]
            summary.setdefault(agent, []).append(rates)
            cells = [f"{100 * rates[o]['rate']:.1f}" for o in OUTCOMES]
            target = agent.removesuffix("-offlane").removesuffix("-aligned")
            if target in OUTCOMES:
                r = rates[target]
                cells[OUTCOMES.index(target)] = (f"**{100 * r['rate']:.1f}** "
                                                 f"[{100 * r['low']:.1f}, {100 * r['high']:.1f}]")
            print(f"| {agent} | {seed.name} | {rates['any_pad']['n']} | {' | '.join(cells)} | "
                  f"{100 * rates['any_pad']['rate']:.1f} |")
    print("\nMean (min-max) over seeds:\n")
    print("| agent | seeds | none | left | middle | right | any pad |")
    print("|---|---:|---|---|---|---|---|")
    for agent, runs in summary.items():
        cells = []
        for o in [*OUTCOMES, "any_pad"]:
            v = [100 * r[o]["rate"] for r in runs]
            cells.append(f"{sum(v) / len(v):.1f} ({min(v):.1f}-{max(v):.1f})")
        print(f"| {agent} | {len(runs)} | {' | '.join(cells)} |")
    print("\nReward models (1,000 labels, held-out accuracy all / easy / hard):\n")
    for seed in seeds:
        for path in sorted(seed.glob("reward-*/metrics.json")):
            m = json.loads(path.read_text())
            h = m["heldout"]
            print(f"- {seed.name} {m['target']}: {100 * h['accuracy']:.1f}% / "
                  f"{100 * h['accuracy_easy']:.1f}% / {100 * h['accuracy_hard']:.1f}% "
                  f"({h['pairs']} pairs, {m['wall_seconds']:.0f} s)"
                  + (f"; from starts anywhere {100 * h['anywhere_accuracy']:.1f}% / "
                     f"{100 * h['anywhere_accuracy_easy']:.1f}% / "
                     f"{100 * h['anywhere_accuracy_hard']:.1f}% ({h['anywhere_pairs']} pairs)"
                     if "anywhere_accuracy" in h else ""))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/replicates"))
