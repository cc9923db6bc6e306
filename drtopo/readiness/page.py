"""The readiness page (pure): one static HTML file with inline CSS and SVG, no server and no external asset: the
items, the estimate, and per scenario a small chart of the drills' RTO and RPO over time against the objectives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

WIDTH, HEIGHT, PAD = 360, 140, 30
COLORS = {"rto": "#1f77b4", "rpo": "#d62728"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}
.pass{background:#e6f4ea}.fail{background:#fce8e6}.skip{background:#fff4d6}
.verdict{font-size:1.4em;font-weight:bold}.charts{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;border:1px solid #ddd;padding:.5em}figcaption{font-weight:bold}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def items_table(checks: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(
        f'<tr class="item {escape(c["outcome"])}" data-item="{escape(c["name"])}">'
        f"<td>{escape(c['outcome'].upper())}</td><td>{escape(c['name'])}</td><td>{escape(_fmt(c.get('value')))}</td>"
        f"<td>{escape(_fmt(c.get('limit')))}</td><td>{escape(str(c.get('detail', '')))}</td></tr>"
        for c in checks
    )
    head = "<tr><th>result</th><th>item</th><th>value</th><th>limit</th><th>detail</th></tr>"
    return f'<table id="items">{head}{rows}</table>'


def estimate_table(est: Mapping[str, Any]) -> str:
    rows = []
    for name in ("rto", "rpo"):
        fig = est[name]
        within = {True: "within", False: "BEYOND", None: "unknown"}[fig["within"]]
        rows.append(
            f'<tr class="estimate" data-figure="{name}"><th>{name.upper()}</th><td>{escape(_fmt(fig["seconds"]))} s'
            f"</td><td>objective {escape(_fmt(fig['objective_seconds']))} s ({within})</td>"
            f"<td>{escape(fig['note'])}</td></tr>"
        )
        rows.extend(
            f'<tr class="part {escape(p["kind"])}"><td></td><td>{escape(p["name"])}: {escape(_fmt(p["seconds"]))} s'
            f"</td><td>{escape(p['kind'])}</td><td>{escape(p['source'])}</td></tr>"
            for p in fig["parts"]
        )
    return f'<table id="estimate">{"".join(rows)}</table>'


def _points(values: Sequence[tuple[float, float]], top: float, t0: float, t1: float) -> list[tuple[float, float]]:
    span = (t1 - t0) or 1.0
    return [(PAD + (t - t0) / span * (WIDTH - 2 * PAD), HEIGHT - PAD - v / top * (HEIGHT - 2 * PAD)) for t, v in values]


def series_svg(scenario: str, name: str, runs: Sequence[Mapping[str, Any]]) -> str:
    """One figure (`rto` or `rpo`) of a scenario's drills over time, scaled to the measured values; the objective a
    dashed line when it fits, else named as above the chart."""
    color = COLORS[name]
    times = [datetime.fromisoformat(r["at"]).timestamp() for r in runs]
    t0, t1 = min(times), max(times)
    points = [
        (t, float(r[f"{name}_seconds"]), str(r["at"]))
        for t, r in zip(times, runs, strict=True)
        if r.get(f"{name}_seconds") is not None
    ]
    goal = (runs[-1].get("objectives") or {}).get(f"{name}_seconds")
    top = max([v for _, v, _ in points], default=0.0) * 1.25 or (float(goal) if goal else 1.0)
    parts = [f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>']
    note = ""
    if goal is not None and float(goal) <= top:
        ((_, y),) = _points([(t0, float(goal))], top, t0, t1)
        parts.append(
            f'<line class="objective" x1="{PAD}" y1="{y:.1f}" x2="{WIDTH - PAD}" y2="{y:.1f}" '
            f'stroke="{color}" stroke-dasharray="4 3"/>'
        )
    elif goal is not None:
        note = f", objective {float(goal):g} s above the chart"
    xy = _points([(t, v) for t, v, _ in points], top, t0, t1)
    if len(xy) > 1:
        parts.append(f'<polyline fill="none" stroke="{color}" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in xy)}"/>')
    parts.extend(
        f'<circle class="point {name}" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
        f"<title>{name.upper()} {v:g} s at {escape(at)}</title></circle>"
        for (x, y), (_, v, at) in zip(xy, points, strict=True)
    )
    parts.append(f'<text x="{PAD}" y="14" font-size="11">{name.upper()}: top {top:.3g} s{escape(note)}</text>')
    return (
        f'<svg class="chart" data-scenario="{escape(scenario)}" data-figure="{name}" '
        f'xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}">'
        f"{''.join(parts)}</svg>"
    )


def chart(scenario: str, runs: Sequence[Mapping[str, Any]]) -> str:
    """A scenario's drills: its RTO and its RPO in seconds over time, each against its objective."""
    svgs = "".join(series_svg(scenario, name, runs) for name in ("rto", "rpo"))
    return f"<figure><figcaption>{escape(scenario)} ({len(runs)} drills)</figcaption>{svgs}</figure>"


def render(document: Mapping[str, Any]) -> str:
    """The page of a readiness document (`Readiness.to_dict()`)."""
    measured = document.get("measured", {})
    verdict = "READY" if document["ok"] else "AT RISK"
    history = document.get("drills") or {}
    charts = "".join(chart(s, runs) for s, runs in sorted(history.items()) if runs) or (
        '<p id="no-drills">No drill report in the configuration bucket yet: run `python -m scripts.drill`.</p>'
    )
    title = f"drtopo readiness: {escape(' / '.join(measured.get('pair', [])))}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body><h1>{title}</h1>"
        f'<p class="verdict {"pass" if document["ok"] else "fail"}" id="verdict">{verdict}</p>'
        f"<p>measured {escape(str(measured.get('at', '')))} from stack {escape(str(measured.get('stack', '')))}</p>"
        f"<h2>Items</h2>{items_table(document['checks'])}"
        f"<h2>If the primary region failed now</h2>{estimate_table(document['estimate'])}"
        f'<h2>Drills</h2><div class="charts">{charts}</div></body></html>\n'
    )
