"""ComfyUI adapters (thin V3 nodes over ``context_forcing_core``); built by the ComfyUI node-pack issue."""
