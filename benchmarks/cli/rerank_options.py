"""The `--rerank` options that `opreid score` and `opreid extract` share; defaults come from RerankSettings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from benchmarks.rerank.settings import DEVICE_HELP, DEVICE_PATTERN, PRECISIONS, RerankSettings

F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS = RerankSettings()


def rerank_options(func: F) -> F:
    """Adds --rerank, --rerank-k1, --rerank-k2, --rerank-lambda, --rerank-memory-mb, --rerank-device and
    --rerank-precision."""
    options = [
        click.option(
            "--rerank", is_flag=True,
            help="k-reciprocal re-ranking (Zhong et al., CVPR 2017) of feature distances, in bounded memory.",
        ),
        click.option("--rerank-k1", type=click.IntRange(min=1), default=_DEFAULTS.k1, show_default=True,
                     help="Re-ranking: size of the k-reciprocal neighbourhood."),
        click.option("--rerank-k2", type=click.IntRange(min=1), default=_DEFAULTS.k2, show_default=True,
                     help="Re-ranking: neighbours averaged by local query expansion (1: none)."),
        click.option("--rerank-lambda", type=click.FloatRange(0.0, 1.0), default=_DEFAULTS.lambda_value,
                     show_default=True, help="Re-ranking: weight of the original distance against the Jaccard one."),
        click.option("--rerank-memory-mb", type=click.IntRange(min=1), default=_DEFAULTS.memory_mb,
                     show_default=True, help="Re-ranking: working memory for its blocks, in MiB."),
        click.option("--rerank-device", default=_DEFAULTS.device, show_default=True, callback=_check_device,
                     help=f"Re-ranking: where it runs: {DEVICE_HELP}. Same result on each, within float tolerance."),
        click.option("--rerank-precision", type=click.Choice(PRECISIONS), default=_DEFAULTS.precision,
                     show_default=True,
                     help="Re-ranking: precision of the products that screen the neighbours (re-checked exactly: "
                          "the same result with each); auto takes bfloat16 where this machine runs it faster."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _check_device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not DEVICE_PATTERN.fullmatch(value):
        raise click.BadParameter(f"must be {DEVICE_HELP}; got {value!r}")
    return value


def rerank_settings(kwargs: dict[str, Any]) -> RerankSettings | None:
    """Pop the options' values from a command's keyword arguments; None without --rerank."""
    enabled = kwargs.pop("rerank")
    settings = RerankSettings(
        k1=kwargs.pop("rerank_k1"), k2=kwargs.pop("rerank_k2"), lambda_value=kwargs.pop("rerank_lambda"),
        memory_mb=kwargs.pop("rerank_memory_mb"), device=kwargs.pop("rerank_device"),
        precision=kwargs.pop("rerank_precision"),
    )  # fmt: skip
    return settings if enabled else None
