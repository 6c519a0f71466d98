"""The known-answer vectors the repository carries in tests/vectors/ (see its README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VECTORS_DIR = Path(__file__).resolve().parents[1] / "vectors"


def load(name: str) -> dict[str, Any]:
    """The vector file ``name`` (for example ``matrix-identity.json``), parsed."""
    data: dict[str, Any] = json.loads((VECTORS_DIR / name).read_text(encoding="utf-8"))
    return data
