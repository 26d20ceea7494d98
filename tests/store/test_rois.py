"""The automatic and reader ROI pairs read back from the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from tests.result_factory import make_result

from mre_core.store.results import Store
from mre_core.store.rois import roi_pairs


def test_pairs_come_from_the_latest_auto_and_reader_revisions(store_url: str) -> None:
    store = Store(store_url)
    auto = make_result([3.0, 3.1, 3.2], patient_id="OV1")
    store.save(auto)
    edited = [replace(s, roi=np.roll(s.roi, 3, axis=1)) for s in auto.slices]
    reviewed = replace(auto, slices=tuple(edited))
    store.save(reviewed, kind="signed_off", reviewer="Dr O")
    only_auto = make_result([2.0, 2.1], patient_id="OV2")
    store.save(only_auto)  # never reviewed: no pair

    pairs = list(roi_pairs(store))
    assert {p.study_uid for p in pairs} == {auto.study_uid}
    assert len(pairs) == len(auto.slices)
    by_sop = {p.sop_uid: p for p in pairs}
    for s, e in zip(auto.slices, edited):
        p = by_sop[s.sop_uid]
        assert np.array_equal(p.auto_roi, s.roi) and np.array_equal(p.reader_roi, e.roi)
        assert (p.auto_revision, p.reader_revision, p.reader_kind, p.reviewer) == (1, 2, "signed_off", "Dr O")
    assert list(roi_pairs(store, [only_auto.study_uid])) == []
