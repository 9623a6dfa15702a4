"""The course's clinical table: 23 older adults, gait timings from a Timed-Up-and-Go video, two fall-risk labels.

The file `files/gait_tug_bbs.csv` is the table of the slides exactly as transcribed — two `px` cells
are missing there and stay missing here. Nothing is corrected: a value that looks wrong (row 23's
age of 109) is flagged by `suspicious_values`, and the labels are checked against their rules by
`label_rule_violations`. The data card (docs/data/gait.md) is written from `COLUMNS`.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

FILE = "gait_tug_bbs.csv"

# Column -> what it is. The frame indices n1…n6 are the video frames of the phase ends t1…t6
# (the video runs at about 45 frames per second, so n ≈ 45·t).
COLUMNS: dict[str, str] = {
    "No": "subject number, 1–23",
    "age": "age in years",
    "t1": "end of TUG phase 1 of 6, seconds from the start (the slides give the times, not the phases' names)",
    "t2": "end of phase 2, s",
    "t3": "end of phase 3, s",
    "t4": "end of phase 4, s",
    "t5": "end of phase 5, s",
    "t6": "end of phase 6, the end of the test, s",
    "time": "TUG time read from the video, whole seconds",
    "Step frequency": "steps per second",
    "n1": "video frame of t1 (≈ 45 × t1)",
    "n2": "video frame of t2",
    "n3": "video frame of t3",
    "n4": "video frame of t4",
    "n5": "video frame of t5",
    "n6": "video frame of t6",
    "px": "position measure x from the video (the slides do not define px, py, pz); missing for subjects 6 and 7",
    "py": "position measure y",
    "pz": "position measure z",
    "Steps": "number of steps during the test",
    "Gender": "F or M",
    "TUG": "Timed-Up-and-Go time, s (clinical measurement)",
    "y1": "fall-risk label from TUG: 1 exactly when TUG ≥ 14 s",
    "BBS": "Berg Balance Scale score (0–56; lower is worse balance)",
    "y2": "fall-risk label from BBS: 1 exactly when BBS ≤ 22",
}

TUG_THRESHOLD_S = 14  # y1 = 1 when TUG ≥ 14 s
BBS_THRESHOLD = 22  # y2 = 1 when BBS ≤ 22
FRAMES_PER_SECOND = 45  # n ≈ 45·t (checked in tests against every row)
OLDEST_PLAUSIBLE_AGE = 105


def load_gait() -> pd.DataFrame:
    """The table as shipped: 23 rows, 25 columns, missing cells as NaN, `Gender` as text."""
    with resources.files("dlconcepts.data").joinpath("files", FILE).open("rb") as fh:
        return pd.read_csv(fh)


def label_rule_violations(table: pd.DataFrame) -> list[str]:
    """Rows whose labels break their rules (y1 = [TUG ≥ 14], y2 = [BBS ≤ 22]); empty when all hold."""
    problems = []
    for _, row in table.iterrows():
        if int(row["y1"]) != int(row["TUG"] >= TUG_THRESHOLD_S):
            problems.append(f"subject {row['No']}: y1={row['y1']} but TUG={row['TUG']} s")
        if int(row["y2"]) != int(row["BBS"] <= BBS_THRESHOLD):
            problems.append(f"subject {row['No']}: y2={row['y2']} but BBS={row['BBS']}")
    return problems


def suspicious_values(table: pd.DataFrame) -> list[str]:
    """Values that are likely entry errors, flagged and left as they are."""
    notes = []
    for _, row in table[table["age"] > OLDEST_PLAUSIBLE_AGE].iterrows():
        notes.append(f"subject {row['No']}: age {row['age']} is likely an entry error (kept as transcribed)")
    for column in table.columns:
        missing = table.index[table[column].isna()]
        if len(missing):
            subjects = ", ".join(str(table.loc[i, "No"]) for i in missing)
            notes.append(f"{column}: missing for subject{'s' if len(missing) > 1 else ''} {subjects} (as in the slides)")
    return notes
