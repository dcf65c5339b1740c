"""Give a checkpoint without learned absolute positions a zero position table, so it can be fine-tuned as a model
with ``WanConfig.position_grid`` and starts out computing exactly what it computed before.

    python -m tools.add_positions IN.safetensors OUT.safetensors [--grid 4 4]

The grid defaults to the ``toy`` preset's.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from context_forcing_core.models.config import toy
from context_forcing_core.models.loading import load_model, save_model
from context_forcing_core.models.wan import WanModel


def add_positions(model: WanModel, grid: tuple[int, int]) -> WanModel:
    """A float32 copy of ``model`` with a zero (h, w, dim) position table over ``grid`` (same outputs)."""
    if model.config.position_grid is not None:
        raise ValueError(f"the model already has learned positions over {model.config.position_grid}")
    out = WanModel(dataclasses.replace(model.config, position_grid=grid))
    missing, unexpected = out.load_state_dict({k: v.float() for k, v in model.state_dict().items()}, strict=False)
    if missing != ["pos_embedding"] or unexpected:
        raise ValueError(f"unexpected key difference: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        out.pos_embedding.zero_()
    return out.eval()


def main(argv: list[str] | None = None) -> None:
    """Read IN, write OUT with a zero position table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("dest")
    parser.add_argument("--grid", type=int, nargs=2, default=list(toy().position_grid))
    args = parser.parse_args(argv)
    save_model(add_positions(load_model(args.source, dtype=torch.float32), tuple(args.grid)), args.dest)
    print(f"wrote {args.dest}")


if __name__ == "__main__":
    main()
