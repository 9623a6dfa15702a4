"""User-facing errors: anything a user can fix (bad input, bad config) becomes one clear line.

The CLI catches `UserError` and prints `dlc: error: <message>` with exit code 2, never a traceback.
Messages say what is wrong *and* how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Something the user can fix; the message is shown as one line."""

    def _render_traceback_(self) -> list[str]:
        # IPython (Jupyter, Colab) calls this instead of printing a traceback: in a notebook too, a
        # mistake the user can fix is one line, not a stack of the package's frames.
        return [f"{type(self).__name__}: {self}"]


class ConfigError(UserError):
    """A config key, value or file is wrong."""


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; training stopped with the last good weights restored."""

    def __init__(self, message: str, epoch: int):
        super().__init__(message)
        self.epoch = epoch


class ShapeMismatchError(UserError, ValueError):
    """Predictions and targets have shapes that would broadcast silently in the loss."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
