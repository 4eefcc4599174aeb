"""Typed training configuration: YAML presets mapped onto dataclasses, plus dotted `key=value` overrides.

Defaults are the paper's recipe (docs/model.md §6); every open choice (docs/model.md §8) is a field
here so that the alternative reading is one override away. The five Table 5 ablations (`cbe`, `bed`,
`dnl`, `rp`, `me`) are top-level switches. Unknown keys are rejected with a difflib suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.metrics.distances import METRICS
from reid_model.choices import (
    AMP_DTYPES,
    BED_REDUCTIONS,
    BLOCK_EXPANSION,
    CLASSIFIERS,
    ERASE_FILLS,
    FEATURES,
    HEAD_LOSSES,
    PIPELINES,
    RETRIEVAL_FEATURES,
    RP_INITS,
)
from reid_model.errors import ConfigError


@dataclass
class ModelConfig:
    """Backbone, pooling and heads (docs/model.md §1, §2, §5)."""

    block: str = "bottleneck"  # resnet.BLOCKS: bottleneck (ResNet-50 layout) | basic (tiny preset)
    layers: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    last_stride: int = 1
    nl_layers: list[int] = field(default_factory=lambda: [0, 2, 3, 0])  # (D)NL blocks after the last m blocks
    dnl_reduction: int = 2  # C' = C / reduction; 1 is the paper-literal c x c
    nl_inner_channels: int = 0  # `dnl: false` block's C': 0 = C / dnl_reduction; FastReID's code computes 1
    dnl_temperature: float = 0.05
    dnl_scale: bool = True  # divide the pairwise logits by sqrt(C')
    gem_p: float = 3.0
    gem_learnable: bool = True
    gem_eps: float = 1e-6
    cls_heads: int = 2
    cls_tau: float = 16.0
    cls_gamma: float = 0.03125
    rp_init: str = (
        "identity"  # reconstructive_pooling.INITS: identity (RP == average pooling at init) | normal
    )
    rp_id_loss: bool = False  # Fig. 2 caption reading: also classify the RP feature
    me_beta: float = 0.9
    classifier: str = "auto"  # model.CLASSIFIERS: auto (causal with bed, circle without) | causal | circle
    circle_scale: float = 64.0  # SBS's CircleSoftmax s
    circle_margin: float = 0.35  # SBS's CircleSoftmax m
    pretrained: str = ""  # "" (random init) | imagenet | path to a state dict
    allow_download: bool = False  # let `pretrained: imagenet` download into the torch hub cache


@dataclass
class InputConfig:
    """Per-image transforms and the erasing parameters of CBE (docs/model.md §4, §6.2)."""

    height: int = 256
    width: int = 128
    flip_p: float = 0.5
    padding: int = 10
    autoaug_p: float = 0.1
    re_prob: float = 0.5
    re_area: list[float] = field(default_factory=lambda: [0.02, 0.4])
    re_ratio: float = 0.3  # aspect ratio drawn from U(re_ratio, 1 / re_ratio)
    re_fill: str = "mean"  # batch_erasing.FILLS: mean (0 after normalisation) | random (per-pixel N(0, 1))
    bce_parts: list[int] = field(default_factory=lambda: [6, 7, 8])


@dataclass
class DataConfig:
    """PK sampling and loading (docs/model.md §4, "PK sampler")."""

    ims_per_batch: int = 64  # images drawn by the sampler per step (forward batch is 2x with CBE)
    num_instance: int = 4  # K images per identity; SBS-faithful alternative 16
    cbe_batch_is_forward_batch: bool = False  # true: ims_per_batch counts the forward batch (sample half)
    num_workers: int = 4  # decoding processes: the pil path's loader workers, the crop cache's build
    val_ids: int = 0  # hold out this many training identities as a validation query/gallery (best.pt)
    val_seed: int = 0  # which identities are held out (independent of the training seed)


@dataclass
class LoaderConfig:
    """How training crops reach the model (docs/model.md §6.4): the speed of training, not its recipe."""

    # choices.PIPELINES: tensor (decoded-crop cache, batched augmentation on the device) | pil (per image)
    pipeline: str = "tensor"
    # the decoded-crop cache's folder; "" = DATA/cache/crops (RUN/cache/crops when DATA is read-only)
    cache_dir: str = ""
    prefetch: int = 2  # batches gathered from the cache ahead of the step, on a background thread


@dataclass
class LossConfig:
    """BED, the baseline triplet (for `bed: false`) and the classification loss (docs/model.md §3, §5.1)."""

    bed_alpha: float = 0.3
    bed_reduction: str = "separate"  # one of bed_loss.REDUCTIONS
    bed_normalize: bool = True  # L2-normalise the features BED sees (the paper's text; a measured choice)
    bed_scale: float = 1.0  # BED sees bed_scale * normalize(z); only alpha * scale matters (docs/model.md §3)
    bed_learn_scale: bool = False  # learn the scale (a temperature), starting from bed_scale
    bed_weight: float = 1.0  # BED's weight against the classification loss (Eq. 5: 1)
    triplet_margin: float = 0.0  # 0 = soft margin (SBS); only used when bed is off
    triplet_feature: str = "bnneck"  # model.FEATURES: bnneck (SBS's NECK_FEAT: after) | pooled
    label_smoothing: float = 0.1
    cls_head_loss: str = "sum_logits"  # causal_classifier.HEAD_LOSSES: sum_logits (Tang) | per_head (paper)


@dataclass
class SolverConfig:
    """Adam, warmup, backbone freeze and the delayed cosine schedule (docs/model.md §6.2)."""

    base_lr: float = 3.5e-4
    weight_decay: float = 5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    max_epochs: int = 60
    iters_per_epoch: int = 0  # 0: len(train) // ims_per_batch
    warmup_iters: int = 2000
    warmup_factor: float = 0.1
    delay_epochs: int = 30
    eta_min: float = 7e-7
    freeze_iters: int = 1000
    amp: bool = True  # used on CUDA only
    cpu_bf16: bool = False  # bfloat16 autocast on CPU where native (AMX, AVX512-BF16): faster steps


@dataclass
class TrainConfig:
    """Bookkeeping of a run: evaluation, checkpoints, logging."""

    eval_period: int = 10  # epochs; 0 = only at the end
    eval_at_start: bool = False  # also evaluate the untrained (or pretrained) model before step 1
    checkpoint_period: int = 1  # epochs
    checkpoint_period_iters: int = 0  # extra checkpoints every N iterations (0 = off)
    log_period: int = 20  # iterations between metrics.jsonl records
    stop_after_iters: int = 0  # stop (with a checkpoint) after this many iterations; 0 = run to the end
    num_threads: int = 0  # torch CPU threads; 0 = torch default
    sync_bn: bool = False  # SyncBatchNorm across DDP processes (CUDA only)
    tensorboard: bool = False  # also write the metrics.jsonl scalars to RUN/tensorboard (extra: tensorboard)
    # Speed levers (docs/model.md §6.4): on the CPU only channels_last (and solver.cpu_bf16) apply, the others are no-ops
    # (RUN/environment.json records the levers as applied).
    channels_last: bool = False  # NHWC activations and weights (any device)
    amp_dtype: str = "float16"  # choices.AMP_DTYPES: autocast dtype with solver.amp (CUDA)
    fused_adam: bool = False  # one fused kernel for the Adam update (CUDA)
    compile: bool = False  # torch.compile the training forward (CUDA; off unless measured to win)
    cudnn_benchmark: bool = True  # let cuDNN pick the fastest convolution for the fixed input size (CUDA)


@dataclass
class TestConfig:
    """Feature extraction and the retrieval distance (docs/model.md §5.2, §6.3)."""

    batch_size: int = 128
    metric: str = "cosine"  # feature_distances.METRICS: cosine | euclidean (squared, ME-subtracted)
    flip: bool = False
    feature: str = "auto"  # model.RETRIEVAL_FEATURES: auto (pooled with me, bnneck without) | pooled | bnneck


@dataclass
class Config:
    """A whole run. Top-level booleans are the Table 5 ablations."""

    cbe: bool = True
    bed: bool = True
    dnl: bool = True
    rp: bool = True
    me: bool = True
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    input: InputConfig = field(default_factory=InputConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    solver: SolverConfig = field(default_factory=SolverConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Each choice-valued key and its choices (reid_model/choices.py; the distance metrics are the scorer's).
CHOICES: dict[str, tuple[str, ...]] = {
    "model.block": tuple(BLOCK_EXPANSION),
    "model.rp_init": RP_INITS,
    "model.classifier": CLASSIFIERS,
    "loss.triplet_feature": FEATURES,
    "test.feature": RETRIEVAL_FEATURES,
    "input.re_fill": ERASE_FILLS,
    "loss.bed_reduction": BED_REDUCTIONS,
    "loss.cls_head_loss": HEAD_LOSSES,
    "test.metric": METRICS,
    "loader.pipeline": PIPELINES,
    "train.amp_dtype": AMP_DTYPES,
}


def _suggest(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a field's annotation, allowing int -> float and list <-> tuple."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(hint)
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {hint!r}")  # pragma: no cover - programming error


def _build(cls: type, data: Any, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in names:
            known = [f"{prefix}{n}" for n in names]
            raise ConfigError(f"unknown config key {where!r}{_suggest(where, known)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, f"{where}.")
        else:
            kwargs[key] = _coerce(value, hint, where)
    return cls(**kwargs)


def _all_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(_all_keys(hints[f.name], f"{prefix}{f.name}."))
        else:
            keys.append(f"{prefix}{f.name}")
    return keys


def validate(cfg: Config) -> Config:
    """Cross-field checks that a single field's type cannot express."""
    flat = flatten_dict(cfg.to_dict())
    for key, choices in CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key}: {flat[key]!r} is not one of {', '.join(choices)}")
    m = cfg.model
    if len(m.layers) != 4 or len(m.widths) != 4 or len(m.nl_layers) != 4:
        raise ConfigError("model.layers, model.widths and model.nl_layers need 4 entries (one per stage)")
    for n, k in zip(m.layers, m.nl_layers, strict=True):
        if not 0 <= k <= n:
            raise ConfigError(f"model.nl_layers: {k} blocks asked for a stage of {n} blocks")
    if m.last_stride not in (1, 2):
        raise ConfigError("model.last_stride must be 1 or 2")
    dim = m.widths[3] * BLOCK_EXPANSION[m.block]
    if dim % m.cls_heads:
        raise ConfigError(f"embedding dim {dim} is not divisible by model.cls_heads={m.cls_heads}")
    if m.nl_inner_channels < 0:
        raise ConfigError("model.nl_inner_channels must be 0 (C / dnl_reduction) or a width")
    if any(w % m.dnl_reduction for w in m.widths):
        raise ConfigError("model.dnl_reduction must divide every stage width")
    d = cfg.data
    if d.num_instance < 1 or d.ims_per_batch % d.num_instance:
        raise ConfigError("data.ims_per_batch must be a multiple of data.num_instance")
    if cfg.cbe and d.cbe_batch_is_forward_batch and (d.ims_per_batch // 2) % d.num_instance:
        raise ConfigError(
            "with data.cbe_batch_is_forward_batch, ims_per_batch/2 must be a multiple of num_instance"
        )
    if not all(p >= 1 for p in cfg.input.bce_parts):
        raise ConfigError("input.bce_parts must be positive integers")
    lo, hi = cfg.input.re_area
    if not 0 < lo <= hi < 1:
        raise ConfigError("input.re_area must be [low, high] with 0 < low <= high < 1")
    if cfg.loss.bed_scale <= 0 or cfg.loss.bed_weight < 0:
        raise ConfigError("loss.bed_scale must be positive and loss.bed_weight not negative")
    if not 0 < cfg.model.me_beta < 1:
        raise ConfigError("model.me_beta must be in (0, 1)")
    if cfg.me and retrieval_feature(cfg) != "pooled":
        raise ConfigError(
            "me: true subtracts its mean from the pooled feature; set test.feature=pooled or auto"
        )
    if d.val_ids < 0:
        raise ConfigError("data.val_ids must be 0 (no validation split) or a number of identities")
    if cfg.loader.prefetch < 0:
        raise ConfigError("loader.prefetch must be 0 (gather in the training loop) or a number of batches")
    if cfg.solver.max_epochs < 1:
        raise ConfigError("solver.max_epochs must be at least 1")
    return cfg


def classifier_kind(cfg: Config) -> str:
    """The classifier a config builds: Eq. 5's causal-norm multi-head classifier goes with BED (the
    paper's loss), SBS's CircleSoftmax with the triplet loss, unless `model.classifier` names one."""
    if cfg.model.classifier != "auto":
        return cfg.model.classifier
    return "causal" if cfg.bed else "circle"


def retrieval_feature(cfg: Config) -> str:
    """The feature retrieval uses: the L2-normalised GeM output (minus the ME mean) with ME, as the
    paper retrieves; SBS's eval-mode BNNeck output without it, unless `test.feature` names one."""
    if cfg.test.feature != "auto":
        return cfg.test.feature
    return "pooled" if cfg.me else "bnneck"


def flatten_dict(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten_dict(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def configs_dir() -> Path:
    """The presets folder: `configs/` beside the package in a source checkout, else the copy a
    wheel installs as data files under `<prefix>/share/opreid/configs`."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if checkout.is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "opreid" / "configs"


def preset_names() -> list[str]:
    """The presets that ship (the YAML files in `configs_dir()`)."""
    return sorted(p.stem for p in configs_dir().glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or a preset name (`tiny`, `opreid_r50`) looked up in `configs/`."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix == "" and path.parent == Path("."):
        preset = configs_dir() / f"{path.name}.yaml"
        if preset.is_file():
            return preset
        known = preset_names()
        raise ConfigError(
            f"no config file or preset named {str(name_or_path)!r}{_suggest(path.name, known)} "
            f"(presets: {', '.join(known)}; or a YAML file)"
        )
    raise ConfigError(f"config file not found: {path}")


#: The deepest list or mapping an override value may hold (no config value nests beyond 2), and the
#: most items it may hold: YAML anchors can make a short value expand beyond any memory.
MAX_OVERRIDE_NESTING = 16
MAX_OVERRIDE_ITEMS = 100_000


def _override_size_problem(value: Any) -> str | None:
    """Why a parsed override value is too deep or too large, or None; walks it without recursing and
    stops as soon as either limit is passed."""
    stack, items = [(value, 0)], 0
    while stack:
        node, depth = stack.pop()
        items += 1
        if items > MAX_OVERRIDE_ITEMS:
            return f"holds more than {MAX_OVERRIDE_ITEMS:,} items (repeated YAML anchors?)"
        if isinstance(node, dict | list):
            if depth + 1 > MAX_OVERRIDE_NESTING:
                return f"nests lists or mappings more than {MAX_OVERRIDE_NESTING} levels deep"
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return None


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`section.key=value` strings -> nested dict; values are parsed with yaml.safe_load."""
    nested: dict[str, Any] = {}
    known = _all_keys()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in known:
            raise ConfigError(f"unknown config key {key!r}{_suggest(key, known)}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {item!r}: value is not valid YAML ({exc.__class__.__name__})"
            ) from None
        except RecursionError:  # the YAML parser recurses once per nesting level
            problem = f"nests lists or mappings more than {MAX_OVERRIDE_NESTING} levels deep"
        else:
            problem = _override_size_problem(value)
        if problem is not None:
            raise ConfigError(f"override {key}: the value {problem}")
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def merge_dicts(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_dicts(out[k], v)
        else:
            out[k] = v
    return out


def config_from_dict(data: dict[str, Any]) -> Config:
    return validate(_build(Config, data))


def load_config(
    name_or_path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Defaults <- YAML file or preset <- overrides, validated."""
    data: dict[str, Any] = {}
    if name_or_path is not None:
        path = resolve_config_path(name_or_path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read config ({exc.__class__.__name__}: {exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a YAML mapping")
        data = loaded or {}
    data = merge_dicts(data, parse_overrides(overrides))
    return config_from_dict(data)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
