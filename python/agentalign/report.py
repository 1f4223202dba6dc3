"""The run report: one self-contained HTML file a person opens in a browser, no server needed.

It reads `pipeline.json` (written by the pipeline) and the files it points to: evaluation
results per stage, heatmaps, reward-model metrics and the label-scaling study, RL histories,
stage timings and the config. Charts are inline SVG and pictures are inline PNG (base64), so the
file can be mailed or attached to a ticket as is.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
from pathlib import Path
from typing import Any

import yaml

from agentalign.atomic import write_atomic
from agentalign.command import Command
from agentalign.errors import UserError

# Outcome colours: grey for none, then the pads' palette colours, as in the paper's bar charts.
OUTCOME_COLOURS = {"none": "#9a9a9a", "left": "#e13232", "middle": "#f5cd28", "right": "#9b3ce1"}


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_esc(path.name)}" src="data:image/png;base64,{data}">'


# Fixed settings for the report's charts: a fixed hash salt so the SVG's ids (clip paths,
# markers) do not change from run to run, labels taken as plain text (a "$" in a run's name is
# not math), and small fonts that fit charts a few hundred pixels wide.
_CHART_RC = {"svg.hashsalt": "agentalign-report", "text.parse_math": False, "font.size": 8,
             "axes.titlesize": 9, "axes.titleweight": "bold", "legend.fontsize": 8}


def _svg(fig: Any, label: str) -> str:
    """The figure as SVG markup to inline in HTML (no XML prolog or doctype), then closed."""
    import io

    from matplotlib import pyplot as plt

    buffer = io.StringIO()
    try:
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        plt.close(fig)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    return svg.replace("<svg ", f'<svg role="img" aria-label="{_esc(label)}" ', 1)


def outcome_bars(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Grouped bars (none, left, middle, right) per agent with 95% interval whiskers, as inline
    SVG drawn by matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import PercentFormatter

    keys = list(OUTCOME_COLOURS)
    bar = 0.8 / len(keys)
    with matplotlib.rc_context(_CHART_RC):
        fig, ax = plt.subplots(figsize=(max(4.6, 1.3 + 1.15 * len(rows)), 3.1),
                               layout="constrained")
        for k, key in enumerate(keys):
            blank = {"rate": 0.0, "low": 0.0, "high": 0.0}
            rates = [r.get(key, blank) for _, r in rows]
            rate = [float(r["rate"]) for r in rates]
            whiskers = [[max(0.0, v - float(r["low"])) for v, r in zip(rate, rates, strict=True)],
                        [max(0.0, float(r["high"]) - v) for v, r in zip(rate, rates, strict=True)]]
            x = [g - 0.4 + (k + 0.5) * bar for g in range(len(rows))]
            bars = ax.bar(x, rate, bar * 0.9, yerr=whiskers, color=OUTCOME_COLOURS[key],
                          label=key, error_kw={"ecolor": "#222222", "elinewidth": 0.9},
                          zorder=2)
            ax.bar_label(bars, [f"{100 * v:.0f}" for v in rate], padding=1.5, fontsize=6.5,
                         color="#444444")
        ax.set_xticks(range(len(rows)), [label for label, _ in rows])
        ax.set_xlim(-0.6, max(len(rows), 1) - 0.4)
        ax.set_ylim(0.0, 1.08)  # room for the value labels over a 100% bar
        ax.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel("share of episodes")
        ax.grid(axis="y", color="#dddddd", zorder=0)
        ax.tick_params(axis="x", length=0)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=len(keys),
                  frameon=False)
        return _svg(fig, "outcome rates per stage")


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], ylabel: str = "",
               width: int = 420, height: int = 200) -> str:
    """A small line chart of named (x, y) series, `width` x `height` CSS pixels, as inline SVG
    drawn by matplotlib. `ylabel` is written under the x axis, as before (the callers pass the
    x quantity, e.g. "RL iteration")."""
    points = [p for s in series.values() for p in s]
    if not points:
        return f"<p>{_esc(title)}: no data</p>"
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    with matplotlib.rc_context(_CHART_RC):
        # SVG sizes are in points (1/72 in) and a browser draws 96 CSS pixels per inch.
        fig, ax = plt.subplots(figsize=(width / 96, height / 96), layout="constrained")
        for i, (name, s) in enumerate(series.items()):
            colour = OUTCOME_COLOURS.get(name, palette[i % len(palette)])
            ax.plot([p[0] for p in s], [p[1] for p in s], color=colour, linewidth=1.5,
                    marker="o" if len(s) == 1 else None, markersize=3, label=name)
        ax.set_title(title, loc="left")
        ax.set_xlabel(ylabel)
        ax.grid(color="#e6e6e6")
        ax.tick_params(labelsize=7)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.28 if ylabel else -0.14),
                  ncols=min(len(series), 4), frameon=False, fontsize=7, handlelength=1.5)
        return _svg(fig, title)


def _rates_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    head = "".join(f"<th>{k}</th>" for k in ("agent", "none", "left", "middle", "right",
                                              "episodes"))
    body = []
    for label, rates in rows:
        cells = "".join(
            f"<td>{100 * rates[k]['rate']:.1f}% <small>[{100 * rates[k]['low']:.1f}, "
            f"{100 * rates[k]['high']:.1f}]</small></td>" for k in ("none", "left", "middle",
                                                                     "right"))
        body.append(f"<tr><td>{_esc(label)}</td>{cells}<td>{rates['left']['n']}</td></tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _intents_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    body = "".join(
        f"<tr><td>{_esc(label)}</td><td>{_esc(got['intent'])}</td>"
        f"<td>{_esc(got['description'])}</td><td>{100 * got['rate']:.1f}% <small>"
        f"[{100 * got['low']:.1f}, {100 * got['high']:.1f}]</small></td>"
        f"<td>{got['episodes']}</td></tr>" for label, got in rows)
    return ("<table><tr><th>agent</th><th>intent</th><th>what it asks</th><th>satisfied</th>"
            f"<th>episodes</th></tr>{body}</table>")


def _card_intent(onnx: Path) -> str:
    """The intent a personality's card names, with its satisfaction when measured."""
    card = _load(onnx.with_suffix(".json")) or {}
    intent = card.get("intent") or {}
    if not intent:
        return _esc(card.get("target") or "")
    text = f"{_esc(intent['name'])}: {_esc(intent['description'])}"
    got = (card.get("measured") or {}).get("intent")
    if got:
        text += (f" <small>({100 * got['rate']:.1f}% of {got['episodes']} episodes "
                 f"[{100 * got['low']:.1f}, {100 * got['high']:.1f}])</small>")
    return text


