"""The gait cohort as shipped: exactly the slides' table, its label rules, and its flagged problems."""

from pathlib import Path

import numpy as np
import pytest
from importlib import resources

from dlconcepts.data.gait import COLUMNS, label_rule_violations, load_gait, suspicious_values

SEED_CSV = Path(__file__).resolve().parents[3] / "shared" / "seed" / "gait_tug_bbs.csv"
CARD = Path(__file__).resolve().parents[2] / "docs" / "data" / "gait.md"


def test_shipped_file_is_the_transcription_byte_for_byte():
    if not SEED_CSV.is_file():
        pytest.skip(f"the seed table is not beside this checkout ({SEED_CSV})")
    shipped = resources.files("dlconcepts.data").joinpath("files", "gait_tug_bbs.csv").read_bytes()
    assert shipped == SEED_CSV.read_bytes()


def test_shape_columns_and_missing_cells():
    t = load_gait()
    assert t.shape == (23, 25)
    assert list(t.columns) == list(COLUMNS)
    assert t["No"].tolist() == list(range(1, 24))
    assert t["px"].isna().sum() == 2 and t.loc[t["px"].isna(), "No"].tolist() == [6, 7]
    assert int(t.drop(columns="px").isna().sum().sum()) == 0
    assert set(t["Gender"]) == {"F", "M"}


def test_label_rules_hold_on_every_row():
    t = load_gait()
    assert label_rule_violations(t) == []
    np.testing.assert_array_equal(t["y1"], (t["TUG"] >= 14).astype(int))
    np.testing.assert_array_equal(t["y2"], (t["BBS"] <= 22).astype(int))
    assert int(t["y1"].sum()) == 7 and int(t["y2"].sum()) == 6


def test_a_broken_label_is_reported():
    t = load_gait()
    t.loc[0, "y1"] = 1  # subject 1 has TUG 11 s
    assert label_rule_violations(t) == ["subject 1: y1=1 but TUG=11 s"]


def test_frames_follow_times_at_45_per_second_and_phases_are_ordered():
    t = load_gait()
    for k in range(1, 7):
        assert (t[f"n{k}"] / 45 - t[f"t{k}"]).abs().max() <= 0.1
    times = t[[f"t{k}" for k in range(1, 7)]].to_numpy()
    assert (np.diff(times, axis=1) > 0).all()


def test_row_23_age_is_flagged_not_corrected():
    t = load_gait()
    assert t.loc[t["No"] == 23, "age"].item() == 109
    notes = suspicious_values(t)
    assert any(n.startswith("subject 23: age 109") for n in notes)
    assert any(n.startswith("px: missing for subjects 6, 7") for n in notes)


def test_the_data_card_documents_every_column():
    text = CARD.read_text(encoding="utf-8")
    for column, meaning in COLUMNS.items():
        assert f"| `{column}` | {meaning} |" in text
