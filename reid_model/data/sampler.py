"""PK identity sampler: P identities x K images per batch, an infinite, resumable stream (docs/model.md §4).

Within a pass ("sampler epoch") every identity's images are shuffled and cut into groups of K
(identities with fewer than K images are topped up by sampling with replacement, leftovers under K
are dropped); groups are drawn P identities at a time, an identity leaving the pool when its groups
run out. Everything is a pure function of (seed, pass number), so the stream can restart at any
global batch index: resuming needs only the number of batches consumed. Under DDP each rank takes
an interleaved share of the P identities of every global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class PKSampler:
    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int,
        num_instance: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        if batch_size % num_instance:
            raise ValueError("batch_size must be a multiple of num_instance")
        self.num_ids_per_batch = batch_size // num_instance
        if self.num_ids_per_batch % world_size:
            raise ValueError(
                f"{self.num_ids_per_batch} identities per batch cannot be split over {world_size} processes"
            )
        self.pids = np.asarray(pids, dtype=np.int64)
        self.batch_size = batch_size
        self.num_instance = num_instance
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.by_pid = {int(p): np.flatnonzero(self.pids == p) for p in np.unique(self.pids)}
        if len(self.by_pid) < self.num_ids_per_batch:
            raise ValueError(
                f"{len(self.by_pid)} training identities, fewer than the {self.num_ids_per_batch} a batch needs"
            )

    def _pass(self, index: int) -> list[list[int]]:
        """All global batches (lists of dataset indices, identity-major) of sampler pass `index`."""
        rng = np.random.default_rng([self.seed, index])
        groups: dict[int, list[np.ndarray]] = {}
        for pid, idxs in self.by_pid.items():
            idxs = idxs.copy()
            if len(idxs) < self.num_instance:
                idxs = rng.choice(idxs, size=self.num_instance, replace=True)
            rng.shuffle(idxs)
            whole = len(idxs) // self.num_instance
            groups[pid] = [idxs[i * self.num_instance : (i + 1) * self.num_instance] for i in range(whole)]
        available = sorted(groups)
        batches: list[list[int]] = []
        while len(available) >= self.num_ids_per_batch:
            chosen = rng.choice(len(available), size=self.num_ids_per_batch, replace=False)
            picked = [available[i] for i in chosen]
            batch: list[int] = []
            for pid in picked:
                batch.extend(int(i) for i in groups[pid].pop(0))
                if not groups[pid]:
                    available.remove(pid)
            batches.append(batch)
        return batches

    def _local(self, batch: list[int]) -> list[int]:
        k = self.num_instance
        ids = [batch[i * k : (i + 1) * k] for i in range(self.num_ids_per_batch)]
        return [i for group in ids[self.rank :: self.world_size] for i in group]

    def global_batches(self, start: int = 0) -> Iterator[list[int]]:
        """The infinite stream of global batches, from global batch index `start` on."""
        position, pass_index = 0, 0
        while True:
            batches = self._pass(pass_index)
            if not batches:  # pragma: no cover - guarded by the identity count check
                raise RuntimeError("a sampler pass produced no batch")
            if position + len(batches) > start:
                yield from batches[max(0, start - position) :]
            position += len(batches)
            pass_index += 1

    def batches(self, start: int = 0) -> Iterator[list[int]]:
        """This rank's share of each global batch, from global batch index `start` on."""
        for batch in self.global_batches(start):
            yield self._local(batch)
