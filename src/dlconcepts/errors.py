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


def did_you_mean(word: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.5, ignore_case: bool = False) -> str:
    """' (did you mean 'x'?)' for the closest choice (up to `n`: 'x', 'y' or 'z'), or '' when nothing is close."""
    by_key = {(c.lower() if ignore_case else c): c for c in choices}
    close = [by_key[m] for m in difflib.get_close_matches(word.lower() if ignore_case else word, list(by_key), n=n,
                                                          cutoff=cutoff)]
    if not close:
        return ""
    quoted = [f"'{c}'" for c in close]
    return f" (did you mean {quoted[0] if len(quoted) == 1 else ', '.join(quoted[:-1]) + ' or ' + quoted[-1]}?)"
