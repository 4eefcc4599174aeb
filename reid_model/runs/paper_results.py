"""The paper's published numbers (Tables 3-5), loaded from `paper_results.yaml`, and the lookup that
matches one of our runs to the paper's cell for the same dataset and component set.

The YAML file is the one source of the numbers, of the dataset aliases and of the order of the
Table 5 components; `tests/reid_model/runs/test_paper_results.py` checks its shape and its internal consistency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

#: Where a paper cell is looked up first: Table 5 holds every component set, Tables 3-4 the rest.
TABLE_PREFERENCE = (5, 3, 4)
#: The " [folder]" suffix that tells apart two evaluated releases of the same name.
DISAMBIGUATION = re.compile(r"\s*\[[^\]]*\]\s*$")


def normalize_name(name: str) -> str:
    """A dataset name as compared: lower case, letters and digits only ("Occluded-Duke" -> "occludedduke")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class PaperCell:
    """One published result: a table row's numbers on one dataset (percent)."""

    table: int
    row: int
    method: str
    dataset: str
    components: frozenset[str] | None  # None: another method than ours
    metrics: dict[str, float]

    @property
    def citation(self) -> str:
        return f"Table {self.table}, row {self.row}"


@dataclass(frozen=True)
class PaperDataset:
    name: str
    aliases: tuple[str, ...]
    trained_on: str | None = None


@dataclass(frozen=True)
class PaperResults:
    source: str
    components: tuple[str, ...]
    metrics: tuple[str, ...]
    datasets: dict[str, PaperDataset]
    cells: tuple[PaperCell, ...] = field(repr=False)

    def dataset(self, *names: str | None) -> str | None:
        """The paper's dataset meant by the first of `names` (release name, protocol) that it knows."""
        lookup = {}
        for ds in self.datasets.values():
            for alias in (ds.name, *ds.aliases):
                lookup[normalize_name(alias)] = ds.name
        for name in names:
            if not name:
                continue
            # training tells apart releases of the same name by a folder suffix: "OPReID... [rel2]"
            for candidate in (name, DISAMBIGUATION.sub("", name)):
                if normalize_name(candidate) in lookup:
                    return lookup[normalize_name(candidate)]
        return None

    def cell(self, dataset: str | None, components: frozenset[str]) -> PaperCell | None:
        """The paper's result for our model with `components` on `dataset`, preferring Table 5."""
        if dataset is None:
            return None
        found = [c for c in self.cells if c.dataset == dataset and c.components == components]
        found.sort(key=lambda c: (TABLE_PREFERENCE.index(c.table), c.row))
        return found[0] if found else None


def _cells(tables: list[dict], components: tuple[str, ...], datasets: dict) -> list[PaperCell]:
    cells = []
    for table in tables:
        for row in table["rows"]:
            comps = row.get("components")
            if comps is not None:
                unknown = set(comps) - set(components)
                if unknown:
                    raise ValueError(f"Table {table['table']} row {row['row']}: unknown {sorted(unknown)}")
                comps = frozenset(comps)
            for dataset, metrics in row["results"].items():
                if dataset not in datasets:
                    raise ValueError(f"Table {table['table']} row {row['row']}: unknown dataset {dataset}")
                cells.append(
                    PaperCell(
                        table=int(table["table"]),
                        row=int(row["row"]),
                        method=str(row["method"]),
                        dataset=dataset,
                        components=comps,
                        metrics={k: float(v) for k, v in metrics.items()},
                    )  # fmt: skip
                )
    return cells


@cache
def paper_results() -> PaperResults:
    """The shipped tables (read once; the file is package data)."""
    text = resources.files("reid_model.runs").joinpath("paper_results.yaml").read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    components = tuple(raw["components"])
    datasets = {
        name: PaperDataset(name, tuple(spec.get("aliases", ())), spec.get("trained_on"))
        for name, spec in raw["datasets"].items()
    }
    return PaperResults(
        source=raw["source"],
        components=components,
        metrics=tuple(raw["metrics"]),
        datasets=datasets,
        cells=tuple(_cells(raw["tables"], components, datasets)),
    )
