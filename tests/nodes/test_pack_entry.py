"""The pack's root ``__init__.py`` outside ComfyUI: importable without a package, whatever the folder is called."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

ROOT_INIT = Path(__file__).resolve().parents[2] / "__init__.py"


def test_root_init_loads_as_a_plain_module_even_with_folder_paths_present(monkeypatch):
    """What pytest does when the clone's folder name is not an identifier (e.g. context-forcing-comfyui)."""
    monkeypatch.setitem(sys.modules, "folder_paths", types.ModuleType("folder_paths"))
    spec = importlib.util.spec_from_file_location("__init__", ROOT_INIT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.WEB_DIRECTORY == "./web" and module.__all__ == ["WEB_DIRECTORY"]