def _load(path: str | Path | None) -> Any:
    if path is None or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())


def _study_gaps(path: Path) -> str:
    """One line under a study's chart: agent init minus random init at each label count (the
    paper's finding is a large positive gap at few labels)."""
    means = {(r["labels"], r["init"]): r["mean"] for r in (_load(path) or {}).get("table", [])}
    both = sorted(n for n, kind in means if kind == "agent" and (n, "random") in means)
    gaps = [f"{n:,}: {100 * (means[n, 'agent'] - means[n, 'random']):+.1f}" for n in both]
    return ("<p>Agent init minus random init, held-out points, by labels: "
            + ", ".join(gaps) + ".</p>") if gaps else ""


def build_report(run: str | Path) -> Path:
    """Write `<run>/report.html` from `<run>/pipeline.json`; returns its path."""
    run = Path(run)
    state = json.loads((run / "pipeline.json").read_text())
    sections: list[str] = []

    evals = [(label, _load(run / path)) for label, path in state.get("evaluations", {}).items()]
    evals = [(label, r) for label, r in evals if r]
    spawn_rows = [(label, r["rates"]) for label, r in evals
                  if r["settings"].get("starts") != "offlane"]
    offlane_rows = [(label, r["rates"]) for label, r in evals
                    if r["settings"].get("starts") == "offlane"]
    if spawn_rows:
        sections.append("<h2>Where the agents go</h2><p>Outcome rates per stage (sampled "
                        "actions, 95% Wilson intervals; none = fell or timed out), as in the "
                        "paper's Figure 2.</p>" + outcome_bars(spawn_rows)
                        + _rates_table(spawn_rows))
    if offlane_rows:
        sections.append("<h3>Off-lane starts (recovery)</h3>" + outcome_bars(offlane_rows)
                        + _rates_table(offlane_rows))
    intent_rows = [(label, r["intent"]) for label, r in evals if r.get("intent")]
    if intent_rows:
        sections.append("<h3>Designer intents</h3><p>The share of each evaluation's episodes "
                        "that satisfy the personality's intent (docs/intents.md), with its "
                        "95% Wilson interval; a pad's intent is its reach rate above.</p>"
                        + _intents_table(intent_rows))
    heatmaps = []
    for label, r in evals:
        path = run / Path(state["evaluations"][label]).parent / r["files"]["heatmap"]
        if path.exists():
            heatmaps.append(f"<figure>{_png(path)}<figcaption>{_esc(label)}</figcaption>"
                            "</figure>")
    if heatmaps:
        sections.append("<h2>Trajectory heatmaps</h2><div class='grid'>" + "".join(heatmaps)
                        + "</div>")

    reward_parts = []
    for target, path in state.get("reward", {}).items():
        metrics = _load(run / path)
        if metrics:
            acc = metrics.get("heldout", metrics)
            reward_parts.append(
                f"<tr><td>{_esc(target)}</td>"
                + "".join(f"<td>{_fmt_pct(acc.get(k))}</td>"
                          for k in ("accuracy", "accuracy_easy", "accuracy_hard",
                                    "anywhere_accuracy"))
                + f"<td>{_esc(metrics.get('labels_used', ''))}</td></tr>")
    if reward_parts:
        sections.append("<h2>Reward models</h2><p>Held-out preference accuracy on pairs of runs "
                        "from the spawns (easy: the two trajectories ended differently; hard: "
                        "the same outcome), and on pairs of runs started anywhere on the island "
                        "(when the label stage made them: label.anywhere_heldout_episodes)."
                        "</p><table><tr><th>target</th><th>all</th><th>easy</th><th>hard</th>"
                        "<th>from anywhere</th><th>labels</th></tr>" + "".join(reward_parts)
                        + "</table>")
    for target, study in state.get("study_plots", {}).items():
        if (run / study).exists():
            sections.append(f"<h3>Label scaling: {_esc(target)}</h3>" + _png(run / study)
                            + _study_gaps((run / study).with_name("study.json")))

    curves = []
    for target, path in state.get("rl", {}).items():
        history = _load(run / path)
        if not history:
            continue
        rows = history.get("history", history) if isinstance(history, dict) else history
        rows = [h for h in rows if isinstance(h, dict)]
        x = [float(h.get("iteration", i + 1)) for i, h in enumerate(rows)]
        for title, keys in (("reward-model score", ("score",)), ("KL to reference", ("kl",)),
                            ("entropy", ("entropy",)),
                            ("true outcome rates", ("rate_left", "rate_middle", "rate_right",
                                                    "rate_none"))):
            series = {k.removeprefix("rate_"): [(xi, float(h[k])) for xi, h in zip(x, rows,
                                                                                   strict=True)
                                                if h.get(k) is not None] for k in keys}
            series = {k: v for k, v in series.items() if v}
            if series:
                curves.append(line_chart(f"{target}: {title}", series, "RL iteration"))
    if curves:
        sections.append("<h2>RL curves</h2><div class='grid'>" + "".join(curves) + "</div>")

    personalities = state.get("personalities", {})
    if personalities:
        rows = "".join(f"<tr><td>{_esc(name)}</td><td>{_card_intent(run / path)}</td>"
                       f"<td>{_esc(path)}</td></tr>" for name, path in personalities.items())
        sections.append("<h2>Personalities</h2><p>ONNX files in the ML-Agents inference "
                        "contract, with their cards, ready for Unity's Behavior Parameters.</p>"
                        "<table><tr><th>name</th><th>intent</th><th>file</th></tr>"
                        f"{rows}</table>")

    stages = state.get("stages", [])
    if stages:
        rows = "".join(f"<tr><td>{_esc(s['name'])}</td><td>{_esc(s['status'])}</td>"
                       f"<td>{s.get('seconds', 0):.1f}</td></tr>" for s in stages)
        total = sum(s.get("seconds", 0) for s in stages)
        if "wall_seconds" in state:  # stages that ran side by side overlap in the sum
            rows += (f"<tr><td><b>total (stages summed)</b></td><td></td><td><b>{total:.1f}</b>"
                     f"</td></tr><tr><td><b>wall clock</b></td><td></td>"
                     f"<td><b>{state['wall_seconds']:.1f}</b></td></tr>")
        else:
            rows += f"<tr><td><b>total</b></td><td></td><td><b>{total:.1f}</b></td></tr>"
        sections.append("<h2>Stage timings</h2><table><tr><th>stage</th><th>status</th>"
                        f"<th>seconds</th></tr>{rows}</table>")
    sections.append("<h2>Config</h2><pre>" + _esc(yaml.safe_dump(state.get("config", {}),
                                                                 sort_keys=False)) + "</pre>")

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>agentalign run {_esc(state.get('name', run.name))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.8em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }} img {{ max-width: 340px; image-rendering: pixelated; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>agentalign run <code>{_esc(state.get('name', run.name))}</code></h1>
<p>Pre-train on the gameplay corpus, fine-tune on curated demos, learn a reward model from
preferences, align each personality (preference fine-tuning, then RL), export to ONNX.</p>
{''.join(sections)}
</body></html>
"""
    out = run / "report.html"
    write_atomic(out, lambda f: f.write(page.encode()))
    return out


def _fmt_pct(value: Any) -> str:
    return "" if value is None else f"{100 * float(value):.1f}%"


# --- the command ---------------------------------------------------------------------------------


def run(folder: str | Path, *, progress: bool = False) -> Path:
    """`agentalign report`: (re)write a run's report.html from its pipeline.json."""
    folder = Path(folder)
    if not (folder / "pipeline.json").exists():
        raise UserError(f"{folder}: no pipeline.json here; pass a run folder made by "
                        "`agentalign pipeline`")
    return build_report(folder)


def summary(path: Path) -> str:
    return f"wrote {path}"


def arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Write RUN/report.html from RUN/pipeline.json and the artifacts it "
                          "points to: a self-contained page for a browser.")
    parser.add_argument("run", type=Path, help="a run folder made by agentalign pipeline")


def request(args: argparse.Namespace) -> tuple[None, dict[str, Any]]:
    return None, {"folder": args.run}


COMMAND = Command("report", "(re)write a run's report.html", arguments, request,
                  "agentalign.report:run", "agentalign.report:summary", inputs=("folder",),
                  settings=False)
