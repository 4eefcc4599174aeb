"""The README.md of an imported benchmark: where it came from, the protocol and conventions applied,
the counts next to the published ones, where the occlusion flags come from, and what was skipped.

Built from dataset.json's own content only, so the same copy and seed give the same card, byte for
byte (no dates, no host paths).
"""

from __future__ import annotations

import json
from typing import Any

from manifests import SPLITS, UNKNOWN_FLAGS
from opreid_builder.release.card import table
from opreid_builder.split.public_formats import BenchmarkLayout

#: In words, where a split's occlusion flags come from (dataset.json `occlusion_flags`).
FLAG_WORDS = {
    "dataset": "the dataset's own labels (its folder or protocol says so)",
    "pose": "a pose model, by the occlusion rule of `opreid curate`",
    "keypoints-file": "a keypoints file, by the occlusion rule of `opreid curate`",
    UNKNOWN_FLAGS: "unknown: stored as `occluded = false`; no occluded/holistic breakdown is reported",
}
_LISTED_IN_CARD = 50


def _listing(items: list[dict[str, str]], total: int, key: str) -> str:
    if not total:
        return "None."
    lines = [f"- `{it['path']}`: {it[key]}" for it in items[:_LISTED_IN_CARD]]
    if total > len(lines):
        lines.append(f"- ... and {total - len(lines):,} more (dataset.json lists up to {len(items):,})")
    return "\n".join(lines)


def _tree(layout: BenchmarkLayout, source: dict[str, Any]) -> str:
    lines = [f"{source['root']}/"]
    for folder in source["folders"]:
        use = folder["split"] or "not used"
        inner = "<pid>/" if folder["per_identity"] else ""
        lines.append(f"  {folder['path']}/{inner}{folder['name_pattern']}.<ext>   -> {use}")
    for lst in source["lists"]:
        lines.append(f"  {lst['path']}   ({lst['images']}/ images) -> {lst['split'] or 'not used'}")
    return "\n".join(lines)


def render_benchmark_card(layout: BenchmarkLayout, info: dict[str, Any]) -> str:
    counts, official, flags = info["counts"], info["official_counts"], info["occlusion_flags"]
    source, conventions, images = info["source"], info["conventions"], info["images"]
    composition = table(
        ["split", "identities", "images", "published ids", "published images", "occluded images", "flags from"],
        [[s, counts[s]["ids"], counts[s]["images"], official.get(s, {}).get("ids"),
          official.get(s, {}).get("images"),
          counts[s]["occluded"] if flags[s] != UNKNOWN_FLAGS else "unknown", flags[s]] for s in SPLITS],
    )  # fmt: skip
    subset = f", subset `{source['subset']}`" if source["subset"] else ""
    g, q = counts["gallery"], counts["query"]
    curation = (info.get("parameters") or {}).get("curation")
    masked = images.get("masked", 0)
    notes = "".join(f"- {note}\n" for note in source["notes"])
    unused = (
        ", ".join(f"`{k}` ({v:,} images)" if v else f"`{k}`" for k, v in source["unused"].items()) or "none"
    )
    return f"""# {layout.title}: the official protocol, as an opreid release

Imported by `opreid import {layout.name}` (opreid {info["tool_version"]}), seed {info["seed"]}{subset}, from
`{source["root"]}/`. Reference: {layout.reference}. Machine-readable details and the sha256 of
every file are in `dataset.json` (`protocol: {layout.name}`); `opreid validate` (run by the host: it
needs `private/`) checks this protocol's invariants.

The images are the dataset's own, under its own licence and terms of use; this release does not
change who may use them.

## Composition

{composition}

- Query images without a cross-camera match in the gallery: {q.get("without_positive", 0):,} (the
  Market-1501 protocol leaves them out of the scores).
- Gallery: {g.get("query_match_images", 0):,} images of query identities, {g.get("distractor_images", 0):,}
  images of {g.get("distractor_ids", 0):,} other identities (distractors){
        f", {g['pid0_images']:,} of them pid-0 distractor boxes" if g.get("pid0_images") else ""
    }.
- Junk images left out: {source["junk_images"]:,}.

## Protocol and conventions

The official split, applied as fast-reid and torchreid apply it:

- Junk: {conventions["junk"]}.
- Distractors: {conventions["distractors"]}.
- Train pids: {conventions["train_pids"]}; test pids: {conventions["test_pids"]}.
- Cameras: {conventions["cameras"]}.
- Names: {conventions["public_names"]}.
{notes}
Folders read (`<ext>`: any image type PIL reads):

```
{_tree(layout, source)}
```

## Occlusion flags

{chr(10).join(f"- {s}: {FLAG_WORDS[flags[s]]}" for s in SPLITS)}

Curation pass: {
        "none"
        if curation is None
        else f"`{json.dumps(curation.get('keypoints'), sort_keys=True)}`, rule `{json.dumps(curation.get('occlusion'), sort_keys=True)}`"
    }.

## Images

{images.get("hardlink", 0):,} hard-linked to the source files (the same bytes, no extra space; a hard link
names nothing, whereas a symbolic link would show the official, pid-bearing path),
{images.get("copy", 0):,} copied, {images.get("stripped", 0):,} written without their JPEG EXIF/comment
segments (pixels untouched), {masked:,} face-masked{"" if not masked else " by the curation pass"}.
{
        "Faces are not masked: the dataset is public as it stands (`--mask-faces` masks them)."
        if not masked
        else ""
    }

## Skipped

Shipped but not part of the protocol: {unused}.

Unexpected files (skipped):

{_listing(source["unexpected"], source["unexpected_count"], "reason")}

Unreadable images (left out):

{_listing(source["unreadable"], source["unreadable_count"], "detail")}

## Distribution

Participants receive `images/`, `train.parquet`, `query.parquet`, `gallery.parquet`, `README.md`
and `dataset.json`; `private/` (ground truth, the map back to the official file names) stays with
the host. Rerun the same command with the same seed on the same copy to get this release byte
for byte.
"""
