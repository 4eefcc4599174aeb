"""The README.md of an imported benchmark: where it came from, the protocol and conventions applied,
the counts next to the published ones, where the occlusion flags come from, and what was skipped.

Built from dataset.json's own content only, so the same copy and seed give the same card, byte for
byte (no dates, no host paths). The text is a Jinja2 template (templates/benchmark_card.md.j2).
"""

from __future__ import annotations

from typing import Any

from manifests import SPLITS, UNKNOWN_FLAGS
from opreid_builder.release.card import card_environment, table
from opreid_builder.split.public_formats import BenchmarkLayout

#: In words, where a split's occlusion flags come from (dataset.json `occlusion_flags`).
FLAG_WORDS = {
    "dataset": "the dataset's own labels (its folder or protocol says so)",
    "pose": "a pose model, by the occlusion rule of `opreid curate`",
    "keypoints-file": "a keypoints file, by the occlusion rule of `opreid curate`",
    UNKNOWN_FLAGS: "unknown: stored as `occluded = false`; no occluded/holistic breakdown is reported",
}
#: The card names at most this many skipped paths of each kind (dataset.json lists more).
LISTED_IN_CARD = 50
#: The card's template (templates/, shipped as package data).
CARD_TEMPLATE = "benchmark_card.md.j2"


def render_benchmark_card(layout: BenchmarkLayout, info: dict[str, Any]) -> str:
    counts, official, flags = info["counts"], info["official_counts"], info["occlusion_flags"]
    composition = table(
        ["split", "identities", "images", "published ids", "published images", "occluded images", "flags from"],
        [[s, counts[s]["ids"], counts[s]["images"], official.get(s, {}).get("ids"),
          official.get(s, {}).get("images"),
          counts[s]["occluded"] if flags[s] != UNKNOWN_FLAGS else "unknown", flags[s]] for s in SPLITS],
    )  # fmt: skip
    template = card_environment("opreid_builder.public_datasets").get_template(CARD_TEMPLATE)
    return template.render(
        layout=layout,
        info=info,
        composition=composition,
        splits=SPLITS,
        flag_words=FLAG_WORDS,
        listed=LISTED_IN_CARD,
    )
