"""The report's view of the registry: every version's MAE over time, and which versions have a report."""

from __future__ import annotations

import math
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any

from inference.modelsettings import report_name
from training.report import plots
from training.report.page import figure, table, usd


def history_section(
    history: list[dict[str, Any]],
    versions: list[int],
    this_run: tuple[str, float, str] | None,
    current_version: int | None,
    directory: Path | None,
) -> str:
    """The section: a plot of MAE over time and a table of versions.

    ``this_run`` is (time, MAE, label) of the run being reported, labelled ``vN`` when it promoted
    version N; ``directory`` is where report files are looked for (None: assume there are none).
    """
    points: list[tuple[datetime, float, str, str]] = []
    trained: dict[int, tuple[str, float]] = {}
    for line in history:
        try:
            if line.get("event") != "train":
                continue
            when, mae = datetime.fromisoformat(str(line["time"])), float(line["candidate_mae"])
            if line.get("decision") == "promoted" and line.get("version") in versions:
                trained[int(line["version"])] = (str(line["time"]), mae)
                points.append((when, mae, f"v{line['version']}", "version"))
            elif line.get("decision") == "rejected":
                points.append((when, mae, "", "rejected"))
        except (KeyError, TypeError, ValueError):
            continue  # a line this report cannot read is not a reason to fail the run
    marks = {current_version: " (current)"} if current_version is not None else {}
    if this_run is not None:
        points.append((datetime.fromisoformat(this_run[0]), this_run[1], this_run[2], "this run"))
        if this_run[2].startswith("v"):  # promoted by this run
            version = int(this_run[2][1:])
            trained[version] = (this_run[0], this_run[1])
            versions = sorted({*versions, version})
            marks = {version: " (this run, now current)"}
    rows = []
    for v in versions:
        time, mae = trained.get(v, ("not in the history", math.nan))
        mark = marks.get(v, "")
        has_report = (this_run is not None and mark.startswith(" (this run")) or (
            directory is not None and (directory / report_name(v)).is_file()
        )
        report = f"<code>{escape(report_name(v))}</code>" if has_report else "none (trained before reports)"
        rows.append([f"v{v}{escape(mark)}", escape(time), usd(mae, 4), report])
    crosses = any(kind == "rejected" and math.isfinite(mae) for _, mae, _, kind in points)
    html = (
        "<p>Each version's MAE as measured when it was trained (on the holdout of the data of that time)"
        + ("; rejected candidates are crosses" if crosses else "")
        + ". Open any version's report with <code>GET /models/{version}/report</code>, or the "
        "file beside its model.</p>"
    )
    if points:
        html += figure(plots.mae_over_time(sorted(points)))
    return html + table(["version", "trained", "MAE (USD)", "report file"], rows)
