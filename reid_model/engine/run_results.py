"""What a finished (or interrupted) run folder says about its results: its component switches (from
`config.yaml`) and its last evaluation on each release (from `metrics.jsonl`).

The contract with the trainer: an evaluation record has `"kind": "eval"`, `iteration`, `mAP`,
`rank1`, `mINP` (fractions, or null without a valid query) and, when it evaluates another release
than the run's `--data`, `"dataset"` (the release's dataset.json name, else its folder name) and
optionally `"protocol"` and `"published"` (false: an imported release that is not its layout's
published dataset). A record without `"dataset"` is on the run's `--data` release, read from
`environment.json`. Reading is light: no torch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from manifests import DatasetLayout, ManifestError, read_dataset_json
from reid_model.errors import ReidModelError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
ENVIRONMENT_FILE = "environment.json"
#: The metrics a result carries, as metrics.jsonl keys them (fractions in [0, 1]).
RESULT_METRICS = ("rank1", "mAP", "mINP")


class RunFolderError(ReidModelError):
    """A run folder is missing or its config.yaml / metrics.jsonl cannot be read."""


@dataclass(frozen=True)
class Release:
    """How a release is named in results: dataset.json's `name` (else the folder's) and its protocol."""

    name: str
    protocol: str | None = None
    #: dataset.json `published_dataset` of an import: whether it is its layout's published dataset
    #: (None: the release does not say: an OPReID build, or an import before the key)
    published: bool | None = None


@dataclass
class RunResult:
    """A run's last evaluation on one release."""

    run: str
    dataset: str
    protocol: str | None
    components: frozenset[str]
    iteration: int
    metrics: dict[str, float | None]
    train_dataset: Release | None = None
    published: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["components"] = sorted(self.components)
        d["train_dataset"] = dataclasses.asdict(self.train_dataset) if self.train_dataset else None
        return d


def release_identity(root: str | Path) -> Release:
    """The name results give a release: dataset.json's `name` and `protocol`, else the folder name."""
    root = Path(root)
    layout = DatasetLayout(root)
    folder = root.resolve().name
    if layout.dataset_json.is_file():
        try:
            info = read_dataset_json(layout.dataset_json)
        except ManifestError as exc:
            log.warning("%s; naming the release by its folder", exc)
        else:
            name = info.get("name")
            protocol = info.get("protocol")
            published = (info.get("published_dataset") is not None) if "published_dataset" in info else None
            return Release(
                name.strip() if isinstance(name, str) and name.strip() else folder,
                protocol if isinstance(protocol, str) and protocol else None,
                published,
            )
    return Release(folder)


def component_switches(config: dict[str, Any], components: tuple[str, ...]) -> frozenset[str]:
    """The components a run had on: its config's top-level switches, Config's defaults where absent."""
    from reid_model.config import Config

    defaults = Config()
    on = set()
    for name in components:
        value = config.get(name, getattr(defaults, name))
        if not isinstance(value, bool):
            raise RunFolderError(f"config.yaml: {name} must be true or false, got {value!r}")
        if value:
            on.add(name)
    return frozenset(on)


def read_run_config(run: Path) -> dict[str, Any]:
    """RUN/config.yaml as a mapping (the resolved config the trainer wrote)."""
    path = run / CONFIG_FILE
    if not path.is_file():
        raise RunFolderError(f"{run}: no {CONFIG_FILE}; is this a folder written by opreid train?")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunFolderError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    if not isinstance(config, dict):
        raise RunFolderError(f"{path}: not a YAML mapping")
    return config


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl; lines that are not JSON objects are skipped with a warning."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    records, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    if bad:
        log.warning("%s: skipped %d line(s) that are not JSON records", path, bad)
    return records


def run_release(run: Path) -> Release | None:
    """The run's --data release, from environment.json (None when the file or key is missing)."""
    path = run / ENVIRONMENT_FILE
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    data = env.get("data") if isinstance(env, dict) else None
    return release_identity(data) if isinstance(data, str) and data else None


def _metric(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


#: How a validation split (records `kind: val`, training identities held out) is named in results.
VAL_SUFFIX = " (val)"


def read_run(
    run: str | Path, components: tuple[str, ...], kinds: tuple[str, ...] = ("eval",)
) -> list[RunResult]:
    """One result per release the run was evaluated on: the last record of each, in first-seen order.

    `kinds`: test-split records (`eval`) by default; with `val` also the validation split, as a
    release named "<name> (val)" (never one of the paper's datasets)."""
    run = Path(run)
    if not run.is_dir():
        raise RunFolderError(f"run folder not found: {run}")
    config = read_run_config(run)
    switches = component_switches(config, components)
    metrics_path = run / METRICS_FILE
    if not metrics_path.is_file():
        raise RunFolderError(f"{run}: no {METRICS_FILE} (the run has not logged anything yet)")
    train_release = run_release(run)
    last: dict[str, dict[str, Any]] = {}
    for rec in read_metrics(metrics_path):
        kind = rec.get("kind")
        if kind not in kinds or kind not in ("eval", "val"):
            continue
        if kind == "val":
            name = rec.get("dataset") if isinstance(rec.get("dataset"), str) and rec["dataset"] else None
            name = name or (train_release.name if train_release is not None else Path(run).name)
            key = name + VAL_SUFFIX
            rec = {**rec, "protocol": None}
        elif isinstance(rec.get("dataset"), str) and rec["dataset"]:
            key = rec["dataset"]
        else:
            if train_release is None:
                raise RunFolderError(
                    f"{run}: eval records name no dataset and {ENVIRONMENT_FILE} names no --data release"
                )
            key = train_release.name
            rec = {**rec, "protocol": rec.get("protocol") or train_release.protocol}
            if "published" not in rec and train_release.published is not None:
                rec["published"] = train_release.published
        last[key] = rec  # a later record replaces an earlier one; the order stays the first-seen
    results = []
    for dataset, rec in last.items():
        iteration = rec.get("iteration")
        results.append(
            RunResult(
                run=str(run),
                dataset=dataset,
                protocol=rec.get("protocol") if isinstance(rec.get("protocol"), str) else None,
                components=switches,
                iteration=int(iteration) if isinstance(iteration, int) else -1,
                metrics={m: _metric(rec.get(m)) for m in RESULT_METRICS},
                train_dataset=train_release,
                published=rec.get("published") if isinstance(rec.get("published"), bool) else None,
            )  # fmt: skip
        )
    return results
