"""The wheel carries everything the code reads at run time (templates, presets), and only the packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_templates_and_presets(tmp_path):
    # Build from a clean copy: a stale build/ folder in the checkout would hide a missing glob.
    src = tmp_path / "src"
    # Checkout-level folders (a run folder is named `runs` like the reid_model.runs package, so
    # these are skipped at the top only) and caches anywhere.
    top_level = {".venv", "build", ".git", "demo-out", "runs", ".agents"}
    anywhere = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info")

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(anywhere(folder, names))
        return skipped | (top_level & set(names) if Path(folder) == ROOT else set())

    shutil.copytree(ROOT, src, ignore=ignore)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("opreid-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    runtime_files = [
        p.relative_to(ROOT).as_posix()
        for pkg in ("manifests", "opreid_builder", "reid_model", "benchmarks")
        for p in (ROOT / pkg).rglob("*")
        if p.suffix in {".html", ".j2", ".yaml", ".css", ".js", ".onnx"}
        or p.name.startswith("LICENSE-")
        or (p.suffix == ".json" and p.parent.name == "models")
    ]
    assert runtime_files, "expected templates in the packages"
    assert (
        "opreid_builder/curation/models/face_detection_yunet.onnx" in runtime_files
    )  # the default face detector
    assert (
        "opreid_builder/curation/models/LICENSE-face_detection_yunet.txt" in runtime_files
    )  # and its MIT notice
    assert "opreid_builder/curation/models/occlusion_flag.json" in runtime_files  # the learned occlusion flag
    assert "opreid_builder/release/templates/dataset_card.md.j2" in runtime_files  # the release card
    assert "opreid_builder/public_datasets/templates/benchmark_card.md.j2" in runtime_files
    missing = [f for f in runtime_files if f not in names]
    assert not missing, f"not in the wheel: {missing}"
    presets = {p.name for p in (ROOT / "configs").glob("*.yaml")}
    shipped = {Path(n).name for n in names if "/share/opreid/configs/" in n}
    assert presets == shipped
    # Only the four packages: perf/, tests/, scripts/ and docs/ stay in the checkout.
    top = {n.split("/")[0] for n in names if not n.split("/")[0].startswith("opreid-")}
    assert top == {"manifests", "opreid_builder", "reid_model", "benchmarks", "opreid"}
    # Package data is declared, not guessed: setuptools finds no undeclared "package" folder.
    assert "absent from the `packages` configuration" not in proc.stderr + proc.stdout
