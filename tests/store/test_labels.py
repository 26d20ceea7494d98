"""Reader ROIs for training: imported reads stored once, app reviews preferred, filters that select and deselect."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import sqlalchemy as sa

from mre_core.store.audit import read_audit
from mre_core.store.labels import (
    SUMMARY_COLUMNS,
    ReaderRoi,
    dicom_date,
    label_summary,
    labelled_studies,
    save_imported,
)
from mre_core.store.results import Store
from mre_core.store.schema import reader_rois
from tests.result_factory import make_result


def _mask(r0: int, r1: int, c0: int, c1: int, shape: tuple[int, int] = (20, 30)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


def _roi(sop: str, mask: np.ndarray, **kw: str) -> ReaderRoi:
    base = {"study_uid": "1.2.3", "series_uid": "1.2.3.4", "patient_id": "IMP1", "study_date": "20180615",
            "manufacturer": "GE MEDICAL SYSTEMS", "reader": "Jane Doe", "read_date": "20240102", "source": "seg",
            "label": "Liver ROI"}
    base.update(kw)
    return ReaderRoi(sop_uid=sop, mask=mask, **base)


def _review(store: Store, patient_id: str, reviewer: str = "Dr O") -> tuple[object, object]:
    """An auto revision, then a signed-off one with slice 2 excluded and ROIs moved; returns (auto, signed)."""
    rois = [np.zeros((204, 256), bool) for _ in range(3)]
    for i, roi in enumerate(rois):
        roi[60 + 10 * i:110, 70:150 - 10 * i] = True  # all three drawn: only the reader's exclusion drops one
    auto = make_result([3.0, 3.1, 3.2], rois=rois, patient_id=patient_id)
    store.save(auto)
    moved = [replace(s, roi=np.roll(s.roi, 4, axis=0)) for s in auto.slices]
    moved[2] = replace(moved[2], excluded=True)
    signed = replace(auto, slices=tuple(moved))
    store.save(signed, kind="signed_off", reviewer=reviewer)
    return auto, signed


def test_an_imported_object_is_stored_once_with_its_audit_entry(store_url: str) -> None:
    store = Store(store_url)
    rois = [_roi("1.2.3.4.1", _mask(2, 9, 3, 12)), _roi("1.2.3.4.2", np.zeros((20, 30), bool))]
    assert save_imported(store, rois, source_file="reads/a.dcm", source_sop_uid="9.9.1", imported_by="cli:x") == (2, 0)
    assert save_imported(store, rois, source_file="reads/a.dcm", source_sop_uid="9.9.1", imported_by="cli:x") == (0, 2)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(reader_rois)).scalar() == 2
    (found,) = labelled_studies(store)
    assert (found.source, found.reader, found.read_date, found.patient_id) == ("seg", "Jane Doe", "20240102", "IMP1")
    assert found.revision is None and found.reader_kpa is None
    assert np.array_equal(found.rois["1.2.3.4.1"], rois[0].mask)
    assert not found.rois["1.2.3.4.2"].any()  # an empty frame the object included is a read: kept
    entries = read_audit(store, action_prefix="labels:")
    assert entries["action"].tolist() == ["labels:import"] * 2 and set(entries["user"]) == {"cli:x"}
    assert "2 image ROI(s) added" in entries["detail"].iloc[0] and "1.2.3" in entries["detail"].iloc[0]


def test_bad_rois_are_refused_before_anything_is_written(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    with pytest.raises(ValueError, match="2-D"):
        save_imported(store, [_roi("1", np.zeros(5, bool))], source_file="f", source_sop_uid="9", imported_by="u")
    with pytest.raises(ValueError, match="twice"):
        save_imported(store, [_roi("1", _mask(0, 1, 0, 1)), _roi("1", _mask(0, 1, 0, 1))], source_file="f",
                      source_sop_uid="9", imported_by="u")
    with pytest.raises(ValueError, match="source"):
        save_imported(store, [_roi("1", _mask(0, 1, 0, 1), source="review")], source_file="f", source_sop_uid="9",
                      imported_by="u")
    assert labelled_studies(store) == []


def test_the_latest_import_wins_for_an_image_labelled_twice(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    first, second = _mask(0, 5, 0, 5), _mask(10, 15, 10, 20)
    save_imported(store, [_roi("1.2.3.4.1", first), _roi("1.2.3.4.2", first)], source_file="old.dcm",
                  source_sop_uid="9.1", imported_by="u")
    save_imported(store, [_roi("1.2.3.4.1", second, source="rtstruct", reader="Bo Li")], source_file="new.dcm",
                  source_sop_uid="9.2", imported_by="u")
    (found,) = labelled_studies(store)
    assert np.array_equal(found.rois["1.2.3.4.1"], second) and np.array_equal(found.rois["1.2.3.4.2"], first)
    assert (found.source, found.reader) == ("rtstruct", "Bo Li")  # the study's read is its latest import


def test_a_signed_off_review_wins_drops_excluded_slices_and_carries_the_value(store_url: str) -> None:
    store = Store(store_url)
    _, signed = _review(store, "REV1")
    later = replace(signed, slices=tuple(replace(s, roi=np.zeros_like(s.roi)) for s in signed.slices))
    store.save(later, kind="review", reviewer="Dr Late")  # a later review does not beat the sign-off
    only_review = make_result([2.0, 2.2], patient_id="REV2")
    store.save(only_review, kind="review", reviewer="Dr P")
    store.save(make_result([4.0], patient_id="AUTO1"))  # never reviewed: no label

    found = {s.patient_id: s for s in labelled_studies(store)}
    assert set(found) == {"REV1", "REV2"}
    rev = found["REV1"]
    assert (rev.source, rev.reader, rev.revision) == ("signed_off", "Dr O", 2)
    assert rev.reader_kpa == pytest.approx(signed.stiffness.stiffness_kpa)
    kept = [s for s in signed.slices if not s.excluded]
    assert len(kept) == 2
    assert sorted(rev.rois) == sorted(s.sop_uid for s in kept)  # the excluded slice is not a read
    assert signed.slices[2].sop_uid not in rev.rois
    for s in kept:
        assert np.array_equal(rev.rois[s.sop_uid], s.roi)
    assert len(rev.read_date) == 8 and rev.read_date.isdigit()
    assert (rev.study_date, rev.manufacturer) == ("20250301", "SIEMENS")
    assert found["REV2"].source == "review" and found["REV2"].revision == 1


def test_an_app_review_beats_an_import_of_the_same_series_unless_only_imports_are_asked(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    auto, _ = _review(store, "BOTH")
    sop = auto.slices[0].sop_uid
    save_imported(store, [_roi(sop, np.ones(auto.slices[0].roi.shape, bool), study_uid=auto.study_uid,
                               series_uid=auto.series_uid, patient_id="BOTH")],
                  source_file="r.dcm", source_sop_uid="9.3", imported_by="u")
    (found,) = labelled_studies(store)
    assert found.source == "signed_off"
    (imported,) = labelled_studies(store, sources=("seg", "rtstruct"))
    assert imported.source == "seg" and imported.rois[sop].all()


def test_filters_select_and_deselect(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    _review(store, "REV1", reviewer="Dr O")  # study date 20250301, SIEMENS
    save_imported(store, [_roi("1.2.3.4.1", _mask(0, 5, 0, 5))], source_file="a.dcm", source_sop_uid="9.1",
                  imported_by="u")  # study date 20180615, GE, Jane Doe

    def who(**kw: object) -> list[str]:
        return [s.patient_id for s in labelled_studies(store, **kw)]

    assert who() == ["IMP1", "REV1"]  # sorted by patient
    assert who(date_from="2025-03-01") == ["REV1"] and who(date_to="20250228") == ["IMP1"]
    assert who(date_from="20180615", date_to="2018-06-15") == ["IMP1"]  # both ends inclusive
    assert who(date_from="20250302") == []
    assert who(manufacturers=["siem"]) == ["REV1"] and who(manufacturers=["ge medical"]) == ["IMP1"]
    assert who(manufacturers=["philips"]) == []
    assert who(readers=["dr o"]) == ["REV1"] and who(readers=["JANE DOE"]) == ["IMP1"]
    assert who(readers=["Dr"]) == []  # exact names, not substrings
    assert who(sources=("review",)) == [] and who(sources=("signed_off",)) == ["REV1"]
    assert who(study_uids={"1.2.3"}) == ["IMP1"] and who(study_uids=set()) == []
    with pytest.raises(ValueError, match="YYYYMMDD"):
        who(date_from="01/03/2025")
    with pytest.raises(ValueError, match="unknown label source"):
        who(sources=("auto",))


def test_the_summary_has_one_row_per_labelled_study(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    assert list(label_summary(store).columns) == list(SUMMARY_COLUMNS) and label_summary(store).empty
    _review(store, "REV1")
    save_imported(store, [_roi("1.2.3.4.1", _mask(0, 5, 0, 5)), _roi("1.2.3.4.2", _mask(1, 5, 0, 5))],
                  source_file="a.dcm", source_sop_uid="9.1", imported_by="u")
    table = label_summary(store)
    assert table["patient_id"].tolist() == ["IMP1", "REV1"]
    assert table["n_slices"].tolist() == [2, 2] and table["source"].tolist() == ["seg", "signed_off"]
    assert label_summary(store, readers=["Jane Doe"])["patient_id"].tolist() == ["IMP1"]


def test_dates_are_written_as_dicom_dates() -> None:
    assert dicom_date("2025-03-01") == dicom_date("20250301") == "20250301"
    with pytest.raises(ValueError):
        dicom_date("20251301")
