"""Context Forcing node pack for ComfyUI (the repository root is the pack folder).

ComfyUI imports this file; the nodes use the library ``context_forcing_core`` that sits beside it. The pack folder
is appended to ``sys.path`` (after ComfyUI's own modules, so a name like ``nodes`` still means ComfyUI's).
"""

import os
import sys

_PACK = os.path.dirname(os.path.abspath(__file__))
if _PACK not in sys.path:
    sys.path.append(_PACK)

WEB_DIRECTORY = "./web"
__all__ = ["WEB_DIRECTORY"]

# Inside ComfyUI (which imports this folder as a package) load the nodes. Elsewhere nothing: pytest imports this file
# too, as a plain module without a package when the folder's name is not an identifier (a clone called
# context-forcing-comfyui), possibly after a test has stubbed ``folder_paths``.
if "folder_paths" in sys.modules and __package__:
    from .nodes import comfy_entrypoint  # noqa: F401

    __all__ += ["comfy_entrypoint"]
