"""`opreid report` compares a run with the paper's cell only on the published dataset: a release that
merely shares Market-1501's layout (CUHK01, CUHK03-NP, a lab's crops) showed as "-71.8 mAP" against
Market-1501; it now gets no paper column, and the report says why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support.paths import SHARED_DATA

from opreid_builder.public_datasets.importer import ImportOptions, import_benchmark

OFF = {c: False for c in ("cbe", "bed", "dnl", "rp", "me")}  # Table 5, row 1


def _run(root: Path, data: Path, records: list[dict]) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump({**OFF, "seed": 0}))
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "environment.json").write_text(json.dumps({"data": str(data)}))
    return root


def _eval(**labels) -> dict:
    return {"kind": "eval", "iteration": 10, "rank1": 0.2, "mAP": 0.168, "mINP": 0.05, **labels}


@pytest.mark.parametrize("published", [False, True])
def test_only_the_published_dataset_gets_the_papers_column(published, synth_layout, tmp_path):
    from reid_model.runs.run_report import build_report, render_report

    rel = tmp_path / "rel"
    import_benchmark("market1501", synth_layout("market1501"), rel, ImportOptions(published=published))
    report = build_report([_run(tmp_path / "run", rel, [_eval()])])
    (row,) = report.rows
    if published:
        assert (row.paper_dataset, row.cell) == ("Market1501", "Table 5, row 1") and row.paper["mAP"] == 88.6
        assert report.notes == []
    else:
        assert row.paper_dataset is None and row.cell is None and row.diff["mAP"] is None
        (note,) = report.notes
        assert "is not the published dataset" in note and "Market1501" in note and "--published" in note
        assert "-71.8" not in render_report(report)


def test_an_eval_data_release_says_it_in_its_records(synth_layout, tmp_path):
    from reid_model.engine.evaluation import evaluation_sets
    from reid_model.runs.run_report import build_report

    train, other = tmp_path / "train", tmp_path / "other"
    import_benchmark("market1501", synth_layout("market1501"), train, ImportOptions(published=True))
    import_benchmark("market1501", synth_layout("market1501"), other, ImportOptions(name="My crops"))
    labels = [s.labels() for s in evaluation_sets(train, [other])]
    assert labels == [
        {"dataset": "Market-1501, official protocol (imported by opreid)", "split": "test", "protocol": "market1501",
         "published": True},
        {"dataset": "My crops", "split": "test", "protocol": "market1501", "published": False},
    ]  # fmt: skip
    report = build_report([_run(tmp_path / "run", train, [_eval(), _eval(**labels[1])])])
    assert [(r.dataset, r.cell) for r in report.rows] == [
        ("Market-1501, official protocol (imported by opreid)", "Table 5, row 1"),
        ("My crops", None),
    ]


@pytest.mark.skipif(not (SHARED_DATA / "cuhk01").is_dir(), reason=f"{SHARED_DATA}/cuhk01 is not here")
def test_cuhk01_is_not_compared_with_market1501(tmp_path):
    from reid_model.runs.run_report import build_report

    rel = tmp_path / "cuhk01"
    import_benchmark("market1501", SHARED_DATA / "cuhk01", rel)
    report = build_report([_run(tmp_path / "run", rel, [_eval()])])
    (row,) = report.rows
    assert row.dataset == "cuhk01 in the Market-1501 layout (imported by opreid)"
    assert (
        row.paper_dataset is None
        and row.diff["mAP"] is None
        and "not the published dataset" in report.notes[0]
    )
