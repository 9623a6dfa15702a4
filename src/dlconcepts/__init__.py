"""dlconcepts: the course "Deep Learning – Concepts and PyTorch Development" as a library and a CLI.

Every lab follows the course's three steps: (1) define the function to be learned, (2) define a loss,
(3) find the parameters that minimize it.
"""

__version__ = "0.1.0"
