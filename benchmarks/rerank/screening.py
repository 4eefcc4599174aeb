"""Screening the neighbour search in bfloat16: which precision runs, the products and their error bound.

The neighbour pass (neighbours.py) only needs, per image, the candidates that could be among its k
nearest or its farthest; the exact order among them is settled afterwards. bfloat16 products with
float32 accumulation run about 3.5 times faster than float32 ones on CPUs with AMX or AVX512-BF16 and
on GPUs with bfloat16 tensor cores, and their error has a rigorous bound computed here, so the pass can
screen in bfloat16 and keep every image whose distance could lie on the near side of a boundary. The
candidates kept are then recomputed pair by pair (and in float64 where still in doubt), so the answer is
the same, bit for bit, as with float32 screening.

The bound (rows as the product sees them: n_i = x_i, or x_i / |x_i| for cosine, in float32):
n~ = bfloat16(n) and r = n - n~ (exact in float32), a = |n~|, b = |r|. The left factor is -2 n~_i, so
by Cauchy-Schwarz |(-2 n_i).n_j - (-2 n~_i).n~_j| <= 2 (a_i b_j + b_i a_j + b_i b_j): the actual
rounding residuals, about half the worst case 2 (2u + u^2) |n_i| |n_j| (u = 2^-8), which on features
of concentrated distances keeps a window of about 50 candidates a row where the worst case keeps 850.
Float32 accumulation over D terms adds gamma_D sum |products| <= 2 gamma_D a_i a_j; torch's CPU
product returns bfloat16, whose rounding adds u |z| / (1 - u) of the returned value z (per element);
flushed subnormals and the float32 normalisation add a few float32 units. Every term is a worst case:
a neighbour the screen missed would change the answer.
"""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass

import numpy as np

BF16_U = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)
F32_U = 2.0**-24
#: auto screens in bfloat16 only above this many multiply-adds of neighbour products (N^2 D / 2): below
#: it importing torch and measuring cost more than the screen saves
MIN_SCREEN_WORK = 1e11
#: auto's least speed-up of a bfloat16 product over a float32 one, measured on this machine
MIN_SPEEDUP = 1.5
#: auto's guess of that speed-up before it imports torch to measure it (AMX: 3.5x, measured on 2 cores)
ASSUMED_SPEEDUP = 3.5
#: The bfloat16 screen's own extra work per image, in float32 product flops per feature dimension: the
#: recomputed candidate distances (about 45 distinct pairs an image on 2048-dimensional features whose
#: distances concentrate), the wider windows' merges and the torch import, measured against the float32
#: pass on 2 cores at the Market and OPReID sizes (about 0.5 ms an image). A GPU gathers the pairs far
#: faster (a guess, unmeasured here).
EXTRA_WORK_PER_IMAGE = {"cpu": 21_000, "cuda": 2_000}
#: auto leaves the cpu device's numpy path when loading torch would leave less working memory than this
MIN_WORK_BYTES = 256 << 20
#: resident size assumed for torch where /proc cannot tell (measured: about 520 MiB)
TORCH_RESIDENT_GUESS = 600 << 20


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision the neighbour pass screens in, why, and torch's resident bytes that loading it for
    the screen added to this process (charged to the working budget)."""

    precision: str
    reason: str
    torch_bytes: int = 0


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS"))
    except (OSError, StopIteration, ValueError):
        return None


_TORCH_BYTES: list[int] = []


def import_torch_measured():
    """torch, and the resident bytes importing it added to this process (0 when it was loaded already)."""
    if "torch" in sys.modules and not _TORCH_BYTES:
        import torch

        return torch, 0
    if not _TORCH_BYTES:
        before = _rss_bytes()
        import torch

        after = _rss_bytes()
        _TORCH_BYTES.append(
            TORCH_RESIDENT_GUESS if before is None or after is None else max(0, after - before)
        )
    import torch

    return torch, _TORCH_BYTES[0]


def cpu_has_bf16_units() -> bool:
    """AMX or AVX512-BF16 among the CPU's flags (Linux); False where they cannot be read."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


@functools.cache
def measured_speedup(device: str, dim: int) -> float:
    """How many times faster a bfloat16 block product runs than the float32 one the device's path uses
    (numpy's BLAS for cpu, torch elsewhere): a few milliseconds, once per process."""
    torch, _ = import_torch_measured()
    dev = torch.device("cpu" if device in ("cpu", "torch-cpu") else device)
    side = 1024  # smaller products fit in the cache and flatter bfloat16 several times over
    gen = torch.Generator().manual_seed(0)
    a32 = torch.randn(side, dim, generator=gen)
    b32 = torch.randn(side, dim, generator=gen)
    a16, b16 = a32.to(dev, torch.bfloat16), b32.to(dev, torch.bfloat16)
    if device == "cpu":
        an, bn = a32.numpy(), b32.numpy()

        def f32():
            return an @ bn.T
    else:
        a32, b32 = a32.to(dev), b32.to(dev)

        def f32():
            return _f32_matmul(torch, a32, b32.T)

    def bf16():
        return torch.matmul(a16, b16.T)

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(2):
            start = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(f32) / max(best(bf16), 1e-9)


