"""Engines run a chain of curation stages over an index of crops; they own nothing else.

An engine takes an index (a pyarrow Table, one row per crop) and a list of `StageSpec`, and yields
the output batches in any order. What is cached, how shards are committed, the corrections and the
final `images.parquet` belong to the driver (pipeline.py), so both engines give the same files.

- `local`: threads in this process. Each stage has its own small pool (`concurrency` threads, each
  with its own stage instance, so a model is loaded once per thread) and works a few batches ahead
  of the next, so decoding, pose, face detection and encoding overlap. `workers=0` runs everything
  in order on the calling thread.
- `ray`: Ray Data. The index is written to Parquet and read back with `ray.data.read_parquet`; each
  stage is one `map_batches`: pose and faces as actor pools (`ActorPoolStrategy(size=concurrency)`,
  `num_gpus` when a GPU is asked for), the light stages as tasks; each with its batch size.
  `ray.init()` starts a local cluster when no address is given. Workers read RAW and write OUT
  themselves, so on a cluster both must be on a shared file system, and opreid installed on every
  node. Ray is an extra: `pip install 'opreid[ray]'`.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import OpreidError
from opreid_builder.curation.sources import prefetch
from opreid_builder.errors import EngineError

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
RAY_EXTRA = "opreid[ray]"
#: Ray CPUs reserved per actor and per task: fractions, so pose, faces and the light stages all fit
#: on a 2-core machine (Ray's CPU count is for scheduling; threads are the OS's business).
ACTOR_CPUS = 0.5
TASK_CPUS = 0.25


@dataclass(frozen=True)
class StageSpec:
    """One stage of a chain: the class to build (with `args`), how to batch it and where it runs."""

    name: str
    factory: type
    args: tuple = ()
    batch_size: int = 64
    concurrency: int = 1
    actors: bool = False  # stateful (a model): an actor pool on Ray
    num_gpus: float = 0.0

    def build(self) -> Any:
        return self.factory(*self.args)


@dataclass(frozen=True)
class EngineConfig:
    """Which engine runs the stages and with what parallelism (the CLI's engine options)."""

    engine: str = "local"
    ray_address: str | None = None
    pose_actors: int = 1
    face_actors: int = 1
    pose_gpus: float | None = None  # GPUs per pose actor; None: 1 when --device is a GPU, else 0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise EngineError(f"unknown --engine {self.engine!r} (choose one of {', '.join(ENGINES)})")
        if self.pose_actors < 1 or self.face_actors < 1:
            raise EngineError("--pose-actors and --face-actors must be >= 1")
        if self.ray_address and self.engine != "ray":
            raise EngineError("--ray-address needs --engine ray")


class LocalEngine:
    """Threads in this process, each stage a few batches ahead of the next."""

    name = "local"

    def __init__(self, workers: int = 2):
        self.workers = max(0, int(workers))

    def run(self, index: pa.Table, stages: list[StageSpec], batch_rows: int) -> Iterator[pa.Table]:
        stream: Iterator[pa.Table] = iter(index.to_batches(max_chunksize=max(1, batch_rows)))
        for spec in stages:
            stream = self._map(spec, stream)
        yield from stream

    def _map(self, spec: StageSpec, stream: Iterator) -> Iterator[pa.Table]:
        local = threading.local()

        def call(batch: Any) -> pa.Table:
            stage = getattr(local, "stage", None)
            if stage is None:
                stage = local.stage = spec.build()
            return stage(batch)

        threads = 0 if self.workers == 0 else (spec.concurrency if spec.actors else self.workers)
        for _, out in prefetch(stream, call, threads, window=max(2, 2 * threads)):
            yield out


_MARK = re.compile(r"OPREID-STAGE-ERROR\[([A-Za-z0-9+/=]+)\]")


class _StageFailed(RuntimeError):
    """A stage's OpreidError, carried across Ray in its message (Ray keeps an error's text, not its chain)."""

    def __init__(self, error: OpreidError):
        payload = {"module": type(error).__module__, "name": type(error).__qualname__, "message": str(error)}
        super().__init__(f"OPREID-STAGE-ERROR[{base64.b64encode(json.dumps(payload).encode()).decode()}]")


def _carried_error(exc: BaseException) -> OpreidError | None:
    """The stage error a Ray exception carries, rebuilt as its own class with its one-line message."""
    found = _MARK.search(str(exc))
    if found is None:
        return None
    try:
        payload = json.loads(base64.b64decode(found.group(1)))
        cls = getattr(importlib.import_module(payload["module"]), payload["name"])
    except (ValueError, ImportError, AttributeError, KeyError):
        return None
    if not (isinstance(cls, type) and issubclass(cls, OpreidError)):
        return None
    error = cls.__new__(cls)
    Exception.__init__(error, payload["message"])
    return error


class RayStage:
    """A stage in a Ray actor: built once per actor; its own errors cross back to the driver intact."""

    def __init__(self, factory: type, args: tuple):
        try:
            self.stage = factory(*args)
        except OpreidError as exc:
            raise _StageFailed(exc) from None

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            return self.stage(batch)
        except OpreidError as exc:
            raise _StageFailed(exc) from None


def _apply_stage(batch: pa.Table, factory: type, args: tuple) -> pa.Table:
    """A light stage as a Ray task: built per batch (it loads nothing)."""
    return RayStage(factory, args)(batch)


def require_ray():
    """The `ray` module with Ray Data, or EngineError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise EngineError(
            f"--engine ray needs Ray, which is not installed: pip install '{RAY_EXTRA}'"
        ) from None
    return ray


class RayEngine:
    """Ray Data: `read_parquet` of the index, one `map_batches` per stage, streamed back to the driver."""

    name = "ray"

    def __init__(self, work_dir: Path, address: str | None = None, progress: bool = False):
        ray = self.ray = require_ray()
        self.work_dir = Path(work_dir).resolve()
        for name in ("ray", "ray.data"):  # Ray's own progress and error lines: the driver reports errors
            logging.getLogger(name).setLevel(logging.CRITICAL)
        if not ray.is_initialized():
            os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
            try:
                ray.init(
                    address=address or None, include_dashboard=False, logging_level=logging.ERROR,
                    log_to_driver=False, configure_logging=True,
                )  # fmt: skip
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise EngineError(f"cannot start or join {where}: {str(exc).splitlines()[0]}") from None
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        with contextlib.suppress(AttributeError):
            ctx.print_on_execution_start = False

    def run(self, index: pa.Table, stages: list[StageSpec], batch_rows: int) -> Iterator[pa.Table]:
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        self.work_dir.mkdir(parents=True, exist_ok=True)
        path = self.work_dir / f"index-{uuid.uuid4().hex}.parquet"
        pq.write_table(index, path, row_group_size=max(1, batch_rows))
        try:
            ds = self.ray.data.read_parquet(str(path))
            for spec in stages:
                common = {"batch_size": spec.batch_size, "batch_format": "pyarrow", "zero_copy_batch": True}
                if spec.actors:
                    named = type(spec.factory.__name__, (RayStage,), {})  # Ray names actors after it
                    ds = ds.map_batches(
                        named, fn_constructor_args=(spec.factory, spec.args),
                        compute=ActorPoolStrategy(size=spec.concurrency),
                        num_cpus=ACTOR_CPUS, num_gpus=spec.num_gpus or None, **common,
                    )  # fmt: skip
                else:
                    ds = ds.map_batches(
                        _apply_stage, fn_kwargs={"factory": spec.factory, "args": spec.args},
                        compute=TaskPoolStrategy(), num_cpus=TASK_CPUS, **common,
                    )  # fmt: skip
            yield from ds.iter_batches(batch_format="pyarrow", batch_size=None)
        except OpreidError:
            raise
        except Exception as exc:
            carried = _carried_error(exc)
            if carried is not None:
                raise carried from None
            raise
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


def make_engine(
    config: EngineConfig, work_dir: Path, workers: int, progress: bool
) -> LocalEngine | RayEngine:
    """The engine a run asks for (Ray is imported, and a cluster started or joined, only for `ray`)."""
    if config.engine == "ray":
        return RayEngine(work_dir, config.ray_address, progress)
    return LocalEngine(workers)
