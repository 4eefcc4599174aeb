"""CLI: `opreid curate`, `opreid review`, `opreid occlusion calibrate`.

`curate_options` and `config_from_options` are shared with `opreid build-split`, which runs the
same curation before its split, so both commands take exactly the same curation options. Defaults
and choices come from `CurateConfig` and the library's constants.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from manifests import DatasetLayout, progress_enabled, progress_option
from opreid_builder.curation.config import NO_PERSON_CHOICES, CurateConfig
from opreid_builder.curation.engines import ENGINES, RAY_EXTRA
from opreid_builder.curation.faces import DETECTORS, NO_FACE_MODEL, detector_summary
from opreid_builder.curation.flag_fitting import DEFAULT_FOLDS, DEFAULT_MAX_HOLISTIC_FLAGGED
from opreid_builder.curation.logistic import DEFAULT_L2
from opreid_builder.curation.masking import MASK_METHODS
from opreid_builder.curation.occlusion import RULES
from opreid_builder.curation.occlusion_flag import DEFAULT_FLAG
from opreid_builder.curation.review import DEFAULT_BAND, ONLY_CHOICES, ORDER_CHOICES
from opreid_builder.curation.sources import LAYOUTS

_D = CurateConfig()
show_progress = progress_enabled


def _apply(f: Callable, options: list[Callable]) -> Callable:
    for option in reversed(options):
        f = option(f)
    return f


def pose_options(f: Callable) -> Callable:
    """The options that choose and run the keypoint source (curate, calibrate, import)."""
    return _apply(f, [
        click.option("--pose-model", type=click.Path(dir_okay=True, path_type=str), default=_D.pose_model,
                     help="Ultralytics YOLO-pose weights (.pt, .onnx, ...); default $OPREID_POSE_MODEL. Never downloaded."),
        click.option("--keypoints", type=click.Path(dir_okay=False, path_type=str), default=_D.keypoints,
                     help="Precomputed keypoints (keypoints.parquet: file, 51 floats) instead of a pose model."),
        click.option("--device", default=_D.device, help="Inference device for the pose model (cpu, 0, cuda:0, ...)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=_D.batch_size, show_default=True,
                     help="Crops per pose batch."),
        click.option("--imgsz", type=click.IntRange(min=32), default=_D.imgsz,
                     help="Pose model input size (default: the model's own)."),
        click.option("--half/--no-half", default=_D.half, show_default=True, help="Half-precision pose inference."),
        click.option("--person-conf", type=click.FloatRange(0, 1), default=_D.person_conf, show_default=True,
                     help="Minimum person detection score."),
        click.option("--workers", type=click.IntRange(min=0), default=_D.workers, show_default=True,
                     help="Local engine: threads per light stage (decode, mask, write); 0 runs all stages in order on one thread."),
    ])  # fmt: skip


def _no_person_option(help_text: str) -> Callable:
    return click.option("--no-person", type=click.Choice(NO_PERSON_CHOICES), default=_D.no_person,
                        show_default=True, help=help_text)  # fmt: skip


_RULE_OPTIONS = [
    click.option("--occlusion-flag", default=_D.occlusion_flag, metavar="paper|learned|FILE",
                 help=f"Occlusion flag: the paper's rule (paper: --rule, --kpt-conf, --min-run), the learned flag "
                      f"bundled with opreid (learned), or a flag file `opreid occlusion fit` wrote. Default: "
                      f"{DEFAULT_FLAG} with a pose model, paper with --keypoints."),
    click.option("--rule", type=click.Choice(RULES), default=_D.rule, show_default=True,
                 help="Occlusion rule: keypoint order for the run test (coco18 = the paper's OpenPose order), or count."),
    click.option("--kpt-conf", type=click.FloatRange(0, 1), default=_D.kpt_conf, show_default=True,
                 help="A keypoint below this confidence (or outside the crop) is missing."),
    click.option("--min-run", type=click.IntRange(min=1), default=_D.min_run, show_default=True,
                 help="Occluded when this many consecutive keypoints are missing (count rule: this many in all)."),
]  # fmt: skip
_FACE_OPTIONS = [
    click.option("--face-detector", "face_detectors", multiple=True, type=click.Choice(DETECTORS),
                 help="Face detector(s) to use (repeatable; default: every available one, union of boxes)."),
    click.option("--face-model", "face_models", multiple=True, type=click.Path(dir_okay=False, path_type=str),
                 help="Face detector model file (repeatable): YuNet if its name contains 'yunet', else an "
                      "insightface SCRFD .onnx; default $OPREID_FACE_MODEL, else the bundled YuNet (MIT). "
                      f"'{NO_FACE_MODEL}' switches face detection models off (pose head boxes only; warns)."),
    click.option("--insightface-root", type=click.Path(file_okay=False, path_type=str),
                 default=_D.insightface_root,
                 help="insightface model root searched for an SCRFD model (default ~/.insightface)."),
    click.option("--face-score", type=click.FloatRange(0, 1), default=_D.face_score, show_default=True,
                 help="Minimum face detection score."),
    click.option("--face-upscale", type=click.IntRange(min=32), default=_D.face_upscale, show_default=True,
                 help="Upscale crops to this long side (px) before face detection."),
    click.option("--face-mask", type=click.Choice(MASK_METHODS), default=_D.face_mask, show_default=True,
                 help="How faces are masked (blur can be reversed: not for public releases)."),
    click.option("--face-enlarge", type=click.FloatRange(min=1.0), default=_D.face_enlarge, show_default=True,
                 help="Detector boxes are enlarged by this factor before masking."),
    click.option("--head-enlarge", type=click.FloatRange(min=1.0), default=_D.head_enlarge, show_default=True,
                 help="Size of the pose head box relative to the head keypoints' span."),
    click.option("--jpeg-quality", type=click.IntRange(1, 100), default=_D.jpeg_quality, show_default=True,
                 help="JPEG quality of the masked crops."),
]  # fmt: skip


_ENGINE_OPTIONS = [
    click.option("--engine", type=click.Choice(ENGINES), default=_D.engine, show_default=True,
                 help=f"Who runs the stages: threads here, or Ray Data (pip install '{RAY_EXTRA}'). "
                      "Both give byte-identical outputs and share the cache."),
    click.option("--ray-address", default=_D.ray_address, metavar="ADDR",
                 help="Ray cluster to join (with --engine ray); default: start a local one."),
    click.option("--pose-actors", type=click.IntRange(min=1), default=_D.pose_actors, show_default=True,
                 help="Pose model workers (Ray actors; one model each)."),
    click.option("--pose-gpus", type=click.FloatRange(min=0), default=_D.pose_gpus,
                 help="GPUs per pose actor (Ray); default 1 when --device is a GPU, else 0."),
    click.option("--face-actors", type=click.IntRange(min=1), default=_D.face_actors, show_default=True,
                 help="Face detector workers (Ray actors; one set of models each)."),
    click.option("--shard-size", type=click.IntRange(min=1), default=_D.shard_size, show_default=True,
                 help="Crops per cached shard, on average (shards are cut by content)."),
]  # fmt: skip


def occlusion_rule_options(f: Callable) -> Callable:
    """--rule, --kpt-conf, --min-run: the occlusion rule applied to the keypoints."""
    return _apply(f, _RULE_OPTIONS)


def face_options(f: Callable) -> Callable:
    """The face detection and masking options (curate, build-split, import --mask-faces)."""
    return _apply(f, _FACE_OPTIONS)


def curate_options(f: Callable) -> Callable:
    """Add every curation option to a click command (used by `curate` and `build-split`)."""
    return pose_options(_apply(f, [
        click.option("--layout", type=click.Choice(LAYOUTS), default=_D.layout, show_default=True,
                     help="How RAW names identities: Market-1501 names, one folder per identity, or an index file."),
        *_RULE_OPTIONS,
        _no_person_option("Crops where pose finds nobody: keep them flagged occluded (finding nobody is evidence "
                          "of heavy occlusion), or exclude them from the benchmark."),
        click.option("--min-size", type=click.IntRange(min=1), default=_D.min_size, show_default=True,
                     help="Crops with a side shorter than this (pixels) are excluded."),
        click.option("--max-pixels", type=click.IntRange(min=1), default=_D.max_pixels, show_default=True,
                     help="Crops of more pixels (width x height) are unreadable: too large, refused from the "
                          "header before decoding."),
        *_FACE_OPTIONS,
        click.option("--corrections", type=click.Path(dir_okay=False, path_type=str), default=_D.corrections,
                     help="Review corrections (CSV/Parquet: image_id, occluded[, reviewer, reviewed_at]) "
                          "overriding the machine flags."),
        *_ENGINE_OPTIONS,
    ]))  # fmt: skip


def config_from_options(**kwargs: Any) -> CurateConfig:
    """A CurateConfig from a command's keyword arguments (keys that are not curation options are ignored)."""
    names = {f.name for f in fields(CurateConfig)}
    values = {k: v for k, v in kwargs.items() if k in names}
    for key in ("face_detectors", "face_models"):
        if key in values:
            values[key] = tuple(values[key] or ())
    return CurateConfig(**values)


