"""What each masked crop held when curate wrote it (`cache/masked_digests.parquet`, kind
`masked_digests`), and the check that `masked/` still holds exactly that.

`masked/` is a plain folder a host can edit, and whatever it holds is copied into a release. So the
record is written with the crops, and a build from OUT's curated table as it stands
(`build-split --curated`) checks the crops it is about to release against it first: a raw crop
swapped in after curation is refused before anything is written. (`validate` checks the released
images against the same record afterwards.)
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from manifests import MASKED_DIGESTS, DatasetLayout, read_manifest, sha256_file, write_manifest


def write_masked_digests(layout: DatasetLayout, image_ids: pa.Array, digests: pa.Array) -> None:
    write_manifest(
        pa.table({"image_id": image_ids, "sha256": digests}), layout.masked_digests, MASKED_DIGESTS
    )


def changed_masked_crops(layout: DatasetLayout, image_ids: Sequence[str]) -> list[str]:
    """The crops among `image_ids` whose `masked/{image_id}.jpg` is not what curate wrote (or that the
    record does not know). Nothing is checked when there is no record (curation before it existed)."""
    if not layout.masked_digests.is_file():
        return []
    recorded = read_manifest(layout.masked_digests, MASKED_DIGESTS)
    wanted = dict(
        zip(recorded.column("image_id").to_pylist(), recorded.column("sha256").to_pylist(), strict=True)
    )
    changed = []
    for image_id in image_ids:
        path = layout.masked / f"{image_id}.jpg"
        if not path.is_file() or sha256_file(path) != wanted.get(image_id):
            changed.append(image_id)
    return changed
