"""A synthetic long-video world with a ground-truth memory oracle: a camera panning over a wide procedural scene."""
