"""Training data: one episode interface (episodes.py) and adapters from each source to it."""
