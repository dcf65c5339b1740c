import assert from "node:assert/strict";
import test from "node:test";

import { installSummary, WIDGET } from "../../web/js/summary.js";

const doc = { createElement: (tag) => ({ tag, style: {}, value: "" }) };

function fakeNodeType(calls) {
  function NodeType() {
    this.widgets = [];
  }
  NodeType.prototype.onExecuted = function (message) {
    calls.push(message);
  };
  NodeType.prototype.addDOMWidget = function (name, type, element, options) {
    const widget = { name, type, element, options };
    this.widgets.push(widget);
    return widget;
  };
  return NodeType;
}

test("only nodes with a text output are patched", () => {
  const calls = [];
  const NodeType = fakeNodeType(calls);
  const original = NodeType.prototype.onExecuted;
  assert.equal(installSummary(NodeType, { name: "CF_LongRolloutSampler" }, doc), false);
  assert.equal(NodeType.prototype.onExecuted, original);
});

test("the summary text is shown in one read-only box, updated on every run", () => {
  const calls = [];
  const NodeType = fakeNodeType(calls);
  assert.equal(installSummary(NodeType, { name: "CF_SurprisalInspector" }, doc), true);
  const node = new NodeType();
  node.onExecuted({ text: ["80 chunks, 240 latent frames", "consolidated: 3"], images: [] });
  node.onExecuted({ text: ["second run"] });
  const boxes = node.widgets.filter((w) => w.name === WIDGET);
  assert.equal(boxes.length, 1);
  assert.equal(boxes[0].element.readOnly, true);
  assert.equal(boxes[0].element.value, "second run");
  assert.equal(calls.length, 2); // the original onExecuted still runs (image previews)
  assert.deepEqual(boxes[0].options, { serialize: false }); // not saved into workflow JSON
});

test("the loader's family and Streaming Decode's files are shown; a run without text adds no box", () => {
  for (const name of ["CF_LoadModel", "CF_StreamingDecode"]) {
    const calls = [];
    const NodeType = fakeNodeType(calls);
    assert.equal(installSummary(NodeType, { name }, doc), true);
    const node = new NodeType();
    node.onExecuted({ images: [{ filename: "clip_00001_.mp4" }], animated: [true] });
    assert.equal(node.widgets.length, 0);
    node.onExecuted({ text: ["Self-Forcing (file name 'self_forcing_dmd.pt' or its folder)."] });
    assert.equal(node.widgets[0].element.value, "Self-Forcing (file name 'self_forcing_dmd.pt' or its folder).");
    assert.equal(calls.length, 2);
  }
});
