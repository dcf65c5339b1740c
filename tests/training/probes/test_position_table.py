"""The position-table probe runs end to end and prints one table row per evaluation; it reads Stage 2's settings."""

from __future__ import annotations

from training.probes import position_table as positions


def test_both_variants_train_and_are_scored(capsys):
    positions.main(["--steps", "1", "--every", "1", "--batch", "2", "--rounds", "1"])
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| step | RoPE only") and "learned positions" in table[0]
    assert [row.split(" | ")[0] for row in table[1:]] == ["| 0", "| 1"]
    scores = [float(x) for row in table[1:] for cell in row.strip("| ").split(" | ")[1:] for x in cell.split(" / ")]
    assert len(scores) == 8 and all(s > 0 for s in scores)  # untrained: neither places a picture exactly