def _f32_matmul(torch, a, b):
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        return torch.matmul(a, b)
    finally:
        torch.set_float32_matmul_precision(before)


def screen_pays(bf16_flops: float, n: int, dim: int, speedup: float, device: str) -> bool:
    """Whether screening `bf16_flops` of products in bfloat16, `speedup` times faster than float32,
    saves more than the screen's own extra work (EXTRA_WORK_PER_IMAGE per image, in float32 product
    flops, so that the machine's speed cancels out)."""
    extra = EXTRA_WORK_PER_IMAGE["cuda" if device.startswith("cuda") else "cpu"] * dim
    return bf16_flops * (1 - 1 / max(speedup, 1.0)) > n * extra


def choose_precision(precision: str, device: str, n: int, dim: int, budget_bytes: int,
                     bf16_flops: float | None = None) -> PrecisionChoice:  # fmt: skip
    """The screen's precision for `precision` (auto, float32 or bfloat16) on `device` for N images of
    dimension D, `bf16_flops` of whose products the screen would run in bfloat16 (default: all N^2 D).
    auto takes bfloat16 only where it pays: bfloat16 units, an estimate that it pays (screen_pays, with
    ASSUMED_SPEEDUP) before torch is imported for it, room in the budget for torch beside the working
    arrays (device cpu), then the same estimate with the speed-up measured on this machine."""
    if precision == "float32":
        return PrecisionChoice("float32", "asked for")
    if precision == "bfloat16":
        torch_bytes = import_torch_measured()[1] if device == "cpu" else 0
        return PrecisionChoice("bfloat16", "asked for", torch_bytes)
    bf16_flops = float(n) * n * dim if bf16_flops is None else bf16_flops
    if bf16_flops / 2 < MIN_SCREEN_WORK:
        return PrecisionChoice("float32", "too few products for a screen to pay")
    if device in ("cpu", "torch-cpu"):
        if not cpu_has_bf16_units():
            return PrecisionChoice("float32", "no AMX or AVX512-BF16 on this CPU")
        if not screen_pays(bf16_flops, n, dim, ASSUMED_SPEEDUP, device):
            return PrecisionChoice("float32", "the screen's own work would outweigh what it saves")
    else:
        torch, _ = import_torch_measured()
        if torch.cuda.get_device_capability(torch.device(device)) < (8, 0):
            return PrecisionChoice("float32", "no bfloat16 tensor cores on this GPU")
    torch_bytes = 0
    if device == "cpu":
        loaded = "torch" in sys.modules
        torch_bytes = import_torch_measured()[1]
        if budget_bytes - torch_bytes < MIN_WORK_BYTES:
            return PrecisionChoice(
                "float32",
                f"torch's {torch_bytes >> 20} MiB would leave too little of the budget",
                torch_bytes,
            )
        torch_bytes = 0 if loaded else torch_bytes
    speedup = measured_speedup(device, dim)
    verdict = f"bfloat16 products measured {speedup:.1f}x faster"
    if speedup < MIN_SPEEDUP or not screen_pays(bf16_flops, n, dim, speedup, device):
        return PrecisionChoice("float32", f"{verdict}: not enough to pay for the screen", torch_bytes)
    return PrecisionChoice("bfloat16", verdict, torch_bytes)


