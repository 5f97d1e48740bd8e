"""Structural rules of the code base (see ../shared/DESIGN.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "peluk"
LAYERS = ["nn", "models", "generation|pipelines|data|training|viz", "serve"]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_library_never_imports_transformers_or_serve():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        for name in _imports(path):
            top = name.split(".")[0]
            assert top not in ("transformers", "sentence_transformers"), f"{path} imports {name} (test-only oracle)"
            if rel[0] != "serve" and rel != ("cli.py",):  # the CLI is a front end, like the services
                assert not name.startswith("peluk.serve"), f"{path} imports {name}: the library never imports serve"


def test_layers_point_downward():
    """nn/ → models/ → generation, pipelines, data, training, viz → serve; nothing points upward."""
    def layer(part: str) -> int | None:
        for i, names in enumerate(LAYERS):
            if part in names.split("|"):
                return i
        return None

    for path in PACKAGE.rglob("*.py"):
        own = layer(path.relative_to(PACKAGE).parts[0])
        if own is None:
            continue
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] == "peluk" and len(parts) > 1:
                other = layer(parts[1])
                if path.name == "base.py" and name == "peluk.generation":
                    continue  # model.generate(): a lazy convenience, the one allowed upward reference
                assert other is None or other <= own, f"{path} (layer {own}) imports {name} (layer {other})"


def test_import_is_fast_and_lazy():
    code = ("import time, sys; t = time.perf_counter(); import peluk; dt = time.perf_counter() - t; "
            "print(dt, 'torch' in sys.modules, 'tokenizers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"], "import peluk must not import torch or tokenizers"
    assert float(out[0]) < 1.0
