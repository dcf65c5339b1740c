"""Convert a workflow in ComfyUI's UI format (what the editor saves and the template browser loads) into the API
format that ``POST /prompt`` accepts, using the server's ``/object_info`` to know which inputs are widgets.
"""

from __future__ import annotations

from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UI_ONLY = {"Note", "MarkdownNote", "PrimitiveNode", "Reroute"}


def _is_widget(spec: list) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _has_control(spec: list) -> bool:
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return bool(options.get("control_after_generate"))


def to_api(workflow: dict, object_info: dict[str, Any]) -> dict[str, dict]:
    """API prompt {node id: {"class_type", "inputs"}} of a UI-format workflow.

    Widget values are read in the order of the node's inputs (required, then optional); a seed with
    ``control_after_generate`` is followed by its control value ("fixed", "randomize", ...), which is skipped.
    Muted and bypassed nodes (mode 2 / 4) and UI-only nodes are left out.

    Raises:
        ValueError: a node type the server does not know, or a link to a missing node.

    """
    links = {link[0]: link for link in workflow.get("links", [])}
    nodes = {n["id"]: n for n in workflow["nodes"] if n["type"] not in UI_ONLY and n.get("mode", 0) not in (2, 4)}
    prompt: dict[str, dict] = {}
    for node_id, node in nodes.items():
        info = object_info.get(node["type"])
        if info is None:
            raise ValueError(f"node {node_id}: the server has no node type {node['type']!r} (is its pack installed?)")
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info.get("input_order", {})
        names = [*order.get("required", info["input"].get("required", {})),
                 *order.get("optional", info["input"].get("optional", {}))]
        linked = {i["name"]: i["link"] for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values", []))
        inputs: dict[str, Any] = {}
        for name in names:
            spec = specs[name]
            if _is_widget(spec):
                if values:
                    value = values.pop(0)
                    if _has_control(spec) and values:
                        values.pop(0)
                    inputs[name] = value
            if name in linked:
                link = links[linked[name]]
                if link[1] not in nodes:
                    raise ValueError(f"node {node_id} input {name!r} is linked to missing node {link[1]}")
                inputs[name] = [str(link[1]), link[2]]
        prompt[str(node_id)] = {"class_type": node["type"], "inputs": inputs}
    return prompt
