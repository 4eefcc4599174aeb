"""The training loop (docs/model.md §0, §6): PK batches -> CBE -> forward (losses) -> Adam -> ME update.

Input (docs/model.md §6.4): `loader.pipeline: tensor` gathers PK batches of uint8 crops from the
decoded-crop cache and augments them as whole batches on the training device (flip, pad + crop,
AutoAugment, then CBE or Random Erasing); `pil` decodes and transforms each image in loader workers
and erases the collated batch on the CPU. Either way `train_batches()` yields the forward batch.

Determinism: batches, per-image augmentation and erasing are pure functions of (seed, step, rank),
the LR is a pure function of the step, and the model has no other randomness; a checkpoint
therefore needs only the weights, optimiser/scheduler/scaler states and the step count to resume
to bitwise-identical weights (CPU, same thread count). Only rank 0 writes files.

Speed levers (`train.channels_last`, `amp_dtype`, `fused_adam`, `compile`, `cudnn_benchmark`): the
CUDA-only ones are no-ops on the CPU; RUN/environment.json records which were applied.

Checkpoints: `last.pt` always; `best.pt` only with a validation split (`data.val_ids`), chosen by
(mAP + Rank-1) / 2 on it. Test splits are evaluated and logged but never choose a checkpoint.
Every `log_period` the train record also holds BED's operating range (docs/model.md §3).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from manifests import progress_bar
from reid_model.config import Config, dump_config
from reid_model.data.batch_augment import augment_batch
from reid_model.data.crop_batches import CropSource, crop_batches
from reid_model.data.crop_cache import default_cache_folder, image_checksums, open_crop_cache
from reid_model.data.datasets import (
    SeededBatches,
    TrainDataset,
    hold_out_identities,
    read_train,
    train_loader,
)
from reid_model.data.sampler import PKSampler
from reid_model.data.transforms import train_transform
from reid_model.distributed import DistContext, barrier, cpu_has_fast_bfloat16, mean_across
from reid_model.engine.checkpoint import load_checkpoint, save_checkpoint
from reid_model.engine.evaluation import evaluate, evaluation_sets
from reid_model.engine.lr_schedule import lr_factor_fn
from reid_model.engine.run_records import MetricsLog, environment, plot_curves, write_json
from reid_model.errors import CheckpointError, ConfigError, DataError, DistributedError
from reid_model.modeling.batch_erasing import ErasingParams, compound_batch_erasing, random_erasing
from reid_model.modeling.model import BRANCHES, ReidModel, total_loss
from reid_model.modeling.pretrained import load_pretrained

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def environment(self) -> Path:
        return self.root / "environment.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    @property
    def last(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"


def erasing_params(cfg: Config) -> ErasingParams:
    i = cfg.input
    return ErasingParams(i.re_prob, tuple(i.re_area), i.re_ratio, i.re_fill, tuple(i.bce_parts))


def sampled_batch_size(cfg: Config) -> int:
    """Images the sampler draws per step (all ranks together); CBE doubles it in the forward pass."""
    d = cfg.data
    return d.ims_per_batch // 2 if (cfg.cbe and d.cbe_batch_is_forward_batch) else d.ims_per_batch


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    state = int(np.random.SeedSequence([seed, step, rank, 0xE7A5E]).generate_state(1)[0])
    return torch.Generator().manual_seed(state)


def make_optimizer(
    model: torch.nn.Module, cfg: Config, device: torch.device | None = None
) -> torch.optim.Optimizer:
    """Adam as the recipe sets it; one fused kernel per step with `train.fused_adam` on CUDA."""
    s = cfg.solver
    params = [p for p in model.parameters() if p.requires_grad]
    fused = bool(cfg.train.fused_adam and device is not None and device.type == "cuda") or None
    return torch.optim.Adam(
        params, lr=s.base_lr, betas=tuple(s.betas), eps=1e-8, weight_decay=s.weight_decay, fused=fused
    )


def speed_levers(cfg: Config, device: torch.device) -> dict[str, bool | str]:
    """The `train.*` speed levers as they apply on `device`: the CUDA-only ones are off elsewhere.
    A lever the device cannot honour (bfloat16 on a GPU without it) is refused."""
    t, cuda = cfg.train, device.type == "cuda"
    amp = bool(cfg.solver.amp and cuda)
    if amp and t.amp_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.amp_dtype=bfloat16: this GPU has no bfloat16 support; use float16")
    amp_dtype = t.amp_dtype if amp else "float32"
    if cfg.solver.cpu_bf16 and device.type == "cpu":
        if cpu_has_fast_bfloat16():
            amp, amp_dtype = True, "bfloat16"  # no grad scaler: bfloat16 has fp32's range
        else:  # emulated bfloat16 is slower than fp32
            log.info(
                "solver.cpu_bf16: this CPU has no native bfloat16 (AMX or AVX512-BF16); training in fp32"
            )
    return {
        "amp": amp,
        "amp_dtype": amp_dtype,
        "channels_last": t.channels_last,
        "fused_adam": t.fused_adam and cuda,
        "compile": t.compile and cuda,
        "cudnn_benchmark": t.cudnn_benchmark and cuda,
    }


@contextlib.contextmanager
def serial_cpu_ops(device: torch.device) -> Iterator[None]:
    """Run the enclosed CPU tensor ops on one thread. The input ops (augmentation, erasing) are a few
    elementwise passes over one batch: intra-op threads gain little there, while each parallel region
    costs a fork and a join, and on a shared CPU a join waits for a descheduled thread's time slice.
    Elementwise results do not depend on the thread count, so neither does any batch."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class Trainer:
    def __init__(
        self,
        cfg: Config,
        data_root: str | Path,
        run_dir: str | Path,
        ctx: DistContext,
        resume: str | Path | dict[str, Any] | None = None,
        progress: bool = True,
        eval_data: Sequence[str | Path] = (),
    ):
        self.cfg, self.ctx = cfg, ctx
        self.data_root = Path(data_root)
        self.paths = RunPaths(Path(run_dir))
        self.progress = progress and ctx.is_main
        if cfg.train.num_threads > 0:
            torch.set_num_threads(cfg.train.num_threads)
        if cfg.train.tensorboard and ctx.is_main:
            from reid_model.engine.tensorboard_log import require_tensorboard

            require_tensorboard()
        self.records = read_train(self.data_root)
        validation = None
        if cfg.data.val_ids > 0:
            self.records, validation = hold_out_identities(self.records, cfg.data.val_ids, cfg.data.val_seed)
        self.eval_sets = evaluation_sets(self.data_root, eval_data, validation)
        self.batch = sampled_batch_size(cfg)
        if self.batch % ctx.world_size:
            raise DataError(f"sampled batch {self.batch} cannot be split over {ctx.world_size} processes")
        per_batch = self.batch // cfg.data.num_instance
        if self.records.num_classes < per_batch:
            raise DataError(
                f"{self.records.num_classes} training identities, fewer than the {per_batch} a batch draws "
                "(lower data.ims_per_batch or --val-ids)"
            )
        self.iters_per_epoch = cfg.solver.iters_per_epoch or max(1, len(self.records.paths) // self.batch)
        self.total_iters = cfg.solver.max_epochs * self.iters_per_epoch

        torch.manual_seed(cfg.seed)
        self.model = ReidModel(cfg, self.records.num_classes)
        state = resume if isinstance(resume, dict) else (load_checkpoint(resume) if resume else None)
        if state is None:
            load_pretrained(self.model.backbone, cfg.model.pretrained, cfg.model.allow_download)
        self.model = self._convert_sync_bn(self.model, cfg, ctx)
        self.levers = speed_levers(cfg, ctx.device)
        self.memory_format = torch.channels_last if self.levers["channels_last"] else torch.contiguous_format
        self.model.to(ctx.device, memory_format=self.memory_format)
        if self.levers["cudnn_benchmark"]:
            torch.backends.cudnn.benchmark = True
        self.use_amp = bool(self.levers["amp"])
        self.amp_dtype = torch.bfloat16 if self.levers["amp_dtype"] == "bfloat16" else torch.float16
        self.optimizer = make_optimizer(self.model, cfg, ctx.device)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor_fn(cfg.solver, self.iters_per_epoch)
        )
        # bfloat16 has float32's range: no loss scaling
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self._crop_source: CropSource | None = None
        self.crop_cache_path: str | None = None
        self.compiled: torch.nn.Module | None = None  # the training forward under torch.compile
        self.iteration = 0
        self.best_score = -1.0
        if state is not None:
            self._restore(state)
        self.ddp = (
            DistributedDataParallel(
                self.model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
            )
            if ctx.distributed
            else None
        )
        if self.levers["compile"]:
            self.compiled = torch.compile(self._forward_model())
        self.evaluate_enabled = bool(self.eval_sets)

    @staticmethod
    def _convert_sync_bn(model: torch.nn.Module, cfg: Config, ctx: DistContext) -> torch.nn.Module:
        """`train.sync_bn`: BN statistics over the global batch under DDP (CUDA only; no-op in one process)."""
        if not (cfg.train.sync_bn and ctx.distributed):
            return model
        if ctx.device.type != "cuda":
            raise DistributedError("train.sync_bn needs CUDA devices (SyncBatchNorm does not run on CPU)")
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)

    # -- state -------------------------------------------------------------------------------------------
    def _restore(self, state: dict[str, Any]) -> None:
        if int(state["num_classes"]) != self.records.num_classes:
            raise CheckpointError(
                f"checkpoint was trained on {state['num_classes']} identities, this dataset has "
                f"{self.records.num_classes}"
            )
        for key in ("optimizer", "scheduler", "iteration"):
            if key not in state:
                raise CheckpointError(f"checkpoint has no {key!r} state; it cannot be resumed")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.iteration = int(state["iteration"])
        self.best_score = float(state.get("best_score", -1.0))
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        log.info("resumed at iteration %d of %d", self.iteration, self.total_iters)

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "num_classes": self.records.num_classes,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "epoch": self.iteration // self.iters_per_epoch,
            "iters_per_epoch": self.iters_per_epoch,
            "total_iters": self.total_iters,
            "best_score": self.best_score,
            "torch_rng": torch.get_rng_state(),
        }

    def save(self, path: Path) -> None:
        if self.ctx.is_main:
            save_checkpoint(path, self.state_dict())

    # -- one step ----------------------------------------------------------------------------------------
    def _forward_model(self) -> torch.nn.Module:
        if self.compiled is not None:
            return self.compiled
        return self.ddp if self.ddp is not None else self.model

    def _erase(self, images: torch.Tensor, pids: torch.Tensor, camids: torch.Tensor, gen: torch.Generator):
        """CBE (2B images out of B) or, without it, Random Erasing, on the batch's device."""
        params = erasing_params(self.cfg)
        if self.cfg.cbe:
            return compound_batch_erasing(images, pids, camids, gen, params)
        if params.prob > 0:
            images = random_erasing(images, gen, params)
        return images, pids, camids

    def train_step(
        self, images: torch.Tensor, pids: torch.Tensor, camids: torch.Tensor, measure: bool = False
    ) -> dict[str, float]:
        """One optimisation step on a forward batch from `train_batches()` (augmented and erased);
        returns the loss terms and BED's operating range as floats. With `measure`, also the gradient
        norm each part of BED sends to the features (`range_*_grad_*`)."""
        cfg = self.cfg
        device = self.ctx.device
        images = images.to(device, non_blocking=True).contiguous(memory_format=self.memory_format)
        pids = pids.to(device, non_blocking=True)
        frozen = self.iteration < cfg.solver.freeze_iters
        self.model.train()
        if frozen:
            self.model.backbone.eval()  # frozen backbone: BN uses (and keeps) its running statistics
        with torch.autocast(device_type=device.type, dtype=self.amp_dtype, enabled=self.use_amp):
            out = self._forward_model()(images, pids)
        loss = total_loss(out)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at iteration {self.iteration}: {loss.item()}")
        grads = self._term_gradients(out) if measure else {}
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if frozen:
            for p in self.model.frozen_parameters():
                p.grad = None  # Adam skips parameters without a gradient (no decay, no moment update)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if cfg.me:
            self.model.me.update(mean_across(self.ctx, out["me_batch_mean"].detach()))
        self.iteration += 1
        values = {k: float(v.detach()) for k, v in out.items() if k.startswith(("loss_", "range_"))}
        values["loss"] = float(loss.detach())
        values.update(grads)
        return values

    @staticmethod
    def _term_gradients(out: dict[str, torch.Tensor]) -> dict[str, float]:
        """|dL_part / dZ| for the positive and negative parts of BED on each branch's feature batch Z,
        and at the backbone's output map F: |dL_metric / dF|, |dL_cls / dF| and the metric loss's
        share of the two, |g_metric| / (|g_metric| + |g_cls|)."""
        grads = {}
        fmap = out.get("feature_map")
        if fmap is not None and fmap.requires_grad:
            norms = {}
            for group, prefix in (("metric", "loss_metric_"), ("cls", "loss_cls")):
                terms = [v for k, v in out.items() if k.startswith(prefix) and v.requires_grad]
                g = None
                if terms:
                    (g,) = torch.autograd.grad(sum(terms), fmap, retain_graph=True, allow_unused=True)
                norms[group] = 0.0 if g is None else float(g.float().norm())
                grads[f"range_backbone_grad_{group}"] = norms[group]
            total = norms["metric"] + norms["cls"]
            grads["range_backbone_grad_share_metric"] = norms["metric"] / total if total > 0 else 0.0
        for branch in BRANCHES:
            feats = out.get(f"features_{branch}")
            if feats is None or not feats.requires_grad:
                continue
            for part in ("pos", "neg"):
                term = out[f"range_{branch}_bed_{part}"]
                g = None
                if term.requires_grad:
                    (g,) = torch.autograd.grad(term, feats, retain_graph=True, allow_unused=True)
                grads[f"range_{branch}_grad_{part}"] = 0.0 if g is None else float(g.float().norm())
        return grads

    # -- the loop ----------------------------------------------------------------------------------------
    def _prepare_run_dir(self, resumed: bool) -> MetricsLog:
        sink = None
        if self.cfg.train.tensorboard and self.ctx.is_main:
            from reid_model.engine.tensorboard_log import TensorBoardLog

            sink = TensorBoardLog(self.paths.tensorboard, self.iteration if resumed else None)
        metrics = MetricsLog(self.paths.metrics, self.iteration if resumed else None, sink)
        if self.ctx.is_main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            from manifests import atomic_write_text

            atomic_write_text(self.paths.config, dump_config(self.cfg))
            env = environment(self.ctx.device, self.ctx.world_size)
            env["data"] = str(self.data_root.resolve())
            env["input_pipeline"] = self.cfg.loader.pipeline
            env["crop_cache"] = self.crop_cache_path
            env["speed_levers"] = self.levers
            env["resumed_from_iteration"] = self.iteration if resumed else None
            write_json(self.paths.environment, env)
        return metrics

    def _evaluate(self, metrics: MetricsLog) -> None:
        """Evaluate every set; the validation split (if any) alone decides best.pt."""
        if self.ctx.is_main:
            for eval_set in self.eval_sets:
                res = evaluate(self.model, eval_set, self.cfg, self.ctx.device, progress=self.progress)
                valid = res["mAP"] is not None and res["rank1"] is not None
                score = (res["mAP"] + res["rank1"]) / 2 if valid else None
                record = {
                    "kind": "val" if eval_set.split == "val" else "eval",
                    "iteration": self.iteration,
                    "epoch": self.iteration / self.iters_per_epoch,
                    **eval_set.labels(),
                    **res,
                    "score": score,
                }
                metrics.add(record)
                log.info(
                    "iteration %d, %s %s: mAP %s rank-1 %s",
                    self.iteration, eval_set.split, eval_set.dataset, res["mAP"], res["rank1"],
                )  # fmt: skip
                if eval_set.split == "val" and score is not None and score > self.best_score:
                    self.best_score = score
                    self.save(self.paths.best)
        barrier(self.ctx)

    def _sampler(self) -> PKSampler:
        cfg = self.cfg
        return PKSampler(
            self.records.pids,
            self.batch,
            cfg.data.num_instance,
            seed=cfg.seed,
            rank=self.ctx.rank,
            world_size=self.ctx.world_size,
        )

    def crop_source(self) -> CropSource:
        """The decoded-crop cache of the release's training images (built on first use) and the rows of
        this run's records in it. It covers the whole training manifest, so runs that hold out
        different validation identities share it."""
        if self._crop_source is None:
            cfg = self.cfg
            every = read_train(self.data_root).paths
            checksums = image_checksums(every)
            by_path = dict(zip(every, checksums, strict=True))
            folder = default_cache_folder(self.data_root, self.paths.root, cfg.loader.cache_dir)
            cache = open_crop_cache(every, checksums, cfg.input, folder, workers=cfg.data.num_workers,
                                    progress=self.progress)  # fmt: skip
            log.info("decoded-crop cache: %s (%s)", cache.path, "built" if cache.built else "reused")
            self.crop_cache_path = str(cache.path)
            rows = cache.rows_of([by_path[p] for p in self.records.paths])
            self._crop_source = CropSource(cache.array, rows, self.records.pids, self.records.camids)
        return self._crop_source

    def train_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """The forward batches (images, pids, camids) from the current iteration on, never ending:
        augmented and erased, the images on the training device with the `tensor` pipeline."""
        cfg, rank, device = self.cfg, self.ctx.rank, self.ctx.device
        start = self.iteration
        if cfg.loader.pipeline == "pil":
            dataset = TrainDataset(self.records, train_transform(cfg.input))
            loader = train_loader(
                dataset, SeededBatches(self._sampler(), start, cfg.seed), cfg.data.num_workers
            )
            for step, (images, pids, camids) in enumerate(loader, start=start):
                with serial_cpu_ops(images.device):
                    batch = self._erase(images, pids, camids, step_generator(cfg.seed, step, rank))
                yield batch
            return
        source = self.crop_source()
        pin = device.type == "cuda"
        for step, images, pids, camids in crop_batches(
            source, self._sampler(), start, cfg.loader.prefetch, pin
        ):
            gen = step_generator(cfg.seed, step, rank)
            with serial_cpu_ops(device):
                images = augment_batch(images.to(device, non_blocking=True), gen, cfg.input)
                batch = self._erase(images, pids, camids, gen)
            yield batch

    def fit(self) -> dict[str, Any]:
        resumed = self.iteration > 0
        if self.cfg.loader.pipeline == "tensor":
            self.crop_source()  # built (or found) before the run folder records where it is
        metrics = self._prepare_run_dir(resumed)
        cfg = self.cfg
        stop_at = self.total_iters
        if cfg.train.stop_after_iters > 0:
            stop_at = min(stop_at, cfg.train.stop_after_iters)
        loader = self.train_batches()
        sums: dict[str, float] = {}
        count, t_last = 0, time.perf_counter()
        if self.evaluate_enabled and cfg.train.eval_at_start and self.iteration == 0:
            self._evaluate(metrics)
        bar = progress_bar(total=self.total_iters, initial=self.iteration, desc="train", unit="it",
                           enabled=self.progress)  # fmt: skip
        try:
            while self.iteration < stop_at:
                images, pids, camids = next(loader)
                nxt = self.iteration + 1
                log_now = nxt % cfg.train.log_period == 0 or nxt == self.total_iters or nxt == stop_at
                values = self.train_step(images, pids, camids, measure=log_now)
                snapshot = {k: values.pop(k) for k in [k for k in values if "_grad_" in k]}
                bar.update(1)
                bar.set_postfix(
                    loss=f"{values['loss']:.3f}", refresh=False
                )  # refresh() would defeat the throttle
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                it = self.iteration
                end_of_epoch = it % self.iters_per_epoch == 0
                last = it == self.total_iters
                if log_now:
                    now = time.perf_counter()
                    rec = {"kind": "train", "iteration": it, "epoch": it / self.iters_per_epoch}
                    rec.update({k: v / count for k, v in sums.items()})  # means over the log period
                    rec.update(snapshot)  # gradient norms: measured on this step
                    rec["lr"] = self.optimizer.param_groups[0]["lr"]
                    rec["sec_per_iter"] = (now - t_last) / count
                    metrics.add(rec)
                    sums, count, t_last = {}, 0, now
                epoch = it // self.iters_per_epoch
                if self.evaluate_enabled and (
                    last
                    or (end_of_epoch and cfg.train.eval_period > 0 and epoch % cfg.train.eval_period == 0)
                ):
                    self._evaluate(metrics)
                want_ckpt = (
                    last
                    or it == stop_at
                    or (end_of_epoch and epoch % max(1, cfg.train.checkpoint_period) == 0)
                    or (cfg.train.checkpoint_period_iters > 0 and it % cfg.train.checkpoint_period_iters == 0)
                )
                if want_ckpt and self.ctx.is_main:
                    metrics.flush()  # records up to this checkpoint are on disk before it
                    self.save(self.paths.last)
                    plot_curves(metrics.records, self.paths.curves)
        finally:
            # end the loader's worker processes now, not at some later garbage collection (a frame of
            # this call can outlive it in a reference cycle; `opreid ablate` trains many runs in one process)
            loader = None
            bar.close()
            if metrics.sink is not None:
                metrics.sink.close()
                metrics.sink = None
        if self.ctx.is_main:
            metrics.flush()
            plot_curves(metrics.records, self.paths.curves)
        barrier(self.ctx)
        return self._summary(metrics.records)

    def _summary(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The run in one object: the latest record of every evaluated set, and the checkpoints."""
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for r in records:
            if r.get("kind") in ("eval", "val"):
                latest[(r["kind"], r.get("dataset", ""))] = r
        evals = [r for (kind, _), r in latest.items() if kind == "eval"]
        vals = [r for (kind, _), r in latest.items() if kind == "val"]
        has_best = bool(vals) and self.paths.best.is_file()
        return {
            "iteration": self.iteration,
            "total_iters": self.total_iters,
            "finished": self.iteration >= self.total_iters,
            "last_checkpoint": str(self.paths.last),
            "best_checkpoint": str(self.paths.best) if has_best else None,
            "best_score": self.best_score if has_best else None,
            "final_eval": evals[0] if evals else None,
            "final_evals": evals,
            "final_val": vals[0] if vals else None,
        }
