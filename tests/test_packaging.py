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
    skip = (
        ".venv",
        "build",
        ".git",
        "demo-out",
        "runs",
        "__pycache__",
        ".pytest_cache",
        ".ruff_cache",
        ".agents",
    )
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*skip, "*.egg-info"))
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
        if p.suffix in {".html", ".yaml", ".css", ".js", ".onnx"}
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
