"""Training objectives: flow matching, DMD / contextual DMD and the student self-rollout."""
