"""Generative replay for class-incremental continual learning, in JAX/Flax."""
