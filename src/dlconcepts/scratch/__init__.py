"""The math by hand, in NumPy only: this package imports nothing of torch or of dlconcepts.

Every function here is the formula of the course written out, so that a student can read it and
the tests can hold PyTorch's results against it.
"""
