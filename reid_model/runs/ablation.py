"""`run_ablation`: the Python API under `opreid ablate`. Trains the model's ablation rows for
several seeds and tabulates mean ± std beside the paper's Table 5.

The rows form a chain from the baseline (every switch off: FastReID's strong baseline on the
config's recipe) to the full model, and each row changes ONE thing of the row before it (`CHAIN`):
+CBE; the classifier (CircleSoftmax -> the two-head causal-norm classifier); the metric loss
(triplet -> BED); +DNL (non-local -> DNL); +RP; the retrieval feature (the BNNeck output -> the
L2-normalised GeM output); +ME (subtract the momentum mean). The paper's Table 5 rows compound
some of these: its +BED row swaps the classifier and the loss together, its +ME row switches the
feature and subtracts the mean. Selecting the paper's rows (`PAPER_ROWS`, `--variants paper`)
draws Table 5 as the paper does; each row's label then names every change it compounds.

Each (row, seed) is an ordinary training run in `OUT/<row>/seed<k>/`, so `opreid report`,
`opreid extract` and the curves work on it. The runner is resumable: a finished run (marked by
`ablation.json`) is skipped, an interrupted one resumes from its last checkpoint, and a run folder
trained with another config is refused rather than mixed in. Runs with a validation split
(`data.val_ids`) are tabulated on it too, as their own rows ("<release> (val)").

Noise: a difference counts as within noise when |Δ| <= 2σ, σ the larger of the two rows' standard
deviations over seeds (for ours vs the paper, our row's). With one seed σ is unknown and nothing
is called noise or signal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests import atomic_write_text, progress_bar
from reid_model.engine.run_results import CONFIG_FILE, RESULT_METRICS, read_run, read_run_config
from reid_model.errors import ConfigError, DataError
from reid_model.runs.paper_results import paper_results
from reid_model.runs.result_tables import FORMATS, render_table, signed
from reid_model.runs.run_report import METRIC_LABELS

log = logging.getLogger(__name__)

DEFAULT_SEEDS = 3
#: Written into a run folder once its training (and extra evaluations) finished.
MARKER = "ablation.json"
#: |Δ| below this many standard deviations is "within noise".
NOISE_SIGMAS = 2.0
SEED_KEY = "seed"
#: FastReID's strong baseline as FastReID configures it: what an R50 baseline row is compared with.
SBS_PRESET = "sbs_r50"
#: Keys that say how a run is kept, not what it trains (left out of the baseline's comparison with SBS).
BOOKKEEPING = ("train.", "data.num_workers", "data.val_ids", "data.val_seed", "seed", "model.allow_download")


@dataclass(frozen=True)
class Change:
    """One step of the ablation chain: its run folder, what it changes (as its row reads) and the
    config keys it sets on top of the steps before it."""

    name: str
    label: str
    settings: tuple[tuple[str, bool | str], ...]


#: The chain of rows, each changing one thing of the row before it (the baseline sets every key).
CHAIN = (
    Change("baseline", "baseline (every switch off)", (
        ("cbe", False), ("bed", False), ("dnl", False), ("rp", False), ("me", False),
        ("model.classifier", "circle"), ("test.feature", "bnneck"),
    )),
    Change("cbe", "+CBE", (("cbe", True),)),
    Change("classifier", "classifier CircleSoftmax -> causal 2-head", (("model.classifier", "causal"),)),
    Change("bed", "loss triplet -> BED", (("bed", True),)),
    Change("dnl", "+DNL (non-local -> DNL)", (("dnl", True),)),
    Change("rp", "+RP", (("rp", True),)),
    Change("feature", "retrieval BNNeck -> normalize(GeM)", (("test.feature", "pooled"),)),
    Change("me", "+ME (subtract mu)", (("me", True),)),
)  # fmt: skip
#: Table 5's rows as the paper draws them: its +BED compounds the classifier swap, its +ME the feature switch.
PAPER_ROWS = ("baseline", "cbe", "bed", "dnl", "rp", "me")
#: `--variants paper` selects PAPER_ROWS.
PAPER_SELECTION = "paper"
#: The keys the chain sets per row (an override of one of them would blur the rows).
CHAIN_KEYS = tuple(dict.fromkeys(key for change in CHAIN for key, _ in change.settings))


@dataclass(frozen=True)
class Variant:
    name: str  # the run folder's name
    label: str  # what the row changes from the row above it in the table
    components: frozenset[str]
    settings: dict[str, bool | str]  # every key of CHAIN_KEYS
    changes: tuple[str, ...]  # the chain's changes this row compounds (one unless rows are skipped)

    @property
    def classifier(self) -> str:
        return str(self.settings["model.classifier"])

    @property
    def retrieval(self) -> str:
        return str(self.settings["test.feature"])

    @property
    def paper_row(self) -> bool:
        """A row the paper has: the classifier goes with the loss and the feature with ME, as there."""
        bed, me = bool(self.settings["bed"]), bool(self.settings["me"])
        return self.classifier == ("causal" if bed else "circle") and self.retrieval == (
            "pooled" if me else "bnneck"
        )


def variant_names() -> tuple[str, ...]:
    return tuple(c.name for c in CHAIN)


def ablation_variants(names: Sequence[str] = ()) -> tuple[Variant, ...]:
    """The selected rows in chain order (all of them by default; `paper`: the paper's Table 5 rows).

    A row's label names every change since the selected row above it, so a table that skips rows
    says what its rows compound."""
    chosen = list(names) or list(variant_names())
    if PAPER_SELECTION in chosen:
        chosen = [n for n in chosen if n != PAPER_SELECTION] + list(PAPER_ROWS)
    unknown = [n for n in chosen if n not in variant_names()]
    if unknown:
        known = ", ".join((*variant_names(), PAPER_SELECTION))
        raise ConfigError(f"unknown variant {unknown[0]!r}; choose from {known}")
    components = paper_results().components
    settings: dict[str, bool | str] = {}
    pending: list[str] = []
    rows: list[Variant] = []
    for change in CHAIN:
        settings.update(change.settings)
        pending.append(change.label)
        if change.name not in chosen:
            continue
        changes = tuple(pending) if rows else (change.label,)
        on = frozenset(c for c in components if settings[c])
        rows.append(Variant(change.name, " & ".join(changes), on, dict(settings), changes))
        pending = []
    return tuple(rows)


def table5_variants() -> tuple[Variant, ...]:
    """Table 5's rows as the paper draws them (each label names the changes it compounds)."""
    return ablation_variants(PAPER_ROWS)


@dataclass
class AblationSettings:
    """What `opreid ablate` was asked; `variants` empty means all of Table 5's rows."""

    config: str
    data: Path
    output: Path
    eval_data: tuple[Path, ...] = ()
    seeds: int = DEFAULT_SEEDS
    variants: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()
    device: str = "auto"
    pretrained: str | None = None
    progress: bool = False


@dataclass
class RunStatus:
    variant: str
    seed: int
    run_dir: str
    action: str  # trained | resumed | done (skipped: finished before)
    finished: bool
    iteration: int


@dataclass
class MetricSummary:
    """One metric of one row, in percent."""

    values: list[float]
    mean: float | None
    std: float | None  # sample std over seeds; None with fewer than two
    diff_prev: float | None  # mean minus the row above's mean: the added component's effect
    noise_prev: bool | None  # |diff_prev| <= 2σ; None when σ is unknown
    paper: float | None
    paper_diff_prev: float | None  # the same effect in the paper
    diff_paper: float | None  # mean minus the paper's number
    noise_paper: bool | None


@dataclass
class AblationRow:
    dataset: str
    paper_dataset: str | None
    variant: str
    label: str
    components: list[str]
    classifier: str
    retrieval: str
    changes: list[str]  # the chain's changes since the row above (more than one: the row compounds them)
    seeds: int
    cell: str | None
    metrics: dict[str, MetricSummary]


@dataclass
class AblationResult:
    output: str
    source: str
    components: tuple[str, ...]
    metrics: tuple[str, ...]
    paper_metrics: tuple[str, ...]
    variants: list[str]
    seeds: list[int]
    noise_rule: str
    notes: list[str] = field(default_factory=list)
    runs: list[RunStatus] = field(default_factory=list)
    rows: list[AblationRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["unit"] = "percent"
        return d


# -- planning ------------------------------------------------------------------------------------------
def _check_overrides(overrides: Sequence[str]) -> None:
    owned = {*CHAIN_KEYS, SEED_KEY}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key in owned:
            raise ConfigError(f"{key} is set by ablate for each variant and seed; drop the {item!r} override")


def _check_releases(settings: AblationSettings, val_ids: int) -> None:
    """Fail before the first run: every release exists, and the variants are scored on at least one
    split (a test split with ground truth, or the validation split of `data.val_ids`)."""
    from reid_model.engine.evaluation import (
        has_ground_truth,  # imports torch: only once the options are sound
    )

    for rel in (settings.data, *settings.eval_data):
        if not Path(rel).is_dir():
            raise DataError(f"dataset folder not found: {rel}")
    for rel in settings.eval_data:
        if not has_ground_truth(rel):
            raise DataError(f"--eval-data {rel}: no private/ground_truth.parquet, nothing to evaluate")
    if not settings.eval_data and not val_ids and not has_ground_truth(settings.data):
        raise DataError(
            f"{settings.data}: no private/ground_truth.parquet, so it cannot be evaluated on; "
            "give --eval-data RELEASE, or hold out training identities (data.val_ids=N)"
        )


def _override_value(value: bool | str) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _switch_overrides(variant: Variant, seed: int) -> tuple[str, ...]:
    return (*(f"{k}={_override_value(v)}" for k, v in variant.settings.items()), f"{SEED_KEY}={seed}")


def baseline_note(config: str, overrides: Sequence[str] = ()) -> str:
    """How the baseline row relates to FastReID's SBS (configs/sbs_r50.yaml): the same config, the
    config keys where it differs, or another recipe altogether (the CPU presets)."""
    from reid_model.config import flatten_dict, load_config
    from reid_model.engine.training import resolve_config

    baseline = ablation_variants(("baseline",))[0]
    ours = resolve_config(config, (*overrides, *_switch_overrides(baseline, 0)))
    sbs = load_config(SBS_PRESET, _switch_overrides(baseline, 0))
    if (ours.model.block, ours.model.layers) != (sbs.model.block, sbs.model.layers):
        return (
            f"Baseline row: {config} with every switch off (CircleSoftmax, soft-margin triplet, the non-local "
            f"block, BNNeck retrieval) on {config}'s own recipe ({ours.model.block} blocks {ours.model.layers}, "
            f"{ours.input.height}x{ours.input.width}); it is not FastReID's SBS recipe (configs/{SBS_PRESET}.yaml)."
        )
    a, b = flatten_dict(ours.to_dict()), flatten_dict(sbs.to_dict())
    diffs = [f"{k} {a[k]} (SBS: {b[k]})" for k in a if not k.startswith(BOOKKEEPING) and a[k] != b.get(k)]
    if not diffs:
        return f"Baseline row: configs/{SBS_PRESET}.yaml exactly (FastReID's SBS; that file names where our code differs from FastReID's)."
    return f"Baseline row differs from configs/{SBS_PRESET}.yaml (FastReID's SBS) in: {', '.join(diffs)}."


def _config_mismatch(run_dir: Path, expected: dict[str, Any]) -> list[str]:
    """Keys (beyond the resumable bookkeeping) where RUN/config.yaml differs from `expected`."""
    from reid_model.config import flatten_dict
    from reid_model.engine.training import RESUMABLE_PREFIXES

    if not (run_dir / CONFIG_FILE).is_file():
        return []
    a, b = flatten_dict(read_run_config(run_dir)), flatten_dict(expected)
    return sorted(
        k for k in a.keys() | b.keys() if not k.startswith(RESUMABLE_PREFIXES) and a.get(k) != b.get(k)
    )


def _read_marker(run_dir: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((run_dir / MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return marker if isinstance(marker, dict) else None


# -- running -------------------------------------------------------------------------------------------
def _train_one(settings: AblationSettings, variant: Variant, seed: int, run_dir: Path) -> RunStatus:
    from reid_model.config import flatten_dict
    from reid_model.engine.trainer import RunPaths
    from reid_model.engine.training import RESUMABLE_PREFIXES, resolve_config, train_model

    overrides = (*settings.overrides, *_switch_overrides(variant, seed))
    expected = resolve_config(settings.config, overrides).to_dict()
    changed = _config_mismatch(run_dir, expected)
    if changed:
        raise ConfigError(
            f"{run_dir} was trained with another config ({', '.join(changed[:3])}); "
            "use another -o folder or remove that run"
        )
    marker = _read_marker(run_dir)
    if marker is not None and marker.get("finished"):
        return RunStatus(variant.name, seed, str(run_dir), "done", True, int(marker.get("iteration", -1)))
    if RunPaths(run_dir).last.is_file():
        # the checkpoint's config rules, except the bookkeeping this request may change (train.*, ...)
        resumable = tuple(
            f"{k}={json.dumps(v)}"
            for k, v in flatten_dict(expected).items()
            if k.startswith(RESUMABLE_PREFIXES)
        )
        action = "resumed"
        summary = train_model(
            None, settings.data, run_dir, resume="auto", device=settings.device, progress=settings.progress,
            overrides=resumable, eval_data=settings.eval_data,
        )  # fmt: skip
    else:
        action = "trained"
        summary = train_model(
            settings.config, settings.data, run_dir, resume="auto", pretrained=settings.pretrained,
            device=settings.device, progress=settings.progress, overrides=overrides, eval_data=settings.eval_data,
        )  # fmt: skip
    if summary is None:  # a DDP rank other than 0
        raise ConfigError("opreid ablate runs in one process; run it without torchrun")
    iteration = int(summary["iteration"])
    if summary["finished"]:
        body = {"variant": variant.name, "seed": seed, "components": sorted(variant.components),
                "finished": True, "iteration": iteration, "overrides": list(overrides)}  # fmt: skip
        atomic_write_text(run_dir / MARKER, json.dumps(body, indent=2, sort_keys=True) + "\n")
    else:
        log.warning("%s stopped at iteration %d of %d (train.stop_after_iters); rerun to continue",
                    run_dir, iteration, summary["total_iters"])  # fmt: skip
    return RunStatus(variant.name, seed, str(run_dir), action, bool(summary["finished"]), iteration)


# -- tabulating ----------------------------------------------------------------------------------------
def _within_noise(diff: float | None, *stds: float | None) -> bool | None:
    if diff is None or any(s is None for s in stds):
        return None
    return abs(diff) <= NOISE_SIGMAS * max(stds)  # type: ignore[type-var]


def _summaries(values: dict[str, list[float]], prev: AblationRow | None, paper_now: dict, paper_prev: dict):
    out = {}
    for m in RESULT_METRICS:
        vals = values.get(m, [])
        mean = statistics.fmean(vals) if vals else None
        std = statistics.stdev(vals) if len(vals) >= 2 else None
        before = prev.metrics[m] if prev is not None else None
        diff_prev = (
            mean - before.mean
            if before is not None and before.mean is not None and mean is not None
            else None
        )
        paper = paper_now.get(m)
        before_paper = paper_prev.get(m) if prev is not None else None
        diff_paper = mean - paper if mean is not None and paper is not None else None
        out[m] = MetricSummary(
            values=vals, mean=mean, std=std, diff_prev=diff_prev,
            noise_prev=_within_noise(diff_prev, std, before.std if before else None),
            paper=paper, paper_diff_prev=paper - before_paper if paper is not None and before_paper is not None else None,
            diff_paper=diff_paper, noise_paper=_within_noise(diff_paper, std),
        )  # fmt: skip
    return out


def tabulate(variants: Sequence[Variant], runs: Sequence[RunStatus]) -> list[AblationRow]:
    """Mean ± std over seeds of each variant's last evaluation on each release, beside the paper.

    Only finished runs count: a stopped run's last evaluation is from another point of training.
    """
    paper = paper_results()
    by_dataset: dict[str, dict[str, list]] = {}
    protocols: dict[str, str | None] = {}
    for variant in variants:
        for status in runs:
            if status.variant != variant.name or not status.finished:
                continue
            for result in read_run(status.run_dir, paper.components, kinds=("val", "eval")):
                protocols.setdefault(result.dataset, result.protocol)
                by_dataset.setdefault(result.dataset, {}).setdefault(variant.name, []).append(result)
    rows = []
    for dataset, per_variant in by_dataset.items():
        paper_dataset = paper.dataset(dataset, protocols[dataset])
        prev: AblationRow | None = None
        prev_paper: dict[str, float] = {}
        for variant in variants:
            results = per_variant.get(variant.name, [])
            values = {
                m: [100.0 * r.metrics[m] for r in results if r.metrics.get(m) is not None]
                for m in RESULT_METRICS
            }
            cell = paper.cell(paper_dataset, variant.components) if variant.paper_row else None
            paper_now = cell.metrics if cell else {}
            row = AblationRow(
                dataset=dataset, paper_dataset=paper_dataset, variant=variant.name, label=variant.label,
                components=[c for c in paper.components if c in variant.components],
                classifier=variant.classifier, retrieval=variant.retrieval, changes=list(variant.changes),
                seeds=len(results), cell=cell.citation if cell else None,
                metrics=_summaries(values, prev, paper_now, prev_paper),
            )  # fmt: skip
            rows.append(row)
            prev, prev_paper = row, paper_now
    return rows


def run_ablation(settings: AblationSettings) -> AblationResult:
    """Train every (variant, seed) not finished yet, then tabulate all of them."""
    if settings.seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    variants = ablation_variants(settings.variants)
    _check_overrides(settings.overrides)
    from reid_model.engine.training import resolve_config

    base = resolve_config(settings.config, settings.overrides)
    _check_releases(settings, base.data.val_ids)
    base_seed = base.seed
    seeds = [base_seed + k for k in range(settings.seeds)]
    paper = paper_results()
    result = AblationResult(
        output=str(settings.output), source=paper.source, components=paper.components, metrics=RESULT_METRICS,
        paper_metrics=tuple(m for m in RESULT_METRICS if m in paper.metrics), variants=[v.name for v in variants],
        seeds=seeds, noise_rule=f"|diff| <= {NOISE_SIGMAS:g} x the larger seed std of the rows compared",
        notes=[baseline_note(settings.config, settings.overrides)] if variants[0].name == "baseline" else [],
    )  # fmt: skip
    jobs = [(v, s) for v in variants for s in seeds]
    bar = progress_bar(total=len(jobs), desc="ablate", unit="run", enabled=settings.progress)
    try:
        for variant, seed in jobs:
            run_dir = Path(settings.output) / variant.name / f"seed{seed}"
            result.runs.append(_train_one(settings, variant, seed, run_dir))
            bar.update(1)
    finally:
        bar.close()
    result.rows = tabulate(variants, result.runs)
    return result


# -- rendering -----------------------------------------------------------------------------------------
def _mean_std(s: MetricSummary) -> str:
    if s.mean is None:
        return ""
    return f"{s.mean:.1f} ± {s.std:.1f}" if s.std is not None else f"{s.mean:.1f}"


def _marked(diff: float | None, noise: bool | None) -> str:
    return signed(diff) + (" ≈" if noise else "")


def _noise_lines(result: AblationResult) -> list[str]:
    lines = []
    for dataset in dict.fromkeys(r.dataset for r in result.rows):
        within, beyond = [], []
        for row in (r for r in result.rows if r.dataset == dataset):
            for m in result.metrics:
                s = row.metrics[m]
                if s.noise_prev is None:
                    continue
                (within if s.noise_prev else beyond).append(f"{row.label} {METRIC_LABELS[m]}")
        if within or beyond:
            lines.append(
                f"{dataset}: effects within noise: {', '.join(within) or 'none'}; "
                f"beyond noise: {', '.join(beyond) or 'none'}"
            )
    return lines


def render_ablation(result: AblationResult, fmt: str = FORMATS[0]) -> str:
    """Markdown: mean ± std, Δ from the row above (≈ within noise) and the paper's row; CSV: every figure."""
    comps = [c.upper() for c in result.components]
    headers = ["dataset", "row: what it changes", *comps, "classifier", "retrieval", "seeds"]
    for m in result.metrics:
        label = METRIC_LABELS[m]
        if fmt == "csv":
            headers += [f"{label} mean", f"{label} std", f"Δ {label}", f"Δ {label} within noise"]
        else:
            headers += [label, f"Δ {label}"]
        if m in result.paper_metrics:
            headers += [f"paper {label}", f"paper Δ {label}"]
    headers.append("paper cell")
    rows = []
    for r in result.rows:
        row: list[Any] = [r.dataset, r.label, *[c in r.components for c in result.components],
                          r.classifier, r.retrieval, r.seeds]  # fmt: skip
        for m in result.metrics:
            s = r.metrics[m]
            if fmt == "csv":
                row += [s.mean, s.std, signed(s.diff_prev), s.noise_prev]
            else:
                row += [_mean_std(s), _marked(s.diff_prev, s.noise_prev)]
            if m in result.paper_metrics:
                row += [s.paper, signed(s.paper_diff_prev)]
        row.append(f"{r.paper_dataset}, {r.cell}" if r.cell else (r.paper_dataset or ""))
        rows.append(row)
    text = render_table(headers, rows, fmt)
    if fmt == "csv":
        return text
    seeds = ", ".join(map(str, result.seeds))
    noise = (
        f"≈: within noise ({result.noise_rule})."
        if len(result.seeds) > 1
        else "One seed: the noise is not estimated, so no difference is called noise or signal."
    )
    counts = {a: sum(r.action == a for r in result.runs) for a in ("trained", "resumed", "done")}
    stopped = sum(not r.finished for r in result.runs)
    compound = list(dict.fromkeys(r.label for r in result.rows if len(r.changes) > 1))
    lines = [
        "",
        f"Metrics in percent, mean ± std over seeds {seeds}; Δ: change from the row above (the effect of "
        f"what the row changes); paper Δ: the same in the paper. {noise}",
        *(
            [
                f"Rows that compound several changes (as the paper's Table 5 draws them): {'; '.join(compound)}. "
                "Run every row (the default --variants) for one change per row."
            ]
            if compound
            else []
        ),
        *result.notes,
        *_noise_lines(result),
        f"Paper: {result.source}.",
        f"Runs in {result.output}: {counts['trained']} trained, {counts['resumed']} resumed, "
        f"{counts['done']} already done"
        + (f"; {stopped} stopped before the end (not in the table)." if stopped else "."),
    ]
    return text + "\n".join(lines) + "\n"
