"""Series choice by vendor rules: MMDI Stiffness + separate Confidence map, guards, recorded rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from mre_core.analysis.stiffness import QcFlag
from mre_core.config import Settings
from mre_core.io.elastogram import ConfidenceEncoding, VendorProfile
from mre_core.io.reader import read_inputs
from tests import dicom_factory as fx

ROWS = COLS = 64


def _signed(ds, values: np.ndarray):
    """Store ``values`` as signed 16-bit (MMDI maps are signed)."""
    ds.PixelRepresentation = 1
    ds.PixelData = np.ascontiguousarray(values, dtype=np.int16).tobytes()
    return ds


def _body() -> np.ndarray:
    yy, xx = np.mgrid[:ROWS, :COLS]
    return ((yy - 32) / 26) ** 2 + ((xx - 32) / 30) ** 2 <= 1


def _mmdi_study(tmp: Path, manufacturer: str = "GE MEDICAL SYSTEMS", with_stiffness: bool = True,
                n: int = 3) -> dict[str, np.ndarray]:
    """Stiffness (Pa, background 0, burned-in text at 32766), Confidence (0-1000), Shear Wave; one file per slice."""
    study, frame = generate_uid(), generate_uid()
    uids = {k: generate_uid() for k in ("stiff", "conf", "wave")}
    body = _body()
    region = np.zeros_like(body)
    region[12:30, 8:30] = True
    region &= body
    truth = {}
    for i in range(n):
        z = 10.0 * i
        pa = np.where(body, 2100 + 40 * i, 0).astype(np.int16)
        pa[2:6, 40:60] = 32766  # burned-in annotation text outside the body
        pa[20:22, 14:18] = 32766  # and a piece over the confident liver
        cm = np.where(region, 990, np.where(body, 400, 0)).astype(np.int16)
        wave = np.where(body, (np.sin(np.arange(COLS) / 3.0) * 14000)[None, :], 0).astype(np.int16)
        series = [("conf", "Confidence", cm), ("wave", "Shear Wave", wave)]
        if with_stiffness:
            series.insert(0, ("stiff", "Stiffness", pa))
        for key, desc, arr in series:
            ds = fx.mr_dataset(np.zeros((ROWS, COLS)), study_uid=study, series_uid=uids[key], description=desc,
                               image_type="DERIVED\\SECONDARY\\PROCESSED", manufacturer=manufacturer,
                               instance_number=i + 1, z_mm=z, series_number={"stiff": 5, "conf": 6, "wave": 7}[key])
            ds.FrameOfReferenceUID = frame
            fx.write(_signed(ds, arr), tmp / f"{key}_{i}.dcm")
        truth[f"{i}"] = region & ~((pa == 32766))
    truth["pa"] = np.array([2100 + 40 * i for i in range(n)])
    return truth


def test_mmdi_stiffness_is_measured_in_pa_with_the_confidence_map_region(tmp_path: Path) -> None:
    truth = _mmdi_study(tmp_path)
    result = read_inputs([tmp_path], Settings())
    assert len(result.studies) == 1
    series = result.studies[0].series
    assert series.description == "Stiffness"
    assert series.series_rule == "mmdi.stiffness"
    assert series.encoding is ConfidenceEncoding.CONFIDENCE_MAP
    assert "Confidence" in series.confidence_rule and ">= 950" in series.confidence_rule
    assert series.unit_rule.startswith("rule mmdi.stiffness") and series.ingest_flags == ()
    for i, e in enumerate(series.slices):
        assert e.profile is VendorProfile.PA
        assert np.array_equal(e.confidence, truth[f"{i}"])
        assert np.nanmax(e.kpa) == pytest.approx(truth["pa"][i] / 1000, abs=1e-3)  # 32766 never a value
        assert np.isnan(e.kpa[20, 14])
    assert len(result.skipped) == 1, "one entry per series; the Confidence series is the region, not skipped"
    wave = result.skipped[0]
    assert wave.series_description == "Shear Wave" and wave.n_files == 3
    assert wave.role == "wave" and wave.rule == "mmdi.shear_wave" and "not an elastogram" in wave.reason


def test_mmdi_at_a_siemens_site_is_still_pa_not_kpa_x100(tmp_path: Path) -> None:
    _mmdi_study(tmp_path, manufacturer="SIEMENS")
    e = read_inputs([tmp_path], Settings()).studies[0].series.slices[0]
    assert e.profile is VendorProfile.PA and e.kpa_per_unit == pytest.approx(0.001)
    assert np.nanmedian(e.kpa) == pytest.approx(2.1, abs=0.01)


def test_a_confidence_map_alone_is_never_measured_as_stiffness(tmp_path: Path) -> None:
    _mmdi_study(tmp_path, with_stiffness=False)
    result = read_inputs([tmp_path], Settings())
    assert result.studies == ()
    conf = [s for s in result.skipped if s.series_description == "Confidence"]
    assert len(conf) == 1 and conf[0].n_files == 3 and conf[0].rule == "mmdi.confidence"
    assert conf[0].reason.startswith("confidence map: never measured as stiffness")


def test_an_unnamed_series_valued_like_a_confidence_map_is_not_stiffness(tmp_path: Path) -> None:
    body = _body()
    study = generate_uid()
    uid = generate_uid()
    for i in range(3):
        values = np.where(body, 600, 0).astype(np.uint16)
        values[10:30, 10:30] = 1000  # the plateau at full scale of a per-mille map
        values &= body.astype(np.uint16) * 0xFFFF
        ds = fx.mr_dataset(values, study_uid=study, series_uid=uid, description="MRE 2", image_type="DERIVED\\PRIMARY",
                           manufacturer="ACME", instance_number=i + 1, z_mm=10.0 * i)
        fx.write(ds, tmp_path / f"s{i}.dcm")
    result = read_inputs([tmp_path], Settings())
    assert result.studies == ()
    assert len(result.skipped) == 1 and result.skipped[0].role == "confidence_map"
    assert result.skipped[0].rule.startswith("fallback") and "confidence map" in result.skipped[0].reason


def test_a_keyword_choice_is_recorded_and_flagged_as_fallback(phantom_studies: dict[str, Path]) -> None:
    series = read_inputs([phantom_studies["siemens_zero"]], Settings()).studies[0].series
    assert series.series_rule.startswith("fallback:")
    assert QcFlag(series.ingest_flags[0]) is QcFlag.FALLBACK_SERIES_RULE
