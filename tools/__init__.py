"""Developer tools around a real ComfyUI (stdlib only, so they run under any Python)."""
