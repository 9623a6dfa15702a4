"""Step 1 of the course — the functions to be learned."""

from dlconcepts.nets.mlp import ACTIVATIONS, mlp

__all__ = ["ACTIVATIONS", "mlp"]
