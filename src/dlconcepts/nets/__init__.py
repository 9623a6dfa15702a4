"""Step 1 of the course — the functions to be learned."""

from dlconcepts.nets.cnn import CNN_MODELS, DEFAULT_INPUT, build_cnn, load_weights
from dlconcepts.nets.mlp import ACTIVATIONS, mlp

__all__ = ["ACTIVATIONS", "CNN_MODELS", "DEFAULT_INPUT", "build_cnn", "load_weights", "mlp"]
