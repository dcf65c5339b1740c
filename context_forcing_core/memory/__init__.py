"""Slow-Fast Memory: cache state, consolidation, position rules, baseline presets and the decision trace."""
