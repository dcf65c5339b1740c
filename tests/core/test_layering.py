"""The library never imports ComfyUI, the node pack or the training CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import context_forcing_core

FORBIDDEN = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "server", "nodes", "training"}


def test_core_imports_neither_comfy_nor_nodes_nor_training():
    root = Path(context_forcing_core.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert len(list(root.rglob("*.py"))) > 10
    assert offenders == []
