"""The release's README.md: a datasheet (Gebru et al.) for the built benchmark.

Everything in it comes from the release's own numbers and parameters, so two builds of the same
input and seed give the same card, byte for byte (no dates, no host paths). The text is a Jinja2
template (templates/dataset_card.md.j2); this module computes the figures and tables it shows.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import jinja2

from manifests import BODY_PARTS, SPLITS

#: The release card's template (templates/, shipped as package data).
CARD_TEMPLATE = "dataset_card.md.j2"


@dataclass(frozen=True)
class CardInputs:
    counts: dict[str, dict[str, int]]
    target_vs_achieved: dict[str, dict[str, Any]]
    parameters: dict[str, Any]
    eligibility: dict[str, int]
    histograms: dict[str, dict[str, int]]  # split -> body part -> occluded images missing it
    seed: int
    tool_version: str


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(value: int) -> str:
    return f"{value:,}"


def _share(value: float, ci: list[float] | None) -> str:
    low, high = ci or (value, value)
    return f"{100 * value:.1f}% ({100 * low:.1f}-{100 * high:.1f}%)"


def flag_rates(curation: dict[str, Any]) -> str:
    """A learned occlusion flag's cross-validated rates per labelled set (empty for the paper's rule)."""
    flag = (curation.get("occlusion") or {}).get("flag") or {}
    rows = (flag.get("cv") or {}).get("sources") or []
    if flag.get("flag") != "learned" or not rows:
        return ""
    return table(
        ["labelled set", "occluded", "occluded flagged (95% CI)", "holistic", "holistic flagged (95% CI)"],
        [
            [r["name"], r["occluded"], _share(r["occluded_flagged"], r.get("occluded_ci")), r["holistic"],
             _share(r["holistic_flagged"], r.get("holistic_ci"))]
            for r in rows
        ],
    )  # fmt: skip


@functools.cache
def card_environment(package: str) -> jinja2.Environment:
    """The Jinja2 environment of the Markdown cards in `package`'s templates/ folder (package data).

    Markdown, not HTML: nothing is escaped. Block tags take their own line and leave no blank line
    behind (trim_blocks, lstrip_blocks), the file's last newline is kept, and a misspelt name fails
    the render (StrictUndefined) instead of printing nothing.
    """
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(
        num=_num,
        percent=lambda value: f"{value:.0%}",
        json=lambda value: json.dumps(value, sort_keys=True),
    )
    env.globals["table"] = table
    return env


def render_card(card: CardInputs, *, public: bool = False) -> str:
    """The card of the release, or (`public`) of the participants' package: the same datasheet without
    the split seed (with the source images, the seed would rebuild the private ground truth) and with
    the package's own distribution and checking notes."""
    c, split_params = card.counts, card.parameters.get("split", {})
    rules = split_params.get("rules", {})
    t_lo, t_hi = rules.get("train_images_per_id", [5, 20])
    context = {
        "public": public,
        "counts": c,
        "seed": card.seed,
        "tool_version": card.tool_version,
        "preset": split_params.get("preset"),
        "scale": split_params.get("scale"),
        "t_lo": t_lo,
        "t_hi": t_hi,
        "do": rules.get("distractor_occluded", [1, 3]),
        "dh": rules.get("distractor_holistic", [1, 3]),
        "frac": rules.get("train_occluded_fraction", 0.15),
        "curation": card.parameters.get("curation", {}) or {},
        "flag_rates": flag_rates(card.parameters.get("curation", {}) or {}),
        "composition": table(
            ["split", "identities", "images", "occluded images"],
            [[s, c[s]["ids"], c[s]["images"], c[s]["occluded"]] for s in SPLITS],
        ),
        "tva": table(
            ["number", "target", "achieved"],
            [[k, v.get("target"), v.get("achieved")] for k, v in card.target_vs_achieved.items()],
        ),
        "hist": table(
            ["body part", *SPLITS],
            [[part, *(card.histograms.get(s, {}).get(part, 0) for s in SPLITS)] for part in BODY_PARTS],
        ),
        "pool": table(["pool", "count"], sorted(card.eligibility.items())),
    }
    return card_environment("opreid_builder.release").get_template(CARD_TEMPLATE).render(context)
