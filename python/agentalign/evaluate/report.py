"""The run report: one self-contained HTML file a person opens in a browser, no server needed.

It reads `pipeline.json` (written by the pipeline) and the files it points to: evaluation
results per stage, heatmaps, reward-model metrics and the label-scaling study, RL histories,
stage timings and the config. Charts are inline SVG and pictures are inline PNG (base64), so the
file can be mailed or attached to a ticket as is.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import yaml

from agentalign.atomic import write_atomic

# Outcome colours: grey for none, then the pads' palette colours, as in the paper's bar charts.
OUTCOME_COLOURS = {"none": "#9a9a9a", "left": "#e13232", "middle": "#f5cd28", "right": "#9b3ce1"}


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _png(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{_esc(path.name)}" src="data:image/png;base64,{data}">'


def outcome_bars(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Grouped bars (none, left, middle, right) per agent with 95% interval whiskers, in SVG."""
    keys = list(OUTCOME_COLOURS)
    bar, gap, group_gap, height, top, left = 18, 3, 34, 220, 20, 44
    group_w = len(keys) * (bar + gap) + group_gap
    width = max(left + group_w * max(len(rows), 1) + 20, left + 10 + 80 * len(keys))
    y = lambda v: top + height * (1 - v)  # noqa: E731
    parts = [f'<svg width="{width}" height="{top + height + 60}" role="img" '
             'aria-label="outcome rates per stage">']
    for tick in range(0, 101, 25):
        yy = y(tick / 100)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{yy}" y2="{yy}" '
                     'stroke="#ddd"/>')
        parts.append(f'<text x="{left - 6}" y="{yy + 4}" text-anchor="end" '
                     f'font-size="11">{tick}%</text>')
    for g, (label, rates) in enumerate(rows):
        x0 = left + 10 + g * group_w
        for k, key in enumerate(keys):
            r = rates.get(key, {"rate": 0, "low": 0, "high": 0})
            x = x0 + k * (bar + gap)
            parts.append(f'<rect x="{x}" y="{y(r["rate"])}" width="{bar}" '
                         f'height="{height * r["rate"]}" fill="{OUTCOME_COLOURS[key]}">'
                         f'<title>{_esc(label)} {key}: {100 * r["rate"]:.1f}% '
                         f'[{100 * r["low"]:.1f}, {100 * r["high"]:.1f}]</title></rect>')
            cx = x + bar / 2
            parts.append(f'<line x1="{cx}" x2="{cx}" y1="{y(r["low"])}" y2="{y(r["high"])}" '
                         'stroke="#222"/>')
            parts.append(f'<text x="{cx}" y="{y(r["rate"]) - 4}" text-anchor="middle" '
                         f'font-size="9">{100 * r["rate"]:.0f}</text>')
        parts.append(f'<text x="{x0 + (group_w - group_gap) / 2}" y="{top + height + 18}" '
                     f'text-anchor="middle" font-size="12">{_esc(label)}</text>')
    for k, key in enumerate(keys):
        x = left + 10 + k * 80
        parts.append(f'<rect x="{x}" y="{top + height + 34}" width="12" height="12" '
                     f'fill="{OUTCOME_COLOURS[key]}"/><text x="{x + 16}" '
                     f'y="{top + height + 44}" font-size="12">{key}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], ylabel: str = "",
               width: int = 420, height: int = 200) -> str:
    """A small SVG line chart of named (x, y) series."""
    points = [p for s in series.values() for p in s]
    if not points:
        return f"<p>{_esc(title)}: no data</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pad_l, pad_t, w, h = 48, 22, width - 60, height - 62
    sx = lambda v: pad_l + w * (v - x0) / (x1 - x0)  # noqa: E731
    sy = lambda v: pad_t + h * (1 - (v - y0) / (y1 - y0))  # noqa: E731
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
             f'<text x="{pad_l}" y="14" font-size="12" font-weight="bold">{_esc(title)}</text>',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="none" '
             'stroke="#ccc"/>',
             f'<text x="{pad_l - 4}" y="{pad_t + 8}" text-anchor="end" font-size="10">'
             f'{y1:.3g}</text>',
             f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end" font-size="10">'
             f'{y0:.3g}</text>',
             f'<text x="{pad_l}" y="{pad_t + h + 14}" font-size="10">{x0:.3g}</text>',
             f'<text x="{pad_l + w}" y="{pad_t + h + 14}" text-anchor="end" font-size="10">'
             f'{x1:.3g}</text>',
             f'<text x="{pad_l + w / 2}" y="{pad_t + h + 14}" text-anchor="middle" '
             f'font-size="10">{_esc(ylabel)}</text>']
    for i, (name, s) in enumerate(series.items()):
        colour = OUTCOME_COLOURS.get(name, palette[i % len(palette)])
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                     'stroke-width="1.5"/>')
        parts.append(f'<text x="{pad_l + 6 + 90 * i}" y="{pad_t + h + 30}" font-size="11" '
                     f'fill="{colour}">{_esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


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


def _load(path: str | Path | None) -> Any:
    if path is None or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())


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
                          for k in ("accuracy", "accuracy_easy", "accuracy_hard"))
                + f"<td>{_esc(metrics.get('labels_used', ''))}</td></tr>")
    if reward_parts:
        sections.append("<h2>Reward models</h2><p>Held-out preference accuracy (easy: the two "
                        "trajectories ended differently; hard: the same outcome).</p><table><tr>"
                        "<th>target</th><th>all</th><th>easy</th><th>hard</th><th>labels</th>"
                        "</tr>" + "".join(reward_parts) + "</table>")
    study = state.get("study_plot")
    if study and (run / study).exists():
        sections.append("<h3>Label scaling</h3>" + _png(run / study))

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
        rows = "".join(f"<tr><td>{_esc(name)}</td><td>{_esc(path)}</td></tr>"
                       for name, path in personalities.items())
        sections.append("<h2>Personalities</h2><p>ONNX files in the ML-Agents inference "
                        "contract, with their cards, ready for Unity's Behavior Parameters.</p>"
                        f"<table><tr><th>name</th><th>file</th></tr>{rows}</table>")

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