def _print_counts(result, out: Path) -> None:
    c = result.counts
    click.echo(
        f"{c['images']} crops: {c['status_ok']} ok ({c['occluded']} occluded, {c['holistic']} holistic), "
        f"{c['status_unreadable']} unreadable, {c['status_duplicate']} duplicate, {c['status_excluded']} excluded, "
        f"{c['status_no_person']} no person; {c['junk']} junk (pid -1) dropped, {c['refused']} refused"
    )
    flag, no_person = result.curation["occlusion"]["flag"], result.curation["no_person"]
    which = (
        "the paper's rule"
        if flag["flag"] == "paper"
        else (
            f"learned flag {flag['name']} v{flag['version']} ({flag['file']}, threshold {flag['threshold']:.3f})"
        )
    )
    click.echo(
        f"occlusion flag: {which}; {no_person['crops']} crops without a person found ({no_person['policy']})"
    )
    faces = result.curation["faces"]
    click.echo(
        f"faces masked in {c['with_face']} crops, none found in {c['without_face']} "
        f"(detectors: {detector_summary(faces)})"
    )
    if result.curation.get("corrections"):
        k = result.curation["corrections"]
        click.echo(f"review corrections: {k['applied']} applied, {k['unmatched']} unmatched")
    layout = DatasetLayout(out)
    click.echo(f"wrote {layout.images_table} and {layout.masked}/")


