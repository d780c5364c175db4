"""The exposure chart is SVG drawn on the server."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime

from fleet.console.charts import exposure_chart
from fleet.core.exposure import DayExposure

SVG = "{http://www.w3.org/2000/svg}"


def test_one_line_per_severity_with_a_point_per_day() -> None:
    days = [
        DayExposure(date(2026, 11, d), datetime(2026, 11, d, tzinfo=UTC), counts)
        for d, counts in ((1, {}), (2, {"critical": 3, "low": 1}), (3, {"critical": 12}))
    ]
    svg = ET.fromstring(str(exposure_chart(days)))
    lines = svg.findall(f"{SVG}polyline")
    assert [line.get("class") for line in lines] == [
        "sev-critical",
        "sev-high",
        "sev-medium",
        "sev-low",
    ]
    assert all(len(line.get("points", "").split()) == 3 for line in lines)
    heights = [float(p.split(",")[1]) for p in lines[0].get("points", "").split()]
    assert heights[0] > heights[1] > heights[2]  # 0, 3, 12 instances: higher is more
    legend = [t.text for t in svg.findall(f"{SVG}text") if t.get("class") == "legend"]
    assert legend == ["critical (12)", "high (0)", "medium (0)", "low (0)"]
    assert "style" not in str(exposure_chart(days))  # the CSP allows no inline style


def test_no_days_no_chart() -> None:
    assert str(exposure_chart([])) == ""
