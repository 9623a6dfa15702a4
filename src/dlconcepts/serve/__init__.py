"""`dlc serve`: the course in a browser (see `dlconcepts.serve.app`).

    from dlconcepts.serve import create_app, serve
    serve("runs", host="127.0.0.1", port=8000)     # what `dlc serve` runs
"""

from dlconcepts.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