class Bf16Products:
    """bfloat16 block products of FeatureRows in torch (`tops`, a TorchOps on the features' device) and
    the per-row error bound of the values they give (see the module docstring). Each block's rows are
    rounded to bfloat16 when it is formed, the same way as for the bound: no copy of the features.

    A block's values are its squared distances less FeatureRows.shift, as FeatureRows.product followed
    by FeatureRows.finish gives them, written into the pass's own block (numpy's or torch's): the pass
    compares both kinds alike."""

    def __init__(self, feats, tops, float32_blocks: bool = False, chunk: int = 512):
        torch = tops.torch
        self.feats, self.tops, self.torch = feats, tops, torch
        self.dim = d = feats.dim
        self.constant = feats.constant_sq is not None
        self._buffers: dict[str, object] = {}
        o, n = feats.ops, len(feats)
        a, b, nn = np.empty(n), np.empty(n), np.empty(n)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            # rounded by torch as the blocks will be; the norms in numpy (torch's small CPU operations
            # cost more than they compute)
            low = tops.to_numpy(self._rounded(s, e, "left").view(torch.int16)).view(np.uint16)
            low = (low.astype(np.uint32) << 16).view(np.float32)
            rows = tops.to_numpy(self._buffer("f32", (e - s) * d, torch.float32).view(e - s, d))
            for out, x in ((a, low), (b, rows - low), (nn, rows)):
                out[s:e] = np.einsum("ij,ij->i", x, x)
        # float32 sums of D squares: within gamma_D of the exact ones; the square root and its rounding
        gamma = d * F32_U / (1 - d * F32_U)
        a, b, nn = (np.sqrt(v * (1 + 2 * gamma)) * (1 + 4 * F32_U) for v in (a, b, nn))
        big_a, big_b, big_n = float(a.max(initial=0)), float(b.max(initial=0)), float(nn.max(initial=0))
        sq = np.asarray(o.to_numpy(feats.sq64), dtype=np.float64)
        max_sq = float(sq.max(initial=0))
        # bfloat16 products of -2 n~_i and n~_j: input rounding (Cauchy-Schwarz on the residuals), float32
        # accumulation, flushed subnormals
        err = 2 * (a * big_b + b * big_a + b * big_b) + 2 * gamma * a * big_a + d * 2.0**-100
        if float32_blocks:  # where the pass keeps the query-gallery distances: their worst case
            err = np.maximum(err, 2 * gamma * (2 * nn * big_n + sq + max_sq))
        # float32 normalisation and the finishing additions and products
        err += 16 * F32_U * ((nn + 1) * (big_n + 1) + sq + max_sq)
        if self.constant:
            self.out_factor = BF16_U / (1 - BF16_U)  # per element: u |value| of the returned product
        else:
            # the returned product is at most 2 |n~_i| max |n~| (1 + u) in magnitude: a per-row bound
            self.out_factor = 0.0
            err += BF16_U / (1 - BF16_U) * 2.02 * a * big_a + 4 * F32_U * (2.02 * a * big_a + sq + max_sq)
        self.row_error = err
        self.sq32 = None if self.constant else tops.asarray(sq.astype(np.float32))

    def _buffer(self, name: str, numel: int, dtype):
        """A reused buffer of at least `numel` elements: fresh tensors for every block would make the
        allocator keep growing the process."""
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = self._buffers[name] = self.torch.empty(numel, dtype=dtype, device=self.tops.device)
        return buf[:numel]

    def _rounded(self, a: int, b: int, name: str):
        """Rows a..b-1 as the product sees them (float32, scaled by the inverse norm for cosine) in the
        buffer "f32", and rounded to bfloat16 in the buffer `name`."""
        f, tops, torch = self.feats, self.tops, self.torch
        on_torch = f.ops.name == "torch"
        x = tops.asarray(f.rows(a, b) if on_torch else f.ops.to_numpy(f.rows(a, b)))
        rows = self._buffer("f32", (b - a) * self.dim, torch.float32).view(b - a, self.dim)
        if f.scale is None:
            rows.copy_(x)
        else:
            scale = tops.asarray(f.scale[a:b] if on_torch else f.ops.to_numpy(f.scale[a:b])).float()
            if x.dtype == torch.float32:
                torch.mul(x, scale[:, None], out=rows)
            else:  # float64 features: rounded to float32 first, as FeatureRows' scale is
                rows.copy_(x)
                rows.mul_(scale[:, None])
        low = self._buffer(name, (b - a) * self.dim, torch.bfloat16).view(b - a, self.dim)
        return low.copy_(rows)  # round to nearest, ties to even

    def left(self, a: int, b: int):
        """Rows a..b-1 rounded to bfloat16 (the right factor of a block is formed the same way)."""
        return self._rounded(a, b, "left")

    def product(self, left, a: int, b: int, c: int, e: int, out):
        """Rows a..b-1 (their `left`) against rows c..e-1, finished, into `out` (the pass's block): the
        distances less the shift, -2 n~_i.n~_j (with |x_i|^2 + |x_j|^2 added unless constant)."""
        torch = self.torch
        cuda = self.tops.device.type == "cuda"
        if cuda:  # a bfloat16 reduction inside the product would break the bound
            before = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        try:
            z = self._buffer("z", (b - a) * (e - c), torch.bfloat16).view(b - a, e - c)
            torch.matmul(left, self._rounded(c, e, "right").T, out=z)
        finally:
            if cuda:
                torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = before
        view = out if self.feats.ops.name == "torch" else self.tops.asarray(out)  # numpy's block, shared
        torch.mul(z, -2.0, out=view)  # exact: a power of two
        if not self.constant:
            view += self.sq32[a:b, None]
            view += self.sq32[None, c:e]
        return out
