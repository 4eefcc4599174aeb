"""`write_submission`: a checkpoint and a release -> predictions.npy and/or features.npz.

The Python API under `opreid extract`. Rows follow query.parquet and columns gallery.parquet, the
order every submission must have. Features are normalize(GeM output) minus the ME mean, or for SBS
(`me: false`) the normalised BNNeck output (docs/model.md §5.2, §6.3).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmarks.metrics.distances import FeatureDistances
from benchmarks.rerank.kreciprocal import RerankSettings, rerank_distances
from reid_model.errors import CheckpointError, ConfigError, DataError

#: Queries per block written to the .npy of re-ranked distances.
_WRITE_ROWS = 256


@dataclass
class SubmissionSummary:
    """What `write_submission` wrote, and how the features were made."""

    written: list[str] = field(default_factory=list)
    queries: int = 0
    gallery: int = 0
    dim: int = 0
    metric: str = ""
    flip: bool = False
    rerank: dict | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def write_submission(
    checkpoint: str | Path,
    data: str | Path,
    output: str | Path | None = None,
    features: str | Path | None = None,
    *,
    flip: bool | None = None,
    metric: str | None = None,
    batch_size: int | None = None,
    num_workers: int = 2,
    device: str = "auto",
    progress: bool = False,
    rerank: RerankSettings | None = None,
) -> SubmissionSummary:
    """Extract query and gallery features of the release DATA with CHECKPOINT; write the Q x G distance
    matrix to `output` (.npy, float32) and/or the features to `features` (.npz), each atomically.

    `flip`, `metric` and `batch_size` default to the checkpoint's test settings. With `rerank`, the
    matrix holds k-reciprocal re-ranked distances (benchmarks.rerank.kreciprocal), computed and written a block
    of queries at a time; the features stay as extracted.
    """
    # user mistakes are caught before torch is imported, so they fail fast
    if output is None and features is None:
        raise ConfigError("nothing to write: give -o predictions.npy and/or --features F.npz")
    if rerank is not None:
        if output is None:
            raise ConfigError("--rerank re-ranks the distance matrix: give -o predictions.npy")
        rerank.check()
    if not Path(data).is_dir():
        raise DataError(f"dataset folder not found: {data}")
    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")

    import numpy as np

    from manifests import atomic_path
    from reid_model.data.datasets import image_loader, read_split
    from reid_model.data.transforms import test_transform
    from reid_model.distributed import resolve_device
    from reid_model.engine.checkpoint import build_model, checkpoint_config, load_checkpoint
    from reid_model.engine.extract import distance_matrix, extract_features

    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state)
    model = build_model(state, cfg)
    dev = resolve_device(device)
    model.to(dev)
    flip = cfg.test.flip if flip is None else flip
    metric = metric or cfg.test.metric
    batch_size = batch_size or cfg.test.batch_size
    transform = test_transform(cfg.input)
    feats = {}
    for split in ("query", "gallery"):
        records = read_split(data, split, with_truth=False)
        loader = image_loader(records.paths, transform, batch_size, num_workers)
        feats[split] = extract_features(model, loader, dev, flip, progress, desc=split)
    summary = SubmissionSummary(
        queries=int(feats["query"].shape[0]), gallery=int(feats["gallery"].shape[0]),
        dim=int(feats["query"].shape[1]), metric=metric, flip=bool(flip),
    )  # fmt: skip
    if features is not None:
        with atomic_path(features, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                query=feats["query"].numpy().astype(np.float32),
                gallery=feats["gallery"].numpy().astype(np.float32),
            )
        summary.written.append(str(features))
    if output is not None and rerank is not None:
        source = rerank_distances(
            feats["query"].numpy(), feats["gallery"].numpy(), metric, rerank, progress=progress
        )
        _write_rows(source, output)
        summary.rerank = rerank.describe()
        summary.written.append(str(output))
    elif output is not None:
        dist = distance_matrix(feats["query"], feats["gallery"], metric).numpy().astype(np.float32)
        with atomic_path(output, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, dist, allow_pickle=False)
        summary.written.append(str(output))
    return summary


def _write_rows(source: FeatureDistances, output: str | Path) -> None:
    """A Q x G float32 .npy written a block of rows at a time (atomically): never whole in memory."""
    import numpy as np

    from manifests import atomic_path

    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
              "shape": (source.num_query, source.num_gallery)}  # fmt: skip
    with atomic_path(output, suffix=".npy") as tmp, open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for a in range(0, source.num_query, _WRITE_ROWS):
            block = source.rows(a, min(a + _WRITE_ROWS, source.num_query))
            fh.write(np.ascontiguousarray(block, dtype=np.float32).tobytes())
