// ComfyUI frontend extension of the Context Forcing pack (served from WEB_DIRECTORY).
import { app } from "../../scripts/app.js";
import { installSummary } from "./js/summary.js";

app.registerExtension({
  name: "ContextForcing.TextOutputs",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    installSummary(nodeType, nodeData, document);
  },
});
