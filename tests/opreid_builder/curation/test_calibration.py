"""`opreid occlusion calibrate` on synth folders with the ground-truth keypoints."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from support.curation import make_synth

from opreid.cli import cli
from opreid_builder.curation.calibration import CONFS, RUNS, calibrate, format_table
from opreid_builder.curation.occlusion import RULES
from opreid_builder.curation.pose import KeypointsFile
from opreid_builder.errors import CurationError


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("calib")
    raw = make_synth(base / "raw", identities=10, cameras=3, seed=11)
    occ, hol = base / "occluded", base / "holistic"
    occ.mkdir()
    hol.mkdir()
    for row in pq.read_table(raw / "truth.parquet").to_pylist():
        (occ if row["occluded"] else hol).joinpath(row["file"]).write_bytes((raw / row["file"]).read_bytes())
    return occ, hol, raw / "keypoints.parquet"


def test_truth_rule_is_perfect_and_ranked_first(folders):
    occ, hol, kp = folders
    report = calibrate(occ, hol, KeypointsFile(kp), progress=False)
    assert len(report.rows) == len(RULES) * len(CONFS) * len(RUNS)
    assert report.n_occluded == len(list(occ.iterdir())) and report.n_holistic == len(list(hol.iterdir()))
    paper = next(r for r in report.rows if (r.rule, r.kpt_conf, r.min_run) == ("coco18", 0.5, 3))
    assert paper.occluded_flagged == 1.0 and paper.holistic_flagged == 0.0 and paper.pareto
    assert report.rows[0].score == 1.0
    scores = [r.score for r in report.rows]
    assert scores == sorted(scores, reverse=True)
    lax = next(r for r in report.rows if (r.rule, r.kpt_conf, r.min_run) == ("count", 0.5, 2))
    assert lax.holistic_flagged >= paper.holistic_flagged
    assert (
        paper.occluded_ci[0] > 0.85
        and paper.holistic_ci == (0.0, paper.holistic_ci[1])
        and paper.holistic_ci[1] < 0.1
    )
    assert all(r.rates == "out-of-sample" for r in report.rows)  # a keypoints file: rules only
    assert report.selection is not None and report.selection.rates == "cross-validated"
    assert report.selection.occluded_flagged == 1.0 and report.selection.holistic_flagged == 0.0
    text = format_table(report, limit=5)
    assert "coco18" in text and len(text.splitlines()) == 3 + 5 + 3
    assert "Choosing a rule here" in text


def test_calibrate_cli_table_and_json(folders):
    occ, hol, kp = folders
    runner = CliRunner()
    base = [
        "occlusion",
        "calibrate",
        "--occluded",
        str(occ),
        "--holistic",
        str(hol),
        "--keypoints",
        str(kp),
        "--no-progress",
    ]
    res = runner.invoke(cli, base)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[1].split()[:3] == ["rule", "kpt_conf", "min_run"]
    assert len(lines) == 3 + len(RULES) * len(CONFS) * len(RUNS) + 3
    res = runner.invoke(cli, [*base, "--json"])
    body = json.loads(res.stdout)
    assert body["rows"][0]["score"] == 1.0 and body["source"]["source"] == "keypoints-file"
    assert body["selection"]["rates"] == "cross-validated" and len(body["rows"][0]["occluded_ci"]) == 2


def test_calibrate_errors(folders, tmp_path, monkeypatch):
    occ, hol, kp = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CurationError, match="at least one crop"):
        calibrate(occ, empty, KeypointsFile(kp), progress=False)
    monkeypatch.delenv("OPREID_POSE_MODEL", raising=False)
    res = CliRunner().invoke(cli, ["occlusion", "calibrate", "--occluded", str(occ), "--holistic", str(hol)])
    assert res.exit_code == 1 and res.stderr.startswith("opreid occlusion calibrate: error: ")
    assert "--pose-model" in res.stderr
