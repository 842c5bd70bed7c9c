"""The dataset registry, mode sizing, status table and the ``datasets`` command."""

from __future__ import annotations

import pytest

from smoothdistill_lib import config, datasets
from smoothdistill_lib import download as dl
from smoothdistill_lib.cli import main
from tests.rawfixtures import write_mhealth_tree, write_sleep_tree, write_wisdm_tree


def test_registry_names_and_unknown_name(data):
    assert list(datasets.DATASETS) == ["wisdm", "mhealth", "sleep", "sleepsim"]
    with pytest.raises(ValueError, match="unknown dataset 'har'"):
        datasets.load_recording("har")


def test_search_dirs_start_with_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("SMOOTHDISTILL_DATA", str(tmp_path))
    assert datasets.search_dirs()[0] == tmp_path


def test_quick_mode_uses_the_first_subjects_with_both_placements(data):
    write_wisdm_tree(data, {1703: ("phone", "watch"), 1700: ("watch",), 1701: ("phone", "watch"),
                            1702: ("phone", "watch"), 1704: ("phone", "watch"), 1705: ("phone",)})
    rec = datasets.load_recording("wisdm", mode="quick", cache=False)
    assert config.get_mode("quick").wisdm_subjects == 3
    assert rec.subjects().tolist() == [1701, 1702, 1703] and rec.info["mode"] == "quick"
    assert datasets.load_recording("wisdm", mode="demo", cache=False).subjects().tolist() == list(range(1700, 1706))
    assert datasets.load_recording("wisdm", mode="quick", subjects=[1700], placements=["watch"],
                                   cache=False).subjects().tolist() == [1700]


def test_quick_mode_with_too_few_subjects(data):
    write_wisdm_tree(data, {1700: ("phone", "watch"), 1701: ("watch",)})
    with pytest.raises(FileNotFoundError, match="needs 3 WISDM subjects"):
        datasets.load_recording("wisdm", mode="quick", cache=False)


def test_sleepsim_is_sized_by_the_mode(data):
    m = config.with_overrides(config.get_mode("quick"), sleepsim_subjects=2, sleepsim_seconds=1.0)
    rec = datasets.load_recording("sleepsim", mode=m)
    assert len(rec) == 2 * 36 * 50 and rec.info["mode"] == "quick"
    assert len(datasets.load_recording("sleepsim", mode=m, subjects=[5])) == 36 * 50


def test_mhealth_and_sleep_through_the_registry(data):
    write_mhealth_tree(data, subjects=(1, 2))
    write_sleep_tree(data / "sleep", subjects=(1,), n=3)
    assert len(datasets.load_recording("mhealth", drop_null=True)) == 3 * 2 * 80
    assert len(datasets.load_recording("sleep")) == 36 * 3


def test_missing_datasets_say_what_to_do(data):
    with pytest.raises(dl.DownloadError) as e:
        datasets.load_recording("wisdm", download=False)
    assert dl.WISDM_URL in str(e.value) and str(data) in str(e.value)
    with pytest.raises(dl.DownloadError, match="could not download"):
        datasets.load_recording("mhealth")  # offline: fetch fails with the URL and where to save it
    with pytest.raises(FileNotFoundError, match="sleepsim"):
        datasets.load_recording("sleep")


def test_status_table(data):
    status = datasets.dataset_status().set_index("dataset")
    assert status.present.tolist() == [False, False, False, True]
    write_wisdm_tree(data)
    write_mhealth_tree(data, subjects=(1,))
    status = datasets.dataset_status().set_index("dataset")
    assert status.loc["wisdm", "present"] and status.loc["wisdm", "location"] == str(data)
    assert status.loc["wisdm", "detail"] == "2 phone, 3 watch subjects (2 with both)"
    assert status.loc["mhealth", "detail"] == "1 subject logs"
    assert not status.loc["sleep", "present"]


def test_cli_datasets_prints_the_table(data, capsys):
    write_wisdm_tree(data)
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "wisdm" in out and "2 phone, 3 watch subjects (2 with both)" in out
    assert "mhealth: expected as" in out and dl.MHEALTH_URL in out and str(data) in out


@pytest.mark.realdata
def test_real_quick_mode_subset(real_data_dir, monkeypatch):
    """The one real-data test that loads several files: the quick-mode subset (3 subjects x 2 devices)."""
    monkeypatch.setattr(datasets, "search_dirs", lambda: [real_data_dir])
    rec = datasets.load_recording("wisdm", mode="quick", cache=False)
    assert rec.subjects().tolist() == [1600, 1604, 1606]
    files = rec.info["files"]
    assert [p.name for p in files] == [f"data_{s}_accel_{p}.txt" for p in ("phone", "watch") for s in (1600, 1604, 1606)]
    assert len(rec) == sum(p.read_bytes().count(b"\n") for p in files)
    assert rec.frame.groupby("placement").subject.nunique().tolist() == [3, 3]


def test_quick_mode_on_an_incomplete_folder_warns_once(data, monkeypatch):
    """The mode's first 3 subjects of a partial folder are not the full archive's first 3: say so."""
    import warnings

    from smoothdistill_lib.errors import IncompleteDataWarning
    from tests.rawfixtures import write_wisdm_file

    monkeypatch.delenv("SMOOTHDISTILL_ALLOW_SUBSET", raising=False)
    monkeypatch.setattr(dl, "verify_wisdm", lambda *a, **k: None)  # tiny stand-ins, not the real sizes
    for s in (1600, 1602, 1605):  # archive names, so the shipped 102-file list applies
        for p in ("phone", "watch"):
            write_wisdm_file(data, s, p, text=f"{s},A,1000,1.0,2.0,3.0;\n")
    with pytest.warns(IncompleteDataWarning) as w:
        rec = datasets.load_recording("wisdm", mode="quick", cache=False)
    assert len(w) == 1 and "3 of 51 phone, 3 of 51 watch accel files (96 missing" in str(w[0].message)
    assert rec.subjects().tolist() == [1600, 1602, 1605]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        datasets.load_recording("wisdm", mode="quick", cache=False, subset_ok=True)


def test_absence_names_settings_not_machine_paths(tmp_path, monkeypatch):
    """The one line is printed in chapters: it names SMOOTHDISTILL_DATA, never an absolute path."""
    monkeypatch.setenv("SMOOTHDISTILL_DATA", str(tmp_path / "empty"))
    line = datasets.absence("mhealth")
    assert line.startswith("mhealth is not under the data folder $SMOOTHDISTILL_DATA")
    assert str(tmp_path) not in line and "/work/" not in line and not any(
        part.startswith("/") for part in line.split() if "http" not in part)
