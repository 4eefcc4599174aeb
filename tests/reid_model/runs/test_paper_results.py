"""The paper's published numbers as shipped data (reid_model/runs/paper_results.yaml): shape, internal
consistency across Tables 3-5, spot checks against the paper, and the dataset/component lookup."""

from __future__ import annotations

import dataclasses

import pytest

from reid_model.runs.paper_results import normalize_name, paper_results

ROWS = {3: 13, 4: 20, 5: 6}
TABLE_DATASETS = {3: {"OPReID", "O-Duke", "O-ReID"}, 4: {"Market1501", "DukeMTMC"},
                  5: {"O-Duke", "OPReID", "Market1501", "DukeMTMC"}}  # fmt: skip


@pytest.fixture(scope="module")
def paper():
    return paper_results()


def test_components_are_the_configs_table5_switches(paper):
    from reid_model.config import Config

    assert paper.components == ("cbe", "bed", "dnl", "rp", "me")
    fields = {f.name: f.type for f in dataclasses.fields(Config)}
    assert all(fields[c] in (bool, "bool") for c in paper.components)


def test_shape_of_each_table(paper):
    assert paper.metrics == ("rank1", "mAP")  # the paper reports no mINP
    for table, n in ROWS.items():
        cells = [c for c in paper.cells if c.table == table]
        assert sorted({c.row for c in cells}) == list(range(1, n + 1)), table
        assert {c.dataset for c in cells} == TABLE_DATASETS[table]
        for c in cells:
            assert c.metrics and set(c.metrics) <= set(paper.metrics), c
            assert all(0 < v <= 100 for v in c.metrics.values()), c
            assert c.citation == f"Table {table}, row {c.row}"
    assert len(paper.cells) == 86


def test_table5_rows_are_cumulative_and_complete(paper):
    rows = sorted({(c.row, c.components) for c in paper.cells if c.table == 5})
    assert [sorted(comps, key=paper.components.index) for _, comps in rows] == [
        list(paper.components[:k]) for k in range(6)
    ]
    for row, _ in rows:
        cells = [c for c in paper.cells if c.table == 5 and c.row == row]
        assert {c.dataset for c in cells} == TABLE_DATASETS[5]
        assert all(set(c.metrics) == {"rank1", "mAP"} for c in cells)


def test_baseline_and_ours_agree_across_tables(paper):
    """Table 5's first and last rows are Tables 3-4's "Baseline [13]" and "Ours": a transcription check."""
    for comps, method in ((frozenset(), "Baseline [13]"), (frozenset(paper.components), "Ours")):
        t5 = {c.dataset: c.metrics for c in paper.cells if c.table == 5 and c.components == comps}
        others = [c for c in paper.cells if c.table in (3, 4) and c.method == method]
        assert others and all(c.components == comps for c in others)
        for c in others:
            if c.dataset in t5:
                assert c.metrics == t5[c.dataset], (method, c.dataset)


@pytest.mark.parametrize(
    ("table", "row", "dataset", "metrics"),
    [
        (3, 7, "O-ReID", {"rank1": 80.3, "mAP": 70.2}),  # HOReID
        (3, 1, "O-Duke", {"rank1": 44.5, "mAP": 33.2}),  # AdO: no OPReID or O-ReID cell
        (3, 2, "O-Duke", {"rank1": 40.8}),  # FD-GAN: R-1 only
        (4, 18, "Market1501", {"rank1": 96.1, "mAP": 87.4}),  # Circle
        (5, 3, "OPReID", {"rank1": 64.1, "mAP": 65.7}),  # +BED
        (5, 5, "DukeMTMC", {"rank1": 90.8, "mAP": 80.9}),  # +RP
    ],
)
def test_spot_checks_against_the_paper(paper, table, row, dataset, metrics):
    (cell,) = [c for c in paper.cells if (c.table, c.row, c.dataset) == (table, row, dataset)]
    assert cell.metrics == metrics
    assert not [c for c in paper.cells if (c.table, c.row) == (3, 1) and c.dataset != "O-Duke"]


def test_aliases_name_one_dataset_each(paper):
    seen: dict[str, str] = {}
    for ds in paper.datasets.values():
        for alias in (ds.name, *ds.aliases):
            key = normalize_name(alias)
            assert seen.setdefault(key, ds.name) == ds.name, alias
    assert paper.datasets["O-ReID"].trained_on == "Market1501"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (("occluded_duke",), "O-Duke"),
        (("Occluded-DukeMTMC",), "O-Duke"),
        (("OPReID-protocol benchmark",), "OPReID"),
        (("Market-1501",), "Market1501"),
        (("my-copy", "market1501"), "Market1501"),  # the protocol when the name is unknown
        (("occluded_reid",), "O-ReID"),
        (("OPReID-protocol benchmark [rel2]",), "OPReID"),  # two releases of one name, told apart
        (("p_dukemtmc",), None),
        (("msmt17", None), None),
    ],
)
def test_dataset_lookup(paper, names, expected):
    assert paper.dataset(*names) == expected


def test_cell_prefers_table5_then_tables_3_and_4(paper):
    full = frozenset(paper.components)
    assert paper.cell("OPReID", full).citation == "Table 5, row 6"
    assert paper.cell("O-ReID", full).citation == "Table 3, row 13"
    assert paper.cell("O-ReID", frozenset()).citation == "Table 3, row 12"
    assert paper.cell("OPReID", frozenset({"cbe"})).metrics == {"rank1": 62.5, "mAP": 63.5}
    assert paper.cell("OPReID", frozenset({"bed"})) is None  # not a row of the paper
    assert paper.cell("O-ReID", frozenset({"cbe"})) is None
    assert paper.cell(None, full) is None
