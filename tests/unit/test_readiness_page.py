"""The readiness page in a real browser: headless Chromium (installed by `make setup`, lab/setup_system.sh) opens
the static file, and the DOM it built holds the items table's rows and a chart per scenario with a point per
drill; its screenshot is a PNG of the page. No server: the page is opened as a file."""

from __future__ import annotations

import shutil
import struct
import subprocess
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from drtopo.readiness import drills, rules
from drtopo.readiness.estimate import estimate
from drtopo.readiness.page import render
from drtopo.settings import load_settings

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
BROWSER_TIMEOUT = 120


class Dom(HTMLParser):
    """The elements of the DOM Chromium dumped, as (tag, attributes) in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, Any]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def having(self, tag: str, **attrs: str) -> list[dict[str, Any]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    browser = shutil.which("chromium")
    assert browser, "chromium is not installed: `make setup` installs Debian's chromium (lab/setup_system.sh)"
    return subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *args],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
        check=True,
    )


def document() -> dict[str, Any]:
    settings = load_settings("dr")
    runs = {
        name: [
            drills.scenario_record(
                {
                    "scenario": name,
                    "ok": True,
                    "measured": {"client_rto_seconds": 60.0 + 10 * i, "rpo_seconds": 0.5 * i},
                    "objectives": {"rto_seconds": 14400.0, "rpo_seconds": 900.0},
                },
                NOW - timedelta(days=7 * (3 - i)),
            )
            for i in range(4)
        ]
        for name in ("region-failure", "kafka-cluster-failure")
    }
    items = [
        rules.replica_lag(0.2, 900.0, "dr behind prod"),
        rules.dump_age(3600.0, "daily", "daily/db/2026-12-02/db-20261202T090000Z.dump", "dumps"),
        rules.mirror_lag({"OrderRejected": 500}, {"OrderRejected": 12.0}, 100, 300.0, ""),
        rules.last_drill(drills.newest(runs), "s3://cfg/drills/"),
    ]
    return {
        "ok": False,
        "checks": [c.to_dict() for c in items],
        "measured": {"pair": ["dr", "prod"], "stack": "dr", "at": NOW.isoformat()},
        "estimate": estimate(settings, runs["region-failure"][-1], 0.2, 12.0).to_dict(),
        "drills": runs,
    }


def test_chromium_renders_the_items_and_a_chart_per_scenario(tmp_path: Path) -> None:
    page = tmp_path / "status.html"
    page.write_text(render(document()))
    dom = Dom()
    dom.feed(chromium("--dump-dom", page.as_uri()).stdout)
    rows = [a for t, a in dom.elements if t == "tr" and "item" in a.get("class", "").split()]
    assert [r["data-item"] for r in rows] == [rules.REPLICA_LAG, rules.DUMP_AGE, rules.MIRROR_LAG, rules.DRILL]
    assert [r["class"] for r in rows] == ["item pass", "item pass", "item fail", "item pass"]
    assert dom.having("p", id="verdict", **{"class": "verdict fail"})
    charts = dom.having("svg", **{"class": "chart"})
    assert sorted((c["data-scenario"], c["data-figure"]) for c in charts) == [
        ("kafka-cluster-failure", "rpo"),
        ("kafka-cluster-failure", "rto"),
        ("region-failure", "rpo"),
        ("region-failure", "rto"),
    ]
    assert len(dom.having("circle", **{"class": "point rto"})) == 8
    assert len(dom.having("circle", **{"class": "point rpo"})) == 8
    assert len(dom.having("tr", **{"class": "estimate"})) == 2

    shot = tmp_path / "status.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,900", page.as_uri())
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1000, 900)
