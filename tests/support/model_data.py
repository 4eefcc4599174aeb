"""The small synthetic OUT folder the model tests train on (train/query/gallery manifests + private
ground truth), built from `opreid_builder.synth.generator` crops with a deliberately simple split: half the
identities train, one query per test identity, gallery = its images from other cameras (the real
protocol is `opreid build-split`'s job)."""

from __future__ import annotations

import shutil
from pathlib import Path

import manifests
from manifests import DatasetLayout

SYNTH_IMAGES = (4, 6)


def build_model_dataset(
    root: Path, identities: int = 12, cameras: int = 3, per_id=SYNTH_IMAGES, seed: int = 0
) -> Path:
    """Synthetic crops (opreid_builder.synth.generator) -> a built dataset folder honouring the manifests contract."""
    from opreid_builder.synth.generator import SynthConfig, generate

    raw = root / "raw"
    generate(raw, SynthConfig(identities=identities, cameras=cameras, images_per_identity=per_id, seed=seed))
    truth = manifests.read_manifest(raw / "truth.parquet", manifests.SYNTH_TRUTH).to_pandas()
    truth = truth.sort_values("file").reset_index(drop=True)
    out = root / "out"
    layout = DatasetLayout(out)
    pids = sorted(truth["pid"].unique())
    train_ids = set(pids[: len(pids) // 2])
    train, query, gallery, gt = [], [], [], []
    remap = {p: i for i, p in enumerate(sorted(train_ids))}
    for pid, group in truth.groupby("pid", sort=True):
        if pid in train_ids:
            for row in group.itertuples():
                rel = f"images/train/{row.file}"
                train.append((Path(row.file).stem, rel, remap[pid], row.camid, bool(row.occluded), row.file))
            continue
        group = group.sort_values(["occluded", "file"], ascending=[False, True])
        first = group.iloc[0]
        others = group[group["camid"] != first["camid"]]
        if len(others):
            query.append((first, f"q{len(query):05d}"))
            rest = others
        else:
            rest = group
        for _, row in rest.iterrows():
            gallery.append((row, f"g{len(gallery):05d}"))
    for _image_id, rel, _pid, _camid, _occ, file in train:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw / file, out / rel)
    manifests.write_manifest(
        {
            "image_id": [t[0] for t in train],
            "path": [t[1] for t in train],
            "pid": [t[2] for t in train],
            "camid": [t[3] for t in train],
            "occluded": [t[4] for t in train],
        },
        layout.train,
        manifests.TRAIN,
    )
    for split, rows, schema in (("query", query, manifests.QUERY), ("gallery", gallery, manifests.GALLERY)):
        ids, paths, cams = [], [], []
        for row, image_id in rows:
            rel = f"images/{split}/{image_id}.jpg"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(raw / row["file"], out / rel)
            ids.append(image_id)
            paths.append(rel)
            cams.append(int(row["camid"]))
            gt.append((image_id, split, int(row["pid"]), int(row["camid"]), bool(row["occluded"])))
        manifests.write_manifest(
            {"image_id": ids, "path": paths, "camid": cams}, layout.manifest(split), schema
        )
    manifests.write_manifest(
        {k: [g[i] for g in gt] for i, k in enumerate(["image_id", "split", "pid", "camid", "occluded"])},
        layout.ground_truth,
        manifests.GROUND_TRUTH,
    )
    return out
