"""Training batches of the `tensor` input pipeline: PK batches gathered from the decoded-crop cache.

Each item is (global step, uint8 images N x 3 x H x W, pids, camids); the images are a view of N x H x
W x 3 rows (channels-last strides, the layout the cache stores), pinned for an asynchronous copy when
the model runs on CUDA. A background thread gathers `prefetch` batches ahead, so that the rows are
read (from the page cache or the disk) while the previous step computes; which rows a step gets is
the sampler's pure function of the step, so the thread changes no result.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from reid_model.data.sampler import PKSampler

Batch = tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class CropSource:
    """The cache's rows and the labels of the training records, in record order."""

    crops: np.ndarray  # cache rows: M x H x W x 3 uint8 (memory-mapped)
    rows: np.ndarray  # record -> cache row
    pids: np.ndarray
    camids: np.ndarray

    def gather(self, records: list[int], pin: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = np.asarray(records, dtype=np.int64)
        images = torch.from_numpy(np.ascontiguousarray(self.crops[self.rows[index]]))
        if pin:
            images = images.pin_memory()
        return (
            images.permute(0, 3, 1, 2),
            torch.from_numpy(self.pids[index]),
            torch.from_numpy(self.camids[index]),
        )


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def crop_batches(
    source: CropSource, sampler: PKSampler, start: int, prefetch: int, pin: bool
) -> Iterator[Batch]:
    """This rank's batches from global step `start` on, never ending; `prefetch` 0 gathers in the caller."""
    steps = enumerate(sampler.batches(start), start=start)
    if prefetch == 0:
        for step, records in steps:
            yield (step, *source.gather(records, pin))
        return
    ready: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for step, records in steps:
                if not put((step, *source.gather(records, pin))):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))

    thread = threading.Thread(target=work, name="crop-batches", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)