@click.command("curate")
@click.argument("raw", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (the dataset root).")  # fmt: skip
@curate_options
@click.option("--json", "as_json", is_flag=True, help="Print counts and parameters as JSON on stdout.")
@progress_option
def curate(raw: Path, out: Path, as_json: bool, progress: bool, **options: Any) -> None:
    """Run the curation stages alone: read, pose, occlusion flags, face masking.

    Writes OUT/private/images.parquet (one row per raw crop) and the masked crops in OUT/masked/.
    Rerunning skips finished work (cached in OUT/cache).
    """
    from opreid_builder.curation.pipeline import curate as run_curate

    config = config_from_options(**options)
    result = run_curate(raw, out, config, progress=show_progress(progress))
    if as_json:
        click.echo(json.dumps(result.curation, indent=2, sort_keys=True))
    else:
        _print_counts(result, out)


@click.command("review")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--page-size", type=click.IntRange(min=1), default=200, show_default=True, help="Crops per page."
)
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Review a random sample of N crops (seeded by --seed) instead of all of them.",
)
@click.option(
    "--only",
    type=click.Choice(ONLY_CHOICES),
    default=None,
    help="Review only these crops: flagged (occluded), holistic, unflagged, or where the face detectors disagree.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --sample.")
@click.option("--order", type=click.Choice(ORDER_CHOICES), default="file", show_default=True,
              help="Crops as curated (file), or the most doubtful first: no person found, then P(occluded) "
                   "nearest the flag's threshold (doubt).")  # fmt: skip
