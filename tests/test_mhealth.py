"""MHEALTH loader on fixture logs in the exact UCI format (24 whitespace-separated columns)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from smoothdistill_lib import mhealth
from smoothdistill_lib.errors import IncompleteDataWarning
from tests.rawfixtures import write_mhealth_log, write_mhealth_tree


def test_placements_stacked_chest_then_ankle_then_arm(tmp_path):
    written = write_mhealth_tree(tmp_path, subjects=(2, 10, 1))
    rec = mhealth.load(tmp_path)
    n = 160
    assert len(rec) == 3 * 3 * n
    f = rec.frame
    assert f.placement.tolist() == [0] * 3 * n + [1] * 3 * n + [2] * 3 * n
    # numeric subject order within each placement
    assert f.subject.iloc[: 3 * n].tolist() == [1] * n + [2] * n + [10] * n
    for pid, cols in enumerate(mhealth.PLACEMENT_COLUMNS.values()):
        block = f[f.placement == pid]
        truth = np.concatenate([written[s][:, list(cols)] for s in (1, 2, 10)]).astype(np.float32)
        np.testing.assert_array_equal(block[["x", "y", "z"]].to_numpy(), truth)
        np.testing.assert_array_equal(block.activity, np.concatenate([written[s][:, 23] for s in (1, 2, 10)]))
    assert rec.activity_names[0] == "null" and rec.activity_names[12] == "jump" and len(rec.activity_names) == 13
    assert rec.placement_names == ["chest", "left_ankle", "right_lower_arm"]
    assert rec.sampling_rate_hz == 50.0


def test_sessions_are_runs_of_subject_placement_label(tmp_path):
    write_mhealth_tree(tmp_path, subjects=(1, 2))
    rec = mhealth.load(tmp_path)
    t = rec.info["sessions"]
    assert len(t) == 3 * 2 * 4 and (t.n_samples == 40).all()
    assert t.activity.tolist()[:4] == ["null", "standing", "null", "sitting"]
    assert np.all(np.diff(rec.frame.session.to_numpy()) >= 0)


def test_drop_null_keeps_runs_apart(tmp_path):
    write_mhealth_log(tmp_path / "MHEALTHDATASET" / "mHealth_subject1.log", [(1, 10), (0, 5), (1, 10), (2, 10)])
    rec = mhealth.load(tmp_path, drop_null=True)
    assert len(rec) == 3 * 30 and (rec.frame.activity != 0).all()
    # the two 'standing' runs, separated by removed Null rows, stay two sessions
    assert rec.info["sessions"].n_samples.tolist()[:3] == [10, 10, 10]
    assert rec.frame.session.nunique() == 9


def test_authors_file_order_is_lexicographic(tmp_path):
    write_mhealth_tree(tmp_path, subjects=(1, 2, 10))
    rec = mhealth.load(tmp_path, file_order="authors")
    assert rec.frame.groupby("session", sort=False).subject.first().drop_duplicates().tolist() == [1, 10, 2]
    with pytest.raises(ValueError, match="file_order"):
        mhealth.load(tmp_path, file_order="random")


@pytest.mark.parametrize("folder", ["mhealth", "."])
def test_other_folders_and_space_separator(tmp_path, folder):
    values = write_mhealth_log(tmp_path / folder / "mHealth_subject3.log", sep="  ")
    rec = mhealth.load(tmp_path)
    np.testing.assert_array_equal(rec.frame.x.iloc[:160], values[:, 0].astype(np.float32))


def test_subjects_selection_and_missing(tmp_path):
    write_mhealth_tree(tmp_path, subjects=(1, 2))
    assert set(mhealth.load(tmp_path, subjects=[2]).frame.subject) == {2}
    with pytest.raises(FileNotFoundError, match="mHealth_subject7.log"):
        mhealth.load(tmp_path, subjects=[2, 7])
    with pytest.raises(FileNotFoundError, match="no mHealth_subject"):
        mhealth.load(tmp_path / "empty")


ROW = "\t".join(["1.5"] * 23 + ["3"]) + "\n"


@pytest.mark.parametrize(
    "bad, what",
    [
        ("\t".join(["1.5"] * 22 + ["3"]) + "\n", "expected 24"),
        ("\t".join(["1.5"] * 24 + ["3"]) + "\n", "expected 24"),
        (ROW.replace("1.5", "x", 1), "not a number"),
        (ROW.replace("\t3\n", "\t13\n"), "label '13'"),
        (ROW.replace("\t3\n", "\t2.5\n"), "label '2.5'"),
        (ROW.replace("1.5", "inf", 1), "non-finite"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, bad, what):
    path = tmp_path / "MHEALTHDATASET" / "mHealth_subject1.log"
    write_mhealth_log(path, text=ROW * 3 + bad + ROW)
    with pytest.raises(ValueError) as e:
        mhealth.load(tmp_path)
    assert str(path) in str(e.value) and "line 4" in str(e.value) and what in str(e.value)


def test_empty_log(tmp_path):
    write_mhealth_log(tmp_path / "MHEALTHDATASET" / "mHealth_subject1.log", text="")
    with pytest.raises(ValueError, match="empty MHEALTH log"):
        mhealth.load(tmp_path)


def test_value_that_overflows_float32_names_file_and_line(tmp_path):
    # 1.00e+39 parses as a finite float64 and becomes inf in float32, the dtype the model trains in
    path = tmp_path / "MHEALTHDATASET" / "mHealth_subject1.log"
    write_mhealth_log(path, text=ROW * 2 + ROW.replace("1.5", "1.00e+39", 1) + ROW)
    with pytest.raises(ValueError) as e:
        mhealth.load(tmp_path)
    msg = str(e.value)
    assert str(path) in msg and "line 3:" in msg and "float32" in msg and "inf" in msg


def test_incomplete_folder_warns_in_one_line_unless_the_subset_is_chosen(tmp_path, monkeypatch):
    monkeypatch.delenv("SMOOTHDISTILL_ALLOW_SUBSET", raising=False)
    write_mhealth_tree(tmp_path, subjects=(1, 2, 3, 10))
    with pytest.warns(IncompleteDataWarning) as w:
        rec = mhealth.load(tmp_path)
    assert len(w) == 1 and len(rec) == 3 * 4 * 160
    msg = str(w[0].message)
    assert "\n" not in msg and "holds 4 of 10 subject logs" in msg and str(tmp_path) not in msg  # no path
    assert "mHealth_subject4.log, mHealth_subject5.log, mHealth_subject6.log, mHealth_subject7.log, ..." in msg
    assert mhealth.check_complete(tmp_path, subset_ok=True) == [4, 5, 6, 7, 8, 9]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mhealth.load(tmp_path, subset_ok=True)
        mhealth.load(tmp_path, subjects=[1, 2])  # an explicit choice is not a surprise
        monkeypatch.setenv("SMOOTHDISTILL_ALLOW_SUBSET", "yes")
        mhealth.load(tmp_path)


def test_complete_folder_does_not_warn(tmp_path, monkeypatch):
    monkeypatch.delenv("SMOOTHDISTILL_ALLOW_SUBSET", raising=False)
    write_mhealth_tree(tmp_path, subjects=range(1, 11), blocks=[(0, 5), (1, 5)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(mhealth.load(tmp_path)) == 3 * 10 * 10
