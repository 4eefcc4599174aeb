"""`opreid report` and `opreid ablate`: run folders read by the contract (last eval per release,
switches from config.yaml), matched to the paper's cells; the ablation runner end to end on a small
OPReID-protocol release, interrupted and resumed, with an evaluation on a second release."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from manifests import ExitCode, read_dataset_json, write_dataset_json


# -- report on hand-written run folders (the contract, no training) --------------------------------------
def _run_folder(root: Path, switches: dict, records: list[dict], data: Path | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(yaml.safe_dump({**switches, "seed": 0}))
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if data is not None:
        (root / "environment.json").write_text(json.dumps({"data": str(data)}))
    return root


def _eval(iteration, rank1, mAP, mINP=0.1, **extra):
    return {"kind": "eval", "iteration": iteration, "rank1": rank1, "mAP": mAP, "mINP": mINP, **extra}


@pytest.fixture
def market_release(tmp_path) -> Path:
    rel = tmp_path / "mkt"
    rel.mkdir()
    write_dataset_json(rel, {"name": "Market-1501", "protocol": "market1501"})
    return rel


def test_report_reads_the_last_eval_per_release(tmp_path, market_release):
    from reid_model.runs.run_report import build_report

    off = {c: False for c in ("cbe", "bed", "dnl", "rp", "me")}
    records = [
        _eval(0, 0.10, 0.05),
        {"kind": "train", "iteration": 5, "loss": 1.0},
        _eval(10, 0.90, 0.80, 0.40),
        _eval(10, 0.70, 0.60, dataset="Occluded-REID", protocol="occluded_reid"),
        _eval(20, 0.95, 0.85, 0.45),
    ]
    run = _run_folder(tmp_path / "run", off, records, data=market_release)
    report = build_report([run])
    assert [(r.dataset, r.iteration, r.paper_dataset, r.cell) for r in report.rows] == [
        ("Market-1501", 20, "Market1501", "Table 5, row 1"),
        ("Occluded-REID", 10, "O-ReID", "Table 3, row 12"),
    ]
    market = report.rows[0]
    assert market.components == [] and market.ours["rank1"] == pytest.approx(95.0)
    assert market.paper == {"rank1": 95.4, "mAP": 88.6, "mINP": None}
    assert market.diff["mAP"] == pytest.approx(85.0 - 88.6) and market.diff["mINP"] is None
    assert report.notes == []  # O-ReID after Market1501 training: the paper's protocol


def test_report_notes_a_cross_dataset_cell_trained_elsewhere_and_unmatched_sets(tmp_path):
    from reid_model.runs.run_report import build_report

    data = tmp_path / "somewhere"  # no dataset.json: the folder name
    switches = {"cbe": False, "bed": True, "dnl": False, "rp": False, "me": False}  # not a paper row
    run = _run_folder(tmp_path / "run", switches, [_eval(3, 0.5, 0.4), _eval(3, 0.6, 0.5, dataset="occluded_reid")],
                      data=data)  # fmt: skip
    report = build_report([run])
    assert [(r.dataset, r.paper_dataset, r.cell) for r in report.rows] == [
        ("somewhere", None, None),
        ("occluded_reid", "O-ReID", None),
    ]
    assert report.rows[0].components == ["bed"] and report.rows[0].paper["rank1"] is None
    assert len(report.notes) == 1 and "trained on 'somewhere'" in report.notes[0]


def test_report_cli_renders_markdown_csv_and_json(tmp_path, market_release, run_opreid):
    on = {c: True for c in ("cbe", "bed", "dnl", "rp", "me")}
    a = _run_folder(tmp_path / "a", on, [_eval(7, 0.961, 0.893, 0.5)], data=market_release)
    b = _run_folder(tmp_path / "b", {**on, "me": False}, [_eval(7, 0.95, 0.88, 0.5)], data=market_release)
    md = run_opreid("report", a, b)
    assert md.exit_code == 0, md.stderr
    lines = md.stdout.splitlines()
    assert lines[0].startswith(
        "| run | dataset | CBE | BED | DNL | RP | ME | iteration | R-1 | paper R-1 | Δ R-1 |"
    )
    assert lines[2].split(" | ")[1:] == ["Market-1501", "✓", "✓", "✓", "✓", "✓", "7", "96.1", "96.1", "+0.0",
                                         "89.3", "89.3", "+0.0", "50.0", "Market1501, Table 5, row 6 |"]  # fmt: skip
    assert "| 95.0 | 96.0 | -1.0 | 88.0 | 89.0 | -1.0 |" in lines[3]  # +RP row of Table 5
    rows = list(csv.DictReader(io.StringIO(run_opreid("report", a, b, "--format", "csv").stdout)))
    assert [r["ME"] for r in rows] == ["true", "false"]
    assert rows[1]["paper cell"] == "Market1501, Table 5, row 5"
    data = json.loads(run_opreid("report", a, "--json").stdout)
    assert data["unit"] == "percent" and data["rows"][0]["paper"]["mAP"] == 89.3


def test_report_errors_are_one_line(tmp_path, run_opreid, expect_error):
    expect_error(
        run_opreid("report", tmp_path / "nope"), "opreid report", ExitCode.USER, "run folder not found"
    )
    bad = tmp_path / "bad"
    bad.mkdir()
    expect_error(run_opreid("report", bad), "opreid report", ExitCode.USER, "no config.yaml")
    (bad / "config.yaml").write_text("cbe: maybe\n")
    (bad / "metrics.jsonl").write_text("")
    expect_error(run_opreid("report", bad), "opreid report", ExitCode.USER, "cbe must be true or false")
    (bad / "config.yaml").write_text("cbe: true\n")
    (bad / "metrics.jsonl").write_text(json.dumps(_eval(1, 0.5, 0.5)) + "\n")
    expect_error(run_opreid("report", bad), "opreid report", ExitCode.USER, "names no --data release")


# -- ablate end to end on a small release -------------------------------------------------------------
@pytest.fixture(scope="module")
def ablation(built_release, tiny_steps, tmp_path_factory):
    """baseline and +CBE, one seed: first stopped after one step (an interrupted run), then resumed."""
    from reid_model.runs.ablation import AblationSettings, run_ablation

    out = tmp_path_factory.mktemp("ablate") / "abl"
    settings = AblationSettings(config="tiny", data=built_release, output=out, seeds=1,
                                variants=("baseline", "cbe"), overrides=tiny_steps)  # fmt: skip
    stopped = run_ablation(
        dataclasses.replace(
            settings, overrides=(*tiny_steps, "train.stop_after_iters=1", "train.eval_at_start=true")
        )
    )
    resumed = run_ablation(settings)
    return settings, stopped, resumed


def test_ablate_stops_resumes_and_tabulates(ablation):
    settings, stopped, resumed = ablation
    assert [(r.variant, r.action, r.finished, r.iteration) for r in stopped.runs] == [
        ("baseline", "trained", False, 1), ("cbe", "trained", False, 1)
    ]  # fmt: skip
    assert stopped.rows == []  # a stopped run's last evaluation is from another point of training
    assert [(r.variant, r.action, r.finished, r.iteration) for r in resumed.runs] == [
        ("baseline", "resumed", True, 2), ("cbe", "resumed", True, 2)
    ]  # fmt: skip
    for variant, cbe in (("baseline", False), ("cbe", True)):
        run = settings.output / variant / "seed0"
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert (cfg["cbe"], cfg["bed"], cfg["dnl"], cfg["rp"], cfg["me"]) == (cbe, False, False, False, False)
        assert json.loads((run / "ablation.json").read_text())["finished"]
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        # one evaluation before the stop, one at the end
        assert [r["iteration"] for r in records if r["kind"] == "eval"] == [0, 2]
    base, plus = resumed.rows
    assert (base.label, base.cell, plus.label, plus.cell) == (
        "baseline (every switch off)",
        "Table 5, row 1",
        "+CBE",
        "Table 5, row 2",
    )
    assert base.dataset == "OPReID-protocol benchmark" and base.paper_dataset == "OPReID"
    assert base.metrics["rank1"].paper == 61.1 and plus.metrics["mAP"].paper == 63.5
    assert plus.metrics["mAP"].paper_diff_prev == pytest.approx(63.5 - 62.1)
    for m in ("rank1", "mAP", "mINP"):
        b, p = base.metrics[m], plus.metrics[m]
        assert len(b.values) == 1 and b.std is None and 0 <= b.mean <= 100
        assert p.diff_prev == pytest.approx(p.mean - b.mean)
        assert p.noise_prev is None  # one seed: noise unknown


def test_ablate_skips_finished_runs(ablation, monkeypatch):
    import reid_model.engine.training
    from reid_model.runs.ablation import render_ablation, run_ablation

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(reid_model.engine.training, "train_model", no_training)
    settings, _, resumed = ablation
    again = run_ablation(settings)
    assert [r.action for r in again.runs] == ["done", "done"]
    assert [r.metrics["mAP"].mean for r in again.rows] == [r.metrics["mAP"].mean for r in resumed.rows]
    text = render_ablation(again)
    assert "| OPReID-protocol benchmark | +CBE | ✓ |  |  |  |  | circle | bnneck | 1 |" in text
    assert "One seed: the noise is not estimated" in text and "0 trained, 0 resumed, 2 already done" in text


def test_ablate_refuses_a_run_trained_with_another_config(ablation, run_opreid, expect_error, tiny_steps):
    settings, _, _ = ablation
    result = run_opreid("ablate", "--config", "tiny", "--data", settings.data, "-o", settings.output, "--seeds", 1,
                        "--variants", "baseline", *tiny_steps, "solver.base_lr=0.1")  # fmt: skip
    expect_error(result, "opreid ablate", ExitCode.USER, "trained with another config (solver.base_lr)")


def test_report_renders_the_ablation_runs_as_table5(ablation, run_opreid):
    settings, _, _ = ablation
    result = run_opreid("report", settings.output / "baseline/seed0", settings.output / "cbe/seed0")
    assert result.exit_code == 0, result.stderr
    body = [line for line in result.stdout.splitlines() if "OPReID-protocol benchmark" in line]
    assert len(body) == 2
    assert body[0].endswith("| OPReID, Table 5, row 1 |") and "| 61.1 |" in body[0] and "| 62.1 |" in body[0]
    assert body[1].endswith("| OPReID, Table 5, row 2 |") and "| 62.5 |" in body[1] and "| 63.5 |" in body[1]


def test_ablate_evaluates_on_another_release(built_release, tiny_steps, tmp_path, run_opreid):
    other = tmp_path / "oreid"
    shutil.copytree(built_release, other)
    info = read_dataset_json(other)
    write_dataset_json(other, {**info, "name": "Occluded-REID"})
    out = tmp_path / "abl"
    result = run_opreid("ablate", "--config", "tiny", "--data", built_release, "--eval-data", other, "-o", out,
                        "--seeds", 1, "--variants", "me", "--json", *tiny_steps)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [(r["dataset"], r["label"], r["cell"]) for r in data["rows"]] == [
        ("OPReID-protocol benchmark", "+ME (subtract mu)", "Table 5, row 6"),
        ("Occluded-REID", "+ME (subtract mu)", "Table 3, row 13"),
    ]
    records = [json.loads(line) for line in (out / "me/seed0/metrics.jsonl").read_text().splitlines()]
    # evaluated by the trainer beside its own release, at the same iterations (as `opreid train --eval-data`)
    evals = [r for r in records if r["kind"] == "eval"]
    extra = [r for r in evals if r["dataset"] == "Occluded-REID"]
    own = [r for r in evals if r["dataset"] == "OPReID-protocol benchmark"]
    assert [r["iteration"] for r in extra] == [r["iteration"] for r in own] and extra[-1]["iteration"] == 2
    # the same images under another name: the same metrics as the training release's evaluation
    assert extra[-1]["mAP"] == pytest.approx(own[-1]["mAP"]) and extra[-1]["rank1"] == pytest.approx(
        own[-1]["rank1"]
    )
    # the paper's O-ReID numbers come from training on Market1501: the report says this run did not
    report = run_opreid("report", out / "me/seed0")
    assert "trained on 'OPReID-protocol benchmark'" in report.stdout


def test_ablate_bad_requests(built_release, tmp_path, run_opreid, expect_error):
    def ablate(*args):
        return run_opreid("ablate", "--config", "tiny", "--data", built_release, "-o", tmp_path / "o", *args)

    expect_error(
        ablate("--variants", "baseline,nope"), "opreid ablate", ExitCode.USER, "unknown variant 'nope'"
    )
    expect_error(ablate("seed=4"), "opreid ablate", ExitCode.USER, "seed is set by ablate")
    expect_error(
        ablate("--eval-data", tmp_path), "opreid ablate", ExitCode.USER, "no private/ground_truth.parquet"
    )
    assert not (tmp_path / "o").exists()


def test_ablation_table_mean_std_and_noise(tmp_path, run_opreid):
    """Two seeds per row from hand-written runs: mean ± std, Δ from the row above and the noise rule."""
    from reid_model.runs.ablation import RunStatus, ablation_variants, render_ablation, tabulate

    release = tmp_path / "rel"
    release.mkdir()
    write_dataset_json(release, {"name": "OPReID-protocol benchmark"})
    base, cbe = ablation_variants()[:2]
    figures = {("baseline", 0): (0.60, 0.50), ("baseline", 1): (0.62, 0.52),
               ("cbe", 0): (0.70, 0.51), ("cbe", 1): (0.72, 0.53)}  # fmt: skip
    runs = []
    for (variant, seed), (rank1, mAP) in figures.items():
        switches = {c: c == "cbe" and variant == "cbe" for c in ("cbe", "bed", "dnl", "rp", "me")}
        run = _run_folder(tmp_path / variant / f"seed{seed}", switches, [_eval(9, rank1, mAP)], data=release)
        runs.append(RunStatus(variant, seed, str(run), "trained", True, 9))
    runs.append(RunStatus("cbe", 2, str(tmp_path / "never"), "trained", False, 3))  # stopped: not read
    rows = tabulate([base, cbe], runs)
    assert [(r.label, r.seeds, r.cell) for r in rows] == [
        ("baseline (every switch off)", 2, "Table 5, row 1"),
        ("+CBE", 2, "Table 5, row 2"),
    ]
    r1, m = rows[1].metrics["rank1"], rows[1].metrics["mAP"]
    assert r1.mean == pytest.approx(71.0) and r1.std == pytest.approx(2**0.5)
    assert r1.diff_prev == pytest.approx(10.0) and r1.noise_prev is False  # 10 > 2 x 1.41
    assert m.diff_prev == pytest.approx(1.0) and m.noise_prev is True  # 1 < 2 x 1.41
    assert m.paper_diff_prev == pytest.approx(63.5 - 62.1) and m.diff_paper == pytest.approx(52.0 - 63.5)
    assert rows[0].metrics["rank1"].noise_paper is True  # 61.0 vs the paper's 61.1
    assert rows[0].metrics["rank1"].diff_prev is None
    from reid_model.runs.ablation import AblationResult

    result = AblationResult(output=str(tmp_path), source="the paper", components=("cbe", "bed", "dnl", "rp", "me"),
                            metrics=("rank1", "mAP", "mINP"), paper_metrics=("rank1", "mAP"),
                            variants=["baseline", "cbe"], seeds=[0, 1], noise_rule="|diff| <= 2 sigma",
                            runs=runs, rows=rows)  # fmt: skip
    text = render_ablation(result)
    assert (
        "| +CBE | ✓ |  |  |  |  | circle | bnneck | 2 | 71.0 ± 1.4 | +10.0 | 62.5 | +1.4 | 52.0 ± 1.4 | +1.0 ≈ | 63.5 | +1.4 |"
        in text
    )
    # mINP is 10.0 in every run: a zero difference is within (zero) noise
    assert "effects within noise: +CBE mAP, +CBE mINP; beyond noise: +CBE R-1" in text
    assert "1 stopped before the end (not in the table)" in text
    table = list(csv.DictReader(io.StringIO(render_ablation(result, "csv"))))
    assert table[1]["Δ mAP within noise"] == "true" and table[1]["Δ R-1 within noise"] == "false"
    assert float(table[1]["R-1 std"]) == pytest.approx(1.4)


def test_each_ablation_row_changes_one_thing_and_the_paper_rows_compound_them():
    from reid_model.config import classifier_kind, load_config, retrieval_feature
    from reid_model.runs.ablation import CHAIN_KEYS, PAPER_ROWS, ablation_variants, table5_variants

    rows = ablation_variants()
    assert [r.name for r in rows] == ["baseline", "cbe", "classifier", "bed", "dnl", "rp", "feature", "me"]
    for prev, row in zip(rows, rows[1:], strict=False):
        changed = [k for k in CHAIN_KEYS if prev.settings[k] != row.settings[k]]
        assert len(changed) == 1 and row.changes == (row.label,), (row.name, changed)
    assert rows[2].label == "classifier CircleSoftmax -> causal 2-head" and not rows[2].paper_row
    assert rows[6].label == "retrieval BNNeck -> normalize(GeM)" and not rows[6].paper_row
    # the rows' configs build what their columns say
    for row in rows:
        cfg = load_config("tiny", [f"{k}={str(v).lower()}" for k, v in row.settings.items()])
        assert (classifier_kind(cfg), retrieval_feature(cfg)) == (row.classifier, row.retrieval)
    # the paper's cumulative Table 5: six rows, +BED and +ME each compounding two changes
    paper = table5_variants()
    assert [r.name for r in paper] == list(PAPER_ROWS) == [r.name for r in ablation_variants(["paper"])]
    assert all(r.paper_row for r in paper)
    assert paper[2].label == "classifier CircleSoftmax -> causal 2-head & loss triplet -> BED"
    assert paper[5].label == "retrieval BNNeck -> normalize(GeM) & +ME (subtract mu)"
    assert [len(r.changes) for r in paper] == [1, 1, 2, 1, 1, 2]
    # the same run folders serve both tables: a paper row's config is the one-change row's
    assert {r.name: r.settings for r in paper} == {r.name: r.settings for r in rows if r.name in PAPER_ROWS}


def test_ablation_baseline_note_names_its_differences_from_sbs():
    from reid_model.runs.ablation import baseline_note

    assert baseline_note("sbs_r50").startswith("Baseline row: configs/sbs_r50.yaml exactly")
    note = baseline_note("opreid_r50")
    assert "input.height 256 (SBS: 384)" in note and "data.num_instance 4 (SBS: 16)" in note
    assert "input.re_area" in note and "model.nl_inner_channels" not in note  # FastReID's width in both
    small = baseline_note("small")
    assert "on small's own recipe" in small and "not FastReID's SBS" in small


def test_ablation_tabulates_the_validation_split_without_paper_cells(tmp_path):
    from reid_model.runs.ablation import RunStatus, ablation_variants, render_ablation, tabulate

    release = tmp_path / "rel"
    release.mkdir()
    write_dataset_json(release, {"name": "Market-1501"})
    variants = ablation_variants(["cbe", "classifier", "bed"])
    runs = []
    for i, v in enumerate(variants):
        switches = {c: c in v.components for c in ("cbe", "bed", "dnl", "rp", "me")}
        val = {"kind": "val", "iteration": 9, "dataset": "Market-1501", "split": "val",
               "rank1": 0.3 + i / 10, "mAP": 0.2 + i / 10, "mINP": 0.1}  # fmt: skip
        run = _run_folder(tmp_path / v.name, switches, [val, _eval(9, 0.5, 0.4)], data=release)
        runs.append(RunStatus(v.name, 0, str(run), "trained", True, 9))
    rows = tabulate(variants, runs)
    val_rows = [r for r in rows if r.dataset == "Market-1501 (val)"]
    assert [r.variant for r in val_rows] == ["cbe", "classifier", "bed"]
    assert all(r.cell is None and r.paper_dataset is None for r in val_rows)
    assert [round(r.metrics["mAP"].mean, 6) for r in val_rows] == [20.0, 30.0, 40.0]
    test_rows = [r for r in rows if r.dataset == "Market-1501"]
    # the classifier-only row is no row of the paper; +BED after it has the paper's numbers but no paper Δ
    assert [r.cell for r in test_rows] == ["Table 5, row 2", None, "Table 5, row 3"]
    assert test_rows[2].metrics["mAP"].paper == 88.9 and test_rows[2].metrics["mAP"].paper_diff_prev is None
    from reid_model.runs.ablation import AblationResult

    result = AblationResult(output=str(tmp_path), source="the paper", components=("cbe", "bed", "dnl", "rp", "me"),
                            metrics=("rank1", "mAP", "mINP"), paper_metrics=("rank1", "mAP"),
                            variants=[v.name for v in variants], seeds=[0], noise_rule="", runs=runs, rows=rows,
                            notes=["Baseline row: a note."])  # fmt: skip
    text = render_ablation(result)
    assert (
        "| Market-1501 (val) | classifier CircleSoftmax -> causal 2-head | ✓ |  |  |  |  | causal | bnneck |"
        in text
    )
    assert "Baseline row: a note." in text and "compound" not in text