@click.option(
    "--band",
    type=click.FloatRange(0, 10),
    default=DEFAULT_BAND,
    show_default=True,
    help="Half-width of the uncertain band, in log-odds around the threshold (1.0: P from 0.50 to 0.88 "
    "around a 0.73 threshold).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=_D.workers,
    show_default=True,
    help="Threads drawing thumbnails.",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON on stdout.")
@progress_option
def review(out: Path, page_size: int, sample: int | None, only: str | None, seed: int, order: str, band: float,
           workers: int, as_json: bool, progress: bool | None) -> None:  # fmt: skip
    """Write a static review site of the occlusion flags (OUT/review/index.html) and a corrections CSV.

    Open the page from disk: filter, click crops to toggle their flags, and download corrections.csv
    (with your name and the time of each edit) for `build-split --corrections`.
    """
    from opreid_builder.curation.review import band_limits, write_review

    result = write_review(
        out, page_size, sample=sample, only=only, seed=seed, workers=workers, progress=show_progress(progress),
        order=order, band=band,
    )  # fmt: skip
    if as_json:
        click.echo(
            json.dumps(
                {
                    "items": result.items,
                    "pages": result.pages,
                    "html": str(result.html),
                    "corrections_template": str(result.csv),
                    "thumbnails_written": result.thumbnails,
                    "site_bytes": result.site_bytes,
                    "order": result.order,
                    "threshold": result.threshold,
                    "band": result.band,
                    "uncertain": result.uncertain,
                    "no_person": result.no_person,
                }  # fmt: skip
            )
        )
        return
    click.echo(f"{result.items} crops on {result.pages} page(s), {result.order} order: open {result.html}")
    if result.threshold is not None:
        lo, hi = band_limits(result.threshold, result.band)
        click.echo(
            f"{result.uncertain} crops in the uncertain band (P(occluded) {lo:.2f} to {hi:.2f}); "
            f"{result.no_person} where pose found nobody"
        )
    else:
        click.echo(
            f"{result.no_person} crops where pose found nobody (the paper's rule gives no P(occluded))"
        )
    click.echo(
        "click crops to toggle their flags, then download corrections.csv and pass it as --corrections"
    )


@click.group("occlusion")
def occlusion() -> None:
    """Occlusion flag tools: calibrate rules and flags on labelled crops, fit a learned flag."""


_DIR = click.Path(exists=True, file_okay=False, path_type=Path)
_OPERATING_OPTIONS = [
    click.option("--max-holistic-flagged", type=click.FloatRange(0, 1, max_open=True),
                 default=DEFAULT_MAX_HOLISTIC_FLAGGED, show_default=True,
                 help="Target share of holistic crops (with a person) flagged, on average over the labelled sets: "
                      "the threshold is chosen for it by cross-validation."),
    click.option("--folds", type=click.IntRange(min=2), default=DEFAULT_FOLDS, show_default=True,
                 help="Cross-validation folds (a person's crops, or a synthetic identity, stay in one fold)."),
    click.option("--seed", type=int, default=0, show_default=True, help="Seed of the folds."),
]  # fmt: skip


@occlusion.command("calibrate")
@click.option("--occluded", "occluded_dir", required=True, type=_DIR,
              help="Folder of crops a person judged occluded.")  # fmt: skip
@click.option("--holistic", "holistic_dir", required=True, type=_DIR,
              help="Folder of crops a person judged holistic.")  # fmt: skip
@pose_options
@click.option("--no-person", type=click.Choice(NO_PERSON_CHOICES), default=NO_PERSON_CHOICES[0], show_default=True,
              help="Crops where pose finds nobody: count as flagged (as curation does), or leave out of the shares.")  # fmt: skip
@lambda f: _apply(f, _OPERATING_OPTIONS)
@click.option("--top", type=click.IntRange(min=1), default=None, help="Print only the best N rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON on stdout.")
@progress_option
def calibrate(
    occluded_dir: Path, holistic_dir: Path, pose_model: str | None, keypoints: str | None, device: str | None,
    batch_size: int, imgsz: int | None, half: bool, person_conf: float, workers: int, no_person: str,
    max_holistic_flagged: float, folds: int, seed: int, top: int | None, as_json: bool, progress: bool,
) -> None:  # fmt: skip
    """Score every occlusion rule x --kpt-conf (0.3-0.7) x --min-run (2-4), and with a pose model the
    learned flags, on two labelled folders.

    Prints the share of occluded crops flagged and of holistic crops flagged with 95% intervals, best
    trade-offs (flagged occluded minus flagged holistic) first, and the cross-validated rates of
    picking a rule on these crops. Pose runs once.
    """
    from opreid_builder.curation.calibration import calibrate as run_calibrate
    from opreid_builder.curation.calibration import format_table
    from opreid_builder.curation.pose import keypoint_source

    source = keypoint_source(pose_model, keypoints, device, imgsz, half, batch_size, person_conf)
    report = run_calibrate(
        occluded_dir, holistic_dir, source, no_person=no_person, workers=workers,
        progress=show_progress(progress), max_holistic_flagged=max_holistic_flagged, folds=folds, seed=seed,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(format_table(report, top))


@occlusion.command("fit")
@click.option("--occluded", "occluded_dirs", multiple=True, type=_DIR,
              help="Folder of crops a person judged occluded (repeatable; the n-th pairs with the n-th --holistic).")  # fmt: skip
@click.option("--holistic", "holistic_dirs", multiple=True, type=_DIR,
              help="Folder of crops a person judged holistic (repeatable).")  # fmt: skip
@click.option("--name", "names", multiple=True,
              help="Name of each folder pair in the flag file and the tables (default: their common parent folder).")  # fmt: skip
@click.option("--synth", "synth_dirs", multiple=True, type=_DIR,
              help="A folder `opreid synth` wrote (repeatable): its truth.parquet labels the crops; all "
                   "synthetic folders together are one labelled set.")  # fmt: skip
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The flag file to write (JSON), for --occlusion-flag FILE.")  # fmt: skip
@pose_options
@lambda f: _apply(f, _OPERATING_OPTIONS)
@click.option("--cut-holistic/--no-cut-holistic", default=False, show_default=True,
              help="Add a cut copy of every holistic crop (its left, right, top or bottom part) as an occluded "
                   "crop, so that a person cut by the frame's edge is flagged (pose runs on the copies too). "
                   "The bundled flag was fitted with it; on one small labelled set it costs hit rate.")  # fmt: skip
@click.option(
    "--l2",
    type=click.FloatRange(min=0),
    default=DEFAULT_L2,
    show_default=True,
    help="L2 penalty of the logistic regression (on standardised features).",
)
@click.option(
    "--flag-name", default="learned", show_default=True, help="The flag's name in its file and the card."
)
@click.option(
    "--flag-version", default="1", show_default=True, help="The flag's version in its file and the card."
)
@click.option("--json", "as_json", is_flag=True, help="Print the threshold and rates as JSON on stdout.")
@progress_option
def fit(
    occluded_dirs: tuple[Path, ...], holistic_dirs: tuple[Path, ...], names: tuple[str, ...],
    synth_dirs: tuple[Path, ...], out: Path, pose_model: str | None, keypoints: str | None, device: str | None,
    batch_size: int, imgsz: int | None, half: bool, person_conf: float, workers: int,
    max_holistic_flagged: float, folds: int, seed: int, cut_holistic: bool, l2: float, flag_name: str,
    flag_version: str, as_json: bool, progress: bool,
) -> None:  # fmt: skip
    """Fit a learned occlusion flag on labelled crops: a logistic regression over what the pose model
    finds, with the threshold chosen by cross-validation for --max-holistic-flagged.

    Prints the flag's nested cross-validated rates per labelled set with 95% intervals (the model and
    threshold chosen without each fold), and writes the flag file for `curate --occlusion-flag FILE`.
    """
    from opreid_builder.curation.flag_fitting import (
        FolderPair,
        fit_flag,
        format_rates,
        labelled_data,
        pair_name,
    )
    from opreid_builder.curation.occlusion_flag import write_flag
    from opreid_builder.curation.pose import keypoint_source
    from opreid_builder.errors import CurationError

    if len(occluded_dirs) != len(holistic_dirs):
        raise CurationError(
            f"give --occluded and --holistic in pairs ({len(occluded_dirs)} --occluded, {len(holistic_dirs)} --holistic)"
        )
    if names and len(names) != len(occluded_dirs):
        raise CurationError(f"give one --name per folder pair ({len(names)} for {len(occluded_dirs)} pairs)")
    pairs = [
        FolderPair(o, h, names[i] if names else pair_name(o, h))
        for i, (o, h) in enumerate(zip(occluded_dirs, holistic_dirs, strict=True))
    ]
    source = keypoint_source(pose_model, keypoints, device, imgsz, half, batch_size, person_conf)
    data = labelled_data(
        pairs, list(synth_dirs), source, workers, show_progress(progress), cut_holistic, seed
    )
    report = fit_flag(
        data, max_holistic_flagged=max_holistic_flagged, folds=folds, seed=seed, l2=l2, name=flag_name,
        version=flag_version, keypoints=source.describe(),
    )  # fmt: skip
    flag = write_flag(report.body, out)
    if as_json:
        click.echo(json.dumps({
            "file": str(out), "sha256": flag.sha256, "threshold": report.threshold,
            "cv": [r.as_dict() for r in report.cv], "in_sample": [r.as_dict() for r in report.in_sample],
        }, indent=2))  # fmt: skip
        return
    click.echo(
        format_rates(report.cv, f"Nested {folds}-fold cross-validation (threshold chosen without the fold):")
    )
    click.echo("")
    click.echo(
        format_rates(report.in_sample, f"In-sample, at the threshold {report.threshold:.4f} (optimistic):")
    )
    click.echo(f"\nwrote {out} (sha256 {flag.sha256[:16]}); use it with --occlusion-flag {out}")
