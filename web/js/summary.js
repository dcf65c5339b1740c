// Shows a pack node's text output inside the node (the frontend draws images, not text): the Surprisal Inspector's
// summary, the loader's recognised family, Streaming Decode's files or refusal.
// Pure logic, no imports, so Node's test runner can check it with a fake node type and document.

export const NODE_IDS = ["CF_SurprisalInspector", "CF_LoadModel", "CF_StreamingDecode"];
export const WIDGET = "cf_summary";

// Patch a node type's onExecuted so that message.text (the node's `ui` text) is shown in a read-only text box.
export function installSummary(nodeType, nodeData, doc) {
  if (!NODE_IDS.includes(nodeData?.name)) return false;
  const previous = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (message) {
    previous?.apply(this, arguments);
    if (message?.text) showSummary(this, message.text.join("\n"), doc);
  };
  return true;
}

export function showSummary(node, text, doc) {
  let widget = node.widgets?.find((w) => w.name === WIDGET);
  if (!widget) {
    const box = doc.createElement("textarea");
    box.readOnly = true;
    box.style.width = "100%";
    box.style.fontFamily = "monospace";
    box.style.fontSize = "11px";
    box.rows = 6;
    widget = node.addDOMWidget(WIDGET, "text", box, { serialize: false });
  }
  widget.element.value = text;
  return widget;
}
