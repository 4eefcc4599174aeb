"""The release's README.md: a datasheet (Gebru et al.) for the built benchmark.

Everything in it comes from the release's own numbers and parameters, so two builds of the same
input and seed give the same card, byte for byte (no dates, no host paths).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from manifests import BODY_PARTS, SPLITS


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


def _occlusion_rule(curation: dict[str, Any]) -> str:
    """The occlusion flag in words, with the values this build used (as curation recorded them)."""
    rule = curation.get("occlusion") or {}
    if rule.get("test") and rule.get("order"):
        text = (
            f"The paper's rule finds an image **occluded** when its pose keypoints show {rule['test']}: "
            f"{', '.join(rule['order'])}. A keypoint is missing when its {rule.get('missing', 'confidence is low')}."
        )
    else:
        text = (
            "An image is **occluded** when its pose estimate misses at least three sequential keypoints "
            "(paper, section 4); this build did not record its rule parameters."
        )
    if rule.get("rule") == "coco18":
        text += " This is the paper's rule in OpenPose's COCO-18 order (neck = midpoint of the shoulders)."
    flag = rule.get("flag") or {}
    if flag.get("flag") == "learned":
        text += "\n\n" + _learned_flag(flag)
    elif rule.get("test"):
        text += " **This build flagged images by that rule** (`--occlusion-flag paper`)."
    text += (
        "\n\nKeypoints come "
        f"from: `{json.dumps(curation.get('keypoints', 'not recorded'), sort_keys=True)}`. Flags corrected "
        "in manual review carry the source `review` in `private/images.parquet`."
    )
    no_person = curation.get("no_person")
    if isinstance(no_person, dict):
        policy, n = no_person.get("policy"), no_person.get("crops", 0)
        what = (
            "kept and flagged occluded (finding nobody is itself evidence of heavy occlusion; source "
            "`no-person` in `private/images.parquet`)"
            if policy == "occluded"
            else "excluded from the benchmark (status `no_person`)"
        )
        text += f"\n\nCrops where the pose model found nobody (`--no-person {policy}`): {n:,}, {what}."
    elif no_person:
        text += f"\n\nCrops where the pose model found nobody: `--no-person {no_person}`."
    return text


def _learned_flag(flag: dict[str, Any]) -> str:
    """A learned flag's provenance: which file, its version and digest, its threshold and how it was
    chosen, and its cross-validated rates on what it was fitted on."""
    op = flag.get("operating_point") or {}
    origin = "bundled with opreid" if flag.get("bundled") else "a flag file given to this build"
    lines = [
        f"**This build flagged images with a learned flag**: `{flag.get('name')}` version "
        f"{flag.get('version')} (`{flag.get('file')}`, {origin}; sha256 `{flag.get('sha256')}`, kept in "
        f"`private/occlusion_flag.json`). It is a logistic regression over what the pose model found "
        f"(keypoint confidences, missing body parts, the person box against the crop, the keypoints' "
        f"vertical extent, the number of people), and an image is occluded when its P(occluded) is at "
        f"least **{float(flag.get('threshold', 0)):.4f}**. The threshold was chosen by "
        f"{op.get('folds', '?')}-fold cross-validation on the flag's fitting data for at most "
        f"{op.get('max_holistic_flagged', '?')} of holistic crops flagged ({op.get('rule', '')}). "
        "The rule above is still recorded per image as evidence (`longest_missing_run`, `missing_parts`).",
    ]
    cv = (flag.get("cv") or {}).get("sources") or []
    if cv:
        lines.append(
            f"\nCross-validated rates on the fitting data ({(flag.get('cv') or {}).get('method', '')}):\n\n"
            + table(
                [
                    "labelled set",
                    "occluded",
                    "occluded flagged (95% CI)",
                    "holistic",
                    "holistic flagged (95% CI)",
                ],
                [
                    [
                        r["name"],
                        r["occluded"],
                        _share(r["occluded_flagged"], r.get("occluded_ci")),
                        r["holistic"],
                        _share(r["holistic_flagged"], r.get("holistic_ci")),
                    ]
                    for r in cv
                ],
            )  # fmt: skip
        )
    return "\n".join(lines)


def _share(value: float, ci: list[float] | None) -> str:
    low, high = ci or (value, value)
    return f"{100 * value:.1f}% ({100 * low:.1f}-{100 * high:.1f}%)"


def _faces(curation: dict[str, Any]) -> str:
    """Exactly which face detectors ran, a warning when no face model did, and the parameters."""
    faces = curation.get("faces")
    if not faces:
        return "The face masking parameters were not recorded for this build."
    parts = []
    if "detector_count" in faces:
        items = []
        for m in faces.get("models") or []:
            origin = ", bundled with opreid (MIT licence)" if m.get("bundled") else ""
            items.append(
                f"- `{m.get('detector')}`: model `{m.get('model')}` (sha256 `{m.get('sha256')}`{origin}), "
                f"faces scoring at least {m.get('score')} on crops upscaled to {faces.get('upscale_to')} px, "
                f"boxes enlarged {faces.get('enlarge')}x;"
            )
        if "pose-head" in (faces.get("detectors") or []):
            items.append(
                f"- `pose-head`: a box around {faces.get('head_box') or 'the head from the pose keypoints'}."
            )
        parts.append(
            f"Face detectors that ran on every released image ({faces['detector_count']}):\n\n"
            + "\n".join(items)
        )
        if faces.get("head_box_only"):
            parts.append(
                "**Warning: no face detector model ran for this build (`--face-model none`).** Faces were "
                "masked by the pose head box alone, which misses every face the pose model does not see "
                "(a person it did not detect, a head whose keypoints it was unsure of). Check the images "
                "before releasing them."
            )
        parts.append(
            "`private/images.parquet` records for each image how many detectors ran on it "
            "(`face_detectors`); `opreid validate` fails when a released image had fewer than listed here."
        )
    parts.append(f"Parameters of this build: `{json.dumps(faces, sort_keys=True)}`.")
    return "\n\n".join(parts)


def render_card(card: CardInputs, *, public: bool = False) -> str:
    """The card of the release, or (`public`) of the participants' package: the same datasheet without
    the split seed (with the source images, the seed would rebuild the private ground truth) and with
    the package's own distribution and checking notes."""
    c, split_params = card.counts, card.parameters.get("split", {})
    curation = card.parameters.get("curation", {}) or {}
    rules = split_params.get("rules", {})
    composition = table(
        ["split", "identities", "images", "occluded images"],
        [[s, c[s]["ids"], c[s]["images"], c[s]["occluded"]] for s in SPLITS],
    )
    tva = table(
        ["number", "target", "achieved"],
        [[k, v.get("target"), v.get("achieved")] for k, v in card.target_vs_achieved.items()],
    )
    hist = table(
        ["body part", *SPLITS],
        [[part, *(card.histograms.get(s, {}).get(part, 0) for s in SPLITS)] for part in BODY_PARTS],
    )
    pool = table(["pool", "count"], sorted(card.eligibility.items()))
    preset = split_params.get("preset")
    scale = split_params.get("scale")
    t_lo, t_hi = rules.get("train_images_per_id", [5, 20])
    do, dh = rules.get("distractor_occluded", [1, 3]), rules.get("distractor_holistic", [1, 3])
    frac = rules.get("train_occluded_fraction", 0.15)
    g = c["gallery"]
    if public:
        built = (
            f"Built by `opreid build-split` (opreid {card.tool_version}), preset `{preset}`, scale {scale}."
        )
        checks = (
            "This is the participants' package written by `opreid release pack`: `dataset.json` holds\n"
            "the sha256 of every file in it, and `opreid validate --public .` checks it (checksums, no\n"
            "identity in any public file, opaque names, no image metadata). `SUBMITTING.md` says how to\n"
            "submit; `opreid check FILE --data .` checks a submission offline."
        )
    else:
        built = f"Built by `opreid build-split` (opreid {card.tool_version}), seed {card.seed}, preset `{preset}`, scale {scale}."
        checks = (
            "Machine-readable details, parameters and the sha256 of every file are in `dataset.json`;\n"
            "`opreid validate` (run by the host: it needs `private/`) checks every invariant below."
        )
    if public:
        distribution = (
            "This package holds `images/`, `train.parquet`, `query.parquet`, `gallery.parquet`, `README.md`,\n"
            "`croissant.json`, `dataset.json`, `sample_submission.npy` (a valid submission of the right shape and order, all\n"
            "zeros) and `SUBMITTING.md`. The ground truth, the source map and the per-image evidence stay\n"
            "with the benchmark host, who scores submissions against them."
        )
        maintenance = (
            "The host keeps the build's parameters and seed, and can rebuild this release byte for byte\n"
            "from the same source images. Report problems to the benchmark maintainers."
        )
    else:
        distribution = (
            "Participants receive `images/`, `train.parquet`, `query.parquet`, `gallery.parquet`,\n"
            "`README.md`, `croissant.json` (Croissant metadata of these files) and `dataset.json`. `private/`\n"
            "(ground truth, the source map, per-image evidence) stays with the benchmark host; the scorer reads\n"
            "`private/ground_truth.parquet`. `opreid export . --format market1501 -o DIR` writes a Market-1501\n"
            "folder layout for fast-reid and torchreid users (it needs the private ground truth);\n"
            "`opreid export . --format hf -o DIR` writes Parquet shards that Hugging Face `datasets.load_dataset`\n"
            "reads (without the private ground truth)."
        )
        maintenance = (
            "Rebuild with the parameters in `dataset.json` and the same seed to reproduce this release byte for\n"
            "byte from the same source images (in any order). Report problems to the benchmark maintainers;\n"
            "corrections to occlusion flags go through the review file of `opreid curate` and a new build."
        )
    head_only = bool((curation.get("faces") or {}).get("head_box_only"))
    masked_note = (
        "Faces are masked by the pose head box alone (see Face masking)" if head_only else "Faces are masked"
    )
    return f"""# OPReID-protocol occluded person re-identification benchmark

{built}
{checks}

## Motivation

Occluded person re-identification: retrieve images of the same person across cameras when the
query, and often the gallery, shows the person partly hidden (carts, racks, other people). The
split follows the OPReID protocol (Yan et al., "Occluded Person Re-Identification with
Single-scale Global Representations", section 4) so that models are evaluated on occluded-to-mixed matching rather than on one
monotonous occluder.

## Composition

{composition}

- **Train**: {c["train"]["ids"]:,} identities, {t_lo}-{t_hi} images each, about {frac:.0%} occluded;
  pids remapped to 0..{max(c["train"]["ids"] - 1, 0)}; file names carry the remapped pid and camera.
- **Query**: occluded images only; {c["query"].get("two_query_ids", 0):,} identities have two query images (from one camera).
- **Gallery**: for each query identity exactly one occluded and one holistic image, both from
  cameras other than its query images' ({g.get("query_match_images", 0):,} images); plus
  {g.get("distractor_ids", 0):,} distractor identities with {do[0]}-{do[1]} occluded and {dh[0]}-{dh[1]} holistic images each
  ({g.get("distractor_images", 0):,} images).
- Train and test identities are disjoint; no image appears twice.
- Query and gallery files have opaque names (random ids from the seed); `query.parquet` and
  `gallery.parquet` hold image_id, path, camid only, ordered by image_id. Their row order defines
  the rows and columns of a submission.

Target vs achieved (preset numbers times the scale; the paper's totals do not all follow from its
per-identity rules, so the rules are kept and the difference is shown):

{tva}

Occluded images per split by missing body part (one image can miss several parts):

{hist}

Source pool after curation:

{pool}

## Collection process

Pedestrian crops with person and camera ids (Market-1501 style names, per-identity folders or an
index file) were curated by `opreid curate`: unreadable images and exact duplicates are recorded
and left out; pose keypoints are estimated (or read from a keypoints file); every image gets an
occlusion decision. Per-image evidence (keypoints, detections, occlusion decision and source, face
boxes, mask method, status) is kept in `private/images.parquet`.

## Preprocessing

### Occlusion rule

{_occlusion_rule(curation)}

### Face masking

Every released image was masked wherever a face detector found a face or the pose keypoints
showed a head; the default mask is a solid fill of an enlarged box (blur can be reversed and is
not for public releases). Released images are copied byte for byte from the masked crops and carry
no EXIF metadata.

{_faces(curation)}

## Uses

Training (train split) and evaluating (query vs gallery, Market-1501 protocol: gallery images of
the query's identity from the query's camera are ignored) occluded person re-identification
models, and reporting occluded / holistic breakdowns. Not for identifying, tracking or profiling
real people, and not for any use that links images to a named person.

## Distribution

{distribution}

## Maintenance

{maintenance}

## Personal information

The images show people filmed in public or semi-public spaces. {masked_note}; no names or other
personal attributes are stored. Person ids are arbitrary numbers: train pids are remapped, and
test images have random ids that say nothing about identity, camera order or source file. The
mapping to source images exists only in `private/release_map.parquet` and must not be shared.
Bodies, clothing and gait remain visible and can still identify a person to someone who knows
them: keep the data to research use and honour removal requests by rebuilding without the
affected source images.
"""
