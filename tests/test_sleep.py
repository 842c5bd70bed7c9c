"""Sleep loader on fixture files in the authors' formats F1 and F2."""

from __future__ import annotations

import numpy as np
import pytest

from smoothdistill_lib import sleep
from tests.rawfixtures import write_sleep_file, write_sleep_tree


def test_both_formats_load_exactly_in_subject_placement_posture_order(tmp_path):
    written = write_sleep_tree(tmp_path, subjects=(2, 1, 10), n=7)  # 1 F1, 2 and 10 F2
    rec = sleep.load(tmp_path)
    assert len(rec) == 3 * 36 * 7
    files = rec.info["files"]
    assert files.format.tolist() == ["F1"] * 36 + ["F2"] * 72
    assert files.subject.tolist() == [1] * 36 + [2] * 36 + [10] * 36
    assert files.placement.tolist()[:13] == ["neck"] * 12 + ["chest"]
    assert files.posture.tolist()[:12] == sleep.POSTURE_NAMES
    xyz = np.concatenate([written[p.name] for p in files.path]).astype(np.float32)
    np.testing.assert_array_equal(rec.signal, xyz)
    f = rec.frame
    assert f.activity.tolist()[:14] == [0] * 7 + [1] * 7 and f.placement.iloc[12 * 7] == 1
    assert f.session.nunique() == 108 and np.all(np.diff(f.session.to_numpy()) >= 0)
    assert rec.placement_names == ["neck", "chest", "abdomen"] and rec.activity_names[3] == "right"


def test_name_maps_follow_the_authors_and_accept_variants():
    assert sleep.parse_name("3_UpRight_co.txt") == ("3", 1, 0)
    assert sleep.parse_name("3_DOWNLEFT_NGUC.txt") == ("3", 7, 1)
    assert sleep.parse_name("s_07_Left_bung.txt") == ("s_07", 9, 2)
    assert sleep.parse_name("3_up-left_abdomen.txt") == ("3", 11, 2)
    assert sleep.parse_name("3_Up_cổ.txt") == ("3", 0, 0)
    assert sleep.parse_name("3_Up_ngực.txt")[2] == 1 and sleep.parse_name("3_Up_bụng.txt")[2] == 2
    assert sleep.parse_name("3_Sideways_co.txt")[1] is None and sleep.parse_name("Up_co.txt")[1] is None


def test_unmappable_names_are_listed_or_skipped(tmp_path):
    write_sleep_tree(tmp_path, subjects=(1,), postures=[0], placements=[0], n=3)
    write_sleep_file(tmp_path / "1_Sideways_co.txt", np.zeros((3, 3)))
    write_sleep_file(tmp_path / "1_Up_wrist.txt", np.zeros((3, 3)))
    with pytest.raises(ValueError) as e:
        sleep.load(tmp_path)
    assert "1_Sideways_co.txt" in str(e.value) and "1_Up_wrist.txt" in str(e.value)
    rec = sleep.load(tmp_path, on_unknown="skip")
    assert len(rec) == 3 and rec.info["skipped"] == ["1_Sideways_co.txt", "1_Up_wrist.txt"]
    with pytest.raises(ValueError, match="on_unknown"):
        sleep.load(tmp_path, on_unknown="ignore")


def test_subject_ids_from_names(tmp_path):
    for s in ("S03", "S12"):
        write_sleep_file(tmp_path / f"{s}_Up_co.txt", np.ones((2, 3)))
    rec = sleep.load(tmp_path)
    assert rec.info["subject_ids"] == {"S03": 3, "S12": 12}
    assert sleep.load(tmp_path, subjects=[12]).frame.subject.unique().tolist() == [12]
    with pytest.raises(FileNotFoundError, match=r"subject id\(s\) \[4\]"):
        sleep.load(tmp_path, subjects=[4])
    write_sleep_file(tmp_path / "anna_Up_co.txt", np.ones((2, 3)))
    assert sleep.load(tmp_path).info["subject_ids"] == {"S03": 1, "S12": 2, "anna": 3}


def test_sleep_subfolder_is_found(tmp_path):
    write_sleep_tree(tmp_path / "sleep", subjects=(1,), postures=[2], n=4)
    assert len(sleep.load(tmp_path)) == 12


@pytest.mark.parametrize(
    "text, what",
    [
        ("0,1,2,3;\n1,1,2;\n2,1,2,3;\n", "line 2: malformed F1"),
        ("ax,ay,az\n1,2,3\n1,2,x\n", "line 3: malformed F2"),
        ("0,1,2,3;\n1,1,nan,3;\n", "line 2: non-finite"),
        ("0,1,2,3;\n1,1;2,3;\n", "line 2: malformed F1"),
        ("ax,ay,az\n1,2,3\n1,2,3,4\n", "line 3: malformed F2"),
        ("hello world\nfoo\n", "line 1: unrecognised sleep file format"),
        ("\n\n", "empty sleep file"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, text, what):
    (tmp_path / "1_Up_co.txt").write_text(text)
    with pytest.raises(ValueError) as e:
        sleep.load(tmp_path)
    assert "1_Up_co.txt" in str(e.value) and what in str(e.value)


def test_no_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no <subject>_<Posture>_<placement>.txt"):
        sleep.load(tmp_path)


@pytest.mark.parametrize(
    "text, lineno",
    [
        ("0,0.1,0.2,0.3;\n1,0.1,1.00e+39,0.3;\n", 2),  # F1
        ("ax,ay,az\n0.1,0.2,0.3\n0.1,0.2,0.3\n-1e39,0.2,0.3\n", 4),  # F2 (header is line 1)
    ],
)
def test_value_that_overflows_float32_names_file_and_line(tmp_path, text, lineno):
    # finite as float64, inf once cast to float32 (the dtype the loader returns and the model trains in)
    path = tmp_path / "1_Up_co.txt"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        sleep.load(tmp_path)
    msg = str(e.value)
    assert str(path) in msg and f"line {lineno}:" in msg and "float32" in msg


def test_large_ignored_first_f1_column_is_not_an_error(tmp_path):
    # F1's first field is ignored by the authors' code; only ax, ay, az are cast to float32
    (tmp_path / "1_Up_co.txt").write_text("1e39,0.1,0.2,0.3;\n")
    np.testing.assert_array_equal(sleep.load(tmp_path).signal, np.array([[0.1, 0.2, 0.3]], np.float32))
