"""A toy long-video world with a ground-truth memory oracle: still pictures of scenes that come back after long gaps."""
