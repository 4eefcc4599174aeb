"""The array operations re-ranking needs, for numpy (the CPU and its BLAS) and for torch (any device).

The algorithm (neighbours.py, kreciprocal.py) is written once against these. Arithmetic, comparisons,
in-place operators, indexing and positional-axis reductions (`a.sum(1)`, `a.any(2)`) already mean the
same on both libraries; what differs in name or in what it returns is here. numpy is the default: it
needs no torch import, which alone costs about 500 MB of resident memory.
"""

from __future__ import annotations

import warnings

import numpy as np

from benchmarks.rerank.settings import DEVICE_HELP, DEVICE_PATTERN, RerankError


def top_k_stable(block: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k smallest entries in (value, index) order: the first k of a stable
    argsort, found with one partition instead of a sort of the row."""
    num_rows, n = block.shape
    if k >= n:
        return np.argsort(block, axis=1, kind="stable")
    kth = np.partition(block, k - 1, axis=1)[:, k - 1 : k]
    take = block < kth
    n_less = take.sum(axis=1)
    tied = block == kth
    take |= tied
    for r in np.flatnonzero(n_less + tied.sum(axis=1) > k).tolist():  # ties across the k-th place
        take[r, np.flatnonzero(tied[r])[k - n_less[r] :]] = False
    cols = np.nonzero(take)[1].reshape(num_rows, k)
    order = np.argsort(np.take_along_axis(block, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


class NumpyOps:
    """numpy on the CPU."""

    name = "numpy"
    #: Rows of a block the pass's element-wise steps take at a time: a piece that stays in the core's
    #: cache through all of them instead of streaming the whole block from memory once per step.
    scan_rows = 128

    def matmul(self, a, b, out=None):
        if out is None:
            return a @ b
        return np.matmul(a, b, out=out)

    def next_up(self, a):
        return np.nextafter(a, np.inf)

    def next_down(self, a):
        return np.nextafter(a, -np.inf)

    def abs(self, a):
        return np.abs(a)

    def contiguous(self, a):
        return np.ascontiguousarray(a)

    def less(self, a, b, out):
        return np.less(a, b, out=out)

    def argsort_small(self, a, bound: int):
        """Stable argsort of non-negative integers below `bound` (a radix sort when they fit 16 bits)."""
        if bound <= 1 << 15:
            a = a.astype(np.int16)
        return np.argsort(a, kind="stable")

    def nonzero_sparse(self, mask):
        """np.nonzero of a 2-D mask that is mostly False: its bytes are scanned eight at a time."""
        flat = mask.reshape(-1)
        whole = len(flat) - len(flat) % 8
        words = np.flatnonzero(flat[:whole].view(np.uint64))
        i, j = np.nonzero(flat[:whole].reshape(-1, 8)[words])
        idx = np.concatenate([words[i] * 8 + j, np.flatnonzero(flat[whole:]) + whole])
        return np.divmod(idx, mask.shape[1])

    def asarray(self, a, dtype=None):
        return np.ascontiguousarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def sync(self) -> None:
        pass

    def empty(self, shape, dtype):
        return np.empty(shape, dtype=dtype)

    def full(self, shape, value, dtype):
        return np.full(shape, value, dtype=dtype)

    def arange(self, *args, dtype=np.int64):
        return np.arange(*args, dtype=dtype)

    def cast(self, a, dtype):
        return a.astype(dtype, copy=False)

    def concat(self, arrays, axis: int = 0):
        return np.concatenate(arrays, axis=axis)

    def nonzero(self, mask):
        return np.nonzero(mask)

    def max(self, a, axis: int):
        return a.max(axis=axis)

    def clamp_min(self, a, value):
        return np.maximum(a, value)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def clamp_max(self, a, value):
        return np.minimum(a, value)

    def nbytes(self, a) -> int:
        return a.nbytes

    def dtype_of(self, a) -> np.dtype:
        return a.dtype

    def broadcast_rows(self, row, num_rows: int):
        return np.broadcast_to(row, (num_rows, len(row)))

    def minimum(self, a, b):
        return np.minimum(a, b)

    def where(self, cond, a, b):
        return np.where(cond, a, b)

    def exp(self, a):
        return np.exp(a)

    def smallest(self, a, k: int):
        """The k smallest entries of each row (in no particular order) and their columns."""
        if k >= a.shape[1]:
            return a.copy(), np.broadcast_to(np.arange(a.shape[1]), a.shape).copy()
        idx = np.argpartition(a, k - 1, axis=1)[:, :k]
        return np.take_along_axis(a, idx, axis=1), idx

    def kth_smallest(self, a, k: int):
        """Each row's k-th smallest entry (k counts from 1)."""
        return np.partition(a, k - 1, axis=1)[:, k - 1]

    def kth_smallest2(self, a, k: int, m: int):
        """Each row's k-th and m-th smallest entries (k <= m <= a.shape[1]), one partition."""
        part = np.partition(a, [k - 1, m - 1], axis=1)
        return part[:, k - 1], part[:, m - 1]

    def smallest_stable(self, a, k: int):
        """Columns of each row's k smallest entries in (value, column) order: a stable argsort's first k."""
        return top_k_stable(a, k)

    def argsort_stable(self, a, axis: int = -1):
        return np.argsort(a, axis=axis, kind="stable")

    def sort(self, a, axis: int = -1):
        return np.sort(a, axis=axis)

    def lexsort(self, keys):
        """Like numpy.lexsort: the last key is the primary one."""
        return np.lexsort(keys)

    def take_along(self, a, idx, axis: int = 1):
        return np.take_along_axis(a, idx, axis=axis)

    def repeat(self, a, counts):
        return np.repeat(a, counts)

    def bincount(self, x, weights=None, minlength: int = 0):
        return np.bincount(x, weights=weights, minlength=minlength)

    def unique_inverse(self, a):
        return np.unique(a, return_inverse=True)

    def cumsum(self, a):
        return np.cumsum(a)

    def searchsorted(self, a, v, side: str = "left"):
        return np.searchsorted(a, v, side=side)

    def dots64(self, x, y):
        """Row-wise inner products in float64 (a product of two float32 is exact in float64)."""
        return np.multiply(x, y, dtype=np.float64).sum(1)

    def dots(self, x, y):
        """Row-wise inner products in the arrays' dtype."""
        return np.einsum("ij,ij->i", x, y)

    def squared_norms64(self, x, step: int = 256):
        return np.concatenate([self.dots64(x[a : a + step], x[a : a + step]) for a in range(0, len(x), step)])


class TorchOps:
    """torch on one device; numpy arrays come in and go out as arrays of the same dtypes."""

    name = "torch"
    scan_rows = None  # whole blocks: a device runs each step over the block in parallel

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.device = torch.device("cpu" if device == "torch-cpu" else device)

    def _dtype(self, dtype):
        t = self.torch
        if isinstance(dtype, t.dtype):
            return dtype
        return {
            np.dtype(np.float32): t.float32, np.dtype(np.float64): t.float64, np.dtype(np.int64): t.int64,
            np.dtype(np.int32): t.int32, np.dtype(bool): t.bool, np.dtype(np.int8): t.int8,
        }[np.dtype(dtype)]  # fmt: skip

    def asarray(self, a, dtype=None):
        if isinstance(a, self.torch.Tensor):
            return a.to(self.device, None if dtype is None else self._dtype(dtype)).contiguous()
        a = np.ascontiguousarray(a, dtype=dtype)
        with warnings.catch_warnings():  # read-only arrays (a memory map) are only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return self.torch.from_numpy(a).to(self.device)

    def to_numpy(self, a) -> np.ndarray:
        return a.cpu().numpy()

    def matmul(self, a, b, out=None):
        """In full float32: a global TF32 or bfloat16 setting would break the error bound neighbours.py
        relies on, so it is lifted for the product and put back."""
        torch = self.torch
        before = torch.get_float32_matmul_precision()
        if before == "highest":
            return torch.matmul(a, b, out=out)
        torch.set_float32_matmul_precision("highest")
        try:
            return torch.matmul(a, b, out=out)
        finally:
            torch.set_float32_matmul_precision(before)

    def next_up(self, a):
        return self.torch.nextafter(a, self.torch.full_like(a, np.inf))

    def next_down(self, a):
        return self.torch.nextafter(a, self.torch.full_like(a, -np.inf))

    def abs(self, a):
        return a.abs()

    def contiguous(self, a):
        return a.contiguous()

    def less(self, a, b, out):
        return self.torch.lt(a, b, out=out)

    def argsort_small(self, a, bound: int):
        return self.torch.sort(a, stable=True).indices

    def nonzero_sparse(self, mask):
        return self.torch.nonzero(mask, as_tuple=True)

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def empty(self, shape, dtype):
        return self.torch.empty(shape, dtype=self._dtype(dtype), device=self.device)

    def full(self, shape, value, dtype):
        return self.torch.full(shape, value, dtype=self._dtype(dtype), device=self.device)

    def arange(self, *args, dtype=np.int64):
        return self.torch.arange(*args, dtype=self._dtype(dtype), device=self.device)

    def cast(self, a, dtype):
        return a.to(self._dtype(dtype))

    def concat(self, arrays, axis: int = 0):
        return self.torch.cat(list(arrays), dim=axis)

    def nonzero(self, mask):
        return self.torch.nonzero(mask, as_tuple=True)

    def max(self, a, axis: int):
        return a.amax(dim=axis)

    def clamp_min(self, a, value):
        return a.clamp_min(value)

    def maximum(self, a, b):
        return self.torch.maximum(a, b)

    def clamp_max(self, a, value):
        return a.clamp_max(value)

    def nbytes(self, a) -> int:
        return a.element_size() * a.numel()

    def dtype_of(self, a) -> np.dtype:
        return np.dtype(str(a.dtype).removeprefix("torch."))

    def broadcast_rows(self, row, num_rows: int):
        return row[None, :].expand(num_rows, -1)

    def minimum(self, a, b):
        return self.torch.minimum(a, b)

    def where(self, cond, a, b):
        return self.torch.where(cond, a, b)

    def exp(self, a):
        return self.torch.exp(a)

    def smallest(self, a, k: int):
        k = min(k, a.shape[1])
        out = self.torch.topk(a, k, dim=1, largest=False, sorted=False)
        return out.values, out.indices

    def kth_smallest(self, a, k: int):
        return self.torch.kthvalue(a, k, dim=1).values

    def kth_smallest2(self, a, k: int, m: int):
        values = self.torch.topk(a, m, dim=1, largest=False, sorted=True).values
        return values[:, k - 1], values[:, m - 1]

    def smallest_stable(self, a, k: int):
        return self.torch.sort(a, dim=1, stable=True).indices[:, :k]

    def argsort_stable(self, a, axis: int = -1):
        return self.torch.sort(a, dim=axis, stable=True).indices

    def sort(self, a, axis: int = -1):
        return self.torch.sort(a, dim=axis).values

    def lexsort(self, keys):
        order = self.torch.arange(len(keys[0]), device=self.device)
        for key in keys:  # least significant first, each sort stable
            order = order[self.torch.sort(key[order], stable=True).indices]
        return order

    def take_along(self, a, idx, axis: int = 1):
        return self.torch.take_along_dim(a, idx, dim=axis)

    def repeat(self, a, counts):
        return self.torch.repeat_interleave(a, counts)

    def bincount(self, x, weights=None, minlength: int = 0):
        if weights is not None:
            weights = weights.to(self.torch.float64)
        out = self.torch.bincount(x, weights=weights, minlength=minlength)
        return out

    def unique_inverse(self, a):
        return self.torch.unique(a, sorted=True, return_inverse=True)

    def cumsum(self, a):
        return self.torch.cumsum(a, dim=0)

    def searchsorted(self, a, v, side: str = "left"):
        return self.torch.searchsorted(a, v, side=side)

    def dots64(self, x, y):
        return (x.to(self.torch.float64) * y.to(self.torch.float64)).sum(1)

    def dots(self, x, y):
        return (x * y).sum(1)

    def squared_norms64(self, x, step: int = 4096):
        return self.torch.cat(
            [x[a : a + step].to(self.torch.float64).square().sum(1) for a in range(0, len(x), step)]
        )


def array_ops(device: str):
    """The operations for a `--rerank-device` value; RerankError when it names nothing usable here."""
    if not DEVICE_PATTERN.fullmatch(device):
        raise RerankError(f"re-ranking device must be {DEVICE_HELP}; got {device!r}")
    if device == "cpu":
        return NumpyOps()
    ops = TorchOps(device)
    if ops.device.type == "cuda":
        torch = ops.torch
        if not torch.cuda.is_available():
            raise RerankError(f"--rerank-device {device}: no CUDA device is available; use cpu")
        if (ops.device.index or 0) >= torch.cuda.device_count():
            raise RerankError(
                f"--rerank-device {device}: only {torch.cuda.device_count()} CUDA device(s) are present"
            )
    return ops
