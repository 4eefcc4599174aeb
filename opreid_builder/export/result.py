"""What an export wrote: the folder, its image counts and camera numbering, and its warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ExportResult:
    dest: Path
    images: dict[str, int]
    cameras: dict[int, int]  # release camid -> exported camera number
    warnings: list[str] = field(default_factory=list)
    contains_ground_truth: bool = True
