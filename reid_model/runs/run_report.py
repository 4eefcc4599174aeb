"""`build_report`: the Python API under `opreid report`. Run folders -> a table in the shape of the
paper's Tables 3-5 (dataset, enabled components, R-1, mAP, mINP), each result beside the paper's
number for the same dataset and component set, with the difference in points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reid_model.engine.run_results import RESULT_METRICS, RunResult, read_run
from reid_model.errors import ConfigError
from reid_model.runs.paper_results import PaperCell, PaperResults, paper_results
from reid_model.runs.result_tables import FORMATS, percent, render_table, signed

#: How each metric is headed, as the paper heads it.
METRIC_LABELS = {"rank1": "R-1", "mAP": "mAP", "mINP": "mINP"}


@dataclass
class ReportRow:
    """One run on one release, beside the paper's cell (metrics in percent; diff = ours - paper)."""

    run: str
    dataset: str
    protocol: str | None
    paper_dataset: str | None
    components: list[str]
    iteration: int
    ours: dict[str, float | None]
    paper: dict[str, float | None]
    diff: dict[str, float | None]
    cell: str | None  # "Table 5, row 2"
    paper_method: str | None


@dataclass
class Report:
    source: str
    components: tuple[str, ...]
    metrics: tuple[str, ...]
    paper_metrics: tuple[str, ...]
    rows: list[ReportRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["unit"] = "percent"
        return d


def _training_note(result: RunResult, paper: PaperResults, dataset: str | None) -> str | None:
    """A warning when the paper's cell assumes another training set (O-ReID: Market1501)."""
    if dataset is None or paper.datasets[dataset].trained_on is None:
        return None
    expected = paper.datasets[dataset].trained_on
    trained = result.train_dataset
    if (
        trained is not None
        and trained.published is not False
        and paper.dataset(trained.name, trained.protocol) == expected
    ):
        return None
    what = f"{trained.name!r}" if trained is not None else "an unknown release"
    return f"{result.run}: the paper's {dataset} numbers come from training on {expected}; this run trained on {what}"


def _not_published_note(result: RunResult, dataset: str) -> str:
    return (
        f"{result.run}: {result.dataset!r} is in the {result.protocol} layout but is not the published dataset "
        f"(its counts differ from the published ones), so it is not compared with the paper's {dataset}; "
        "`opreid import --published` says a copy is the published one"
    )


def report_row(result: RunResult, paper: PaperResults, cell: PaperCell | None) -> ReportRow:
    ours = {m: percent(result.metrics.get(m)) for m in RESULT_METRICS}
    theirs = {m: (cell.metrics.get(m) if cell else None) for m in RESULT_METRICS}
    diff = {
        m: (ours[m] - theirs[m] if ours[m] is not None and theirs[m] is not None else None)
        for m in RESULT_METRICS
    }
    return ReportRow(
        run=result.run, dataset=result.dataset, protocol=result.protocol,
        paper_dataset=cell.dataset if cell else (
            None if result.published is False else paper.dataset(result.dataset, result.protocol)
        ),
        components=[c for c in paper.components if c in result.components], iteration=result.iteration,
        ours=ours, paper=theirs, diff=diff, cell=cell.citation if cell else None,
        paper_method=cell.method if cell else None,
    )  # fmt: skip


def build_report(runs: Sequence[str | Path]) -> Report:
    """Read each run folder (the last evaluation per release) and match it to the paper's cell."""
    if not runs:
        raise ConfigError("give at least one run folder")
    paper = paper_results()
    report = Report(
        source=paper.source, components=paper.components, metrics=RESULT_METRICS,
        paper_metrics=tuple(m for m in RESULT_METRICS if m in paper.metrics),
    )  # fmt: skip
    for run in runs:
        results = read_run(run, paper.components)
        if not results:
            report.notes.append(f"{run}: no evaluation recorded (no ground truth, or not evaluated yet)")
        for result in results:
            dataset = paper.dataset(result.dataset, result.protocol)
            if result.published is False and dataset is not None:
                report.notes.append(_not_published_note(result, dataset))
                dataset = None
            report.rows.append(report_row(result, paper, paper.cell(dataset, result.components)))
            note = _training_note(result, paper, dataset)
            if note and note not in report.notes:
                report.notes.append(note)
    return report


def render_report(report: Report, fmt: str = FORMATS[0]) -> str:
    """The report as a Markdown table with notes below it, or as CSV (the table alone)."""
    headers = ["run", "dataset", *[c.upper() for c in report.components], "iteration"]
    for m in report.metrics:
        label = METRIC_LABELS[m]
        headers.append(label)
        if m in report.paper_metrics:
            headers += [f"paper {label}", f"Δ {label}"]
    headers += ["paper cell"]
    rows = []
    for r in report.rows:
        row: list[Any] = [r.run, r.dataset, *[c in r.components for c in report.components], r.iteration]
        for m in report.metrics:
            row.append(r.ours[m])
            if m in report.paper_metrics:
                row += [r.paper[m], signed(r.diff[m])]
        row.append(f"{r.paper_dataset}, {r.cell}" if r.cell else (r.paper_dataset or ""))
        rows.append(row)
    text = render_table(headers, rows, fmt)
    if fmt == "markdown":
        legend = f"Metrics in percent; Δ = ours - paper, in points. Paper: {report.source}."
        text += "\n" + legend + "\n" + "".join(f"- {n}\n" for n in report.notes)
    return text
