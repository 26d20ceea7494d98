"""Tests for the MRE series-role rule registry (:mod:`mre_core.io.vendor_rules`).

Every rule gets at least one header built from the documented facts (no pixel data), plus the
negative cases the registry exists for: Confidence is never stiffness, an elastogram mask is
masked stiffness, an RGB "Stiffness" is a colour save, an unrelated series matches nothing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from mre_core.io.vendor_rules import (
    OPS,
    RULES,
    Predicate,
    Rule,
    SeriesRole,
    ValueUnit,
    get_rule,
    match_series,
    matching_rules,
    rules_table,
)

DSP = ["DERIVED", "SECONDARY", "PROCESSED"]
GE_MANUFACTURER = "GE MEDICAL SYSTEMS"
SIEMENS_EPI_SEQUENCE = "*epseMRE2d1_60Hz"


def header(private_sequence: str | None = None, **keywords: Any) -> Dataset:
    """A Dataset with just the given keywords (and the GE private sequence name, if any)."""
    ds = Dataset()
    for keyword, value in keywords.items():
        setattr(ds, keyword, value)
    if private_sequence is not None:
        ds.add_new((0x0019, 0x0010), "LO", "GEMS_ACQU_01")
        ds.add_new((0x0019, 0x109C), "LO", private_sequence)
    return ds


#: (header, expected rule name, role, unit) — one case per rule at least
CASES: list[tuple[Dataset, str, SeriesRole, ValueUnit]] = [
    (header(Manufacturer="SIEMENS", PhotometricInterpretation="RGB", SamplesPerPixel=3,
            SeriesDescription="Color elastogram"), "any.colour_save", SeriesRole.COLOUR_SAVE, ValueUnit.UNITLESS),
    (header(ImageType=["DERIVED", "SECONDARY", "MMDI3D", "STIFFNESS"], SeriesDescription="Stiffness"),
     "mmdi3d.stiffness", SeriesRole.STIFFNESS, ValueUnit.UNKNOWN),
    (header(ImageType=["DERIVED", "SECONDARY", "MMDI3D", "CONFIDENCE"]),
     "mmdi3d.confidence", SeriesRole.CONFIDENCE_MAP, ValueUnit.UNKNOWN),
    (header(ImageType=["DERIVED", "SECONDARY", "MMDI3D", "MAGRMS"]),
     "mmdi3d.magnitude", SeriesRole.MAGNITUDE, ValueUnit.UNITLESS),
    (header(ImageType=["DERIVED", "SECONDARY", "MMDI3D", "PHSDIFFZ"]),
     "mmdi3d.phase_difference", SeriesRole.WAVE, ValueUnit.UNKNOWN),
    (header(Manufacturer=GE_MANUFACTURER, SeriesDescription="Confidence", ImageType=DSP,
            WindowCenter=950, WindowWidth=100), "mmdi.confidence", SeriesRole.CONFIDENCE_MAP, ValueUnit.PER_MILLE),
    (header(Manufacturer="SIEMENS", SeriesDescription="Stiffness", ImageType=DSP, WindowCenter=4000,
            WindowWidth=8000, PixelRepresentation=1), "mmdi.stiffness", SeriesRole.STIFFNESS, ValueUnit.PA),
    (header(SeriesDescription="Shear Wave", ImageType=DSP), "mmdi.shear_wave", SeriesRole.WAVE, ValueUnit.UNKNOWN),
    (header("MR-Touch", Manufacturer=GE_MANUFACTURER, SeriesDescription="Elastogram Mask", ImageType=DSP),
     "ge.elastogram_mask", SeriesRole.MASKED_STIFFNESS, ValueUnit.PA),
    (header(Manufacturer=GE_MANUFACTURER, SeriesDescription="MRE stgrym"),
     "ge.elastogram_mask", SeriesRole.MASKED_STIFFNESS, ValueUnit.PA),
    (header("MR-Touch", Manufacturer=GE_MANUFACTURER, SeriesDescription="Elastogram", ImageType=DSP),
     "ge.elastogram", SeriesRole.STIFFNESS, ValueUnit.PA),
    (header(Manufacturer=GE_MANUFACTURER, SeriesDescription="MRE stgry"),
     "ge.elastogram", SeriesRole.STIFFNESS, ValueUnit.PA),
    (header("MR-Touch", Manufacturer=GE_MANUFACTURER, SeriesDescription="Wave Images", ImageType=DSP),
     "ge.wave_images", SeriesRole.WAVE, ValueUnit.UNKNOWN),
    (header("MR-Touch", Manufacturer=GE_MANUFACTURER, ImageType=["ORIGINAL", "PRIMARY", "OTHER"]),
     "ge.mrtouch.raw", SeriesRole.RAW_PHASE_MAGNITUDE, ValueUnit.MILLIRADIAN),
    (header("fgremre", Manufacturer=GE_MANUFACTURER, ImageType=["ORIGINAL", "PRIMARY", "OTHER"]),
     "ge.fgremre.raw", SeriesRole.RAW_PHASE_MAGNITUDE, ValueUnit.UNKNOWN),
    (header("epimre", Manufacturer=GE_MANUFACTURER, ImageType=["ORIGINAL", "PRIMARY", "MAG", "MAGZ"],
            SeriesDescription="EPI MRE FB"), "ge.epimre.magnitude", SeriesRole.MAGNITUDE, ValueUnit.UNITLESS),
    (header("epimre", Manufacturer=GE_MANUFACTURER, ImageType=["ORIGINAL", "PRIMARY", "PHASE", "PHASEZ"]),
     "ge.epimre.phase", SeriesRole.PHASE, ValueUnit.UNKNOWN),
    (header("MR-Touch", Manufacturer=GE_MANUFACTURER, SeriesDescription="Storage", ImageType=DSP),
     "ge.mre.derived_other", SeriesRole.OTHER, ValueUnit.UNKNOWN),
    (header(Manufacturer="SIEMENS", ImageType=["DERIVED", "PRIMARY", "WV", "ND"], SequenceName=SIEMENS_EPI_SEQUENCE),
     "siemens.wave", SeriesRole.WAVE, ValueUnit.UNKNOWN),
    (header(Manufacturer="Siemens Healthineers", ImageType=["DERIVED", "PRIMARY", "ELASTO", "MASKED"],
            ComplexImageComponent="MAGNITUDE"),
     "siemens.xa.elastogram", SeriesRole.STIFFNESS, ValueUnit.KPA_X100),
    (header(Manufacturer="SIEMENS", ImageType=["ORIGINAL", "PRIMARY", "ELASTO"], ComplexImageComponent="MAGNITUDE"),
     "siemens.xa.magnitude", SeriesRole.MAGNITUDE, ValueUnit.UNITLESS),
    (header(Manufacturer="SIEMENS", ImageType=["ORIGINAL", "PRIMARY", "ELASTO"], ComplexImageComponent="PHASE"),
     "siemens.xa.phase", SeriesRole.PHASE, ValueUnit.UNKNOWN),
    (header(Manufacturer="SIEMENS", ImageType=["DERIVED", "PRIMARY", "M", "ND"], SequenceName=SIEMENS_EPI_SEQUENCE,
            PhotometricInterpretation="MONOCHROME2", SamplesPerPixel=1),
     "siemens.syngo.hatched_stiffness", SeriesRole.HATCHED_STIFFNESS, ValueUnit.KPA_X100),
    (header(Manufacturer="SIEMENS", ImageType=["ORIGINAL", "PRIMARY", "M", "ND"], SequenceName="*fl2d1_greMRE"),
     "siemens.gre.magnitude", SeriesRole.MAGNITUDE, ValueUnit.UNITLESS),
    (header(Manufacturer="SIEMENS", ImageType=["ORIGINAL", "PRIMARY", "P", "ND"], SequenceName="*fl2d1_greMRE"),
     "siemens.gre.phase", SeriesRole.PHASE, ValueUnit.UNKNOWN),
    (header(Manufacturer="SIEMENS", ImageType=["ORIGINAL", "PRIMARY", "M", "ND"], SequenceName=SIEMENS_EPI_SEQUENCE),
     "siemens.epi.magnitude", SeriesRole.MAGNITUDE, ValueUnit.UNITLESS),
    (header(Manufacturer="SIEMENS", ImageType=["ORIGINAL", "PRIMARY", "P", "ND"], SequenceName="*epiMRE2d"),
     "siemens.epi.phase", SeriesRole.PHASE, ValueUnit.UNKNOWN),
    (header(Manufacturer="Philips Medical Systems", ImageType=["ORIGINAL", "PRIMARY", "P", "MRE", "PHASE"]),
     "philips.phase", SeriesRole.PHASE, ValueUnit.UNKNOWN),
    (header(Manufacturer="CANON_MEC", ImageComments="Stiffness"),
     "canon.stiffness", SeriesRole.STIFFNESS, ValueUnit.UNKNOWN),
    (header(Manufacturer="TOSHIBA", ImageComments="PhaseDiff"),
     "canon.phase_difference", SeriesRole.WAVE, ValueUnit.UNKNOWN),
    (header(Manufacturer="TOSHIBA", ImageComments="Magnitude"),
     "canon.magnitude", SeriesRole.MAGNITUDE, ValueUnit.UNITLESS),
]


@pytest.mark.parametrize(("ds", "name", "role", "unit"), CASES, ids=[c[1] for c in CASES])
def test_each_rule_recognises_its_header(ds: Dataset, name: str, role: SeriesRole, unit: ValueUnit) -> None:
    match = match_series(ds)
    assert match is not None, f"no rule matched, expected {name}"
    assert (match.rule.name, match.role, match.unit) == (name, role, unit)
    assert match.describe().startswith(f"rule {name} ({match.rule.vendor}): ")


def test_every_rule_has_a_case() -> None:
    assert {c[1] for c in CASES} == {r.name for r in RULES}


def test_rule_names_unique_and_sources_present() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    assert all(r.source.strip() and r.recognises.strip() and r.predicates for r in RULES)
    assert all(r.vendor in {"GE", "Siemens", "Philips", "Canon", "Resoundant MMDI", "any"} for r in RULES)


def test_colour_rule_comes_first() -> None:
    assert RULES[0].name == "any.colour_save"


def test_rules_table_covers_all_rules() -> None:
    table = rules_table()
    assert [row["name"] for row in table] == [r.name for r in RULES]
    keys = {"order", "name", "vendor", "role", "unit", "criteria", "predicates", "recognises", "source"}
    assert all(set(row) == keys and all(row.values()) for row in table)
    assert "(0019,109C) equals 'MR-Touch'" in {row["name"]: row for row in table}["ge.mrtouch.raw"]["predicates"]


# --- the cases the registry exists for --------------------------------------------------------------

@pytest.mark.parametrize("description", ["Confidence", "Stiffness Confidence", "Elastogram confidence", "stgry conf"])
def test_confidence_is_never_stiffness(description: str) -> None:
    ds = header("MR-Touch", Manufacturer=GE_MANUFACTURER, SeriesDescription=description, ImageType=DSP)
    stiffness_roles = {SeriesRole.STIFFNESS, SeriesRole.MASKED_STIFFNESS, SeriesRole.HATCHED_STIFFNESS}
    assert not {m.role for m in matching_rules(ds)} & stiffness_roles


def test_elastogram_mask_is_masked_not_stiffness() -> None:
    ds = header("MR-Touch", Manufacturer=GE_MANUFACTURER, SeriesDescription="elastogram mask", ImageType=DSP)
    matches = matching_rules(ds)
    assert matches[0].rule.name == "ge.elastogram_mask"
    assert SeriesRole.STIFFNESS not in {m.role for m in matches}


def test_stgry_does_not_match_stgrym_and_back() -> None:
    ds = header(Manufacturer=GE_MANUFACTURER, SeriesDescription="stgrym")
    assert [m.rule.name for m in matching_rules(ds)] == ["ge.elastogram_mask"]


def test_rgb_stiffness_is_colour_save() -> None:
    ds = header(SeriesDescription="Stiffness", ImageType=DSP, PhotometricInterpretation="RGB", SamplesPerPixel=3)
    match = match_series(ds)
    assert match is not None and match.role is SeriesRole.COLOUR_SAVE
    only_samples = match_series(header(SeriesDescription="Stiffness", ImageType=DSP, SamplesPerPixel=3))
    assert only_samples is not None and only_samples.rule.name == "any.colour_save"


def test_unrelated_t2_series_matches_nothing() -> None:
    ds = header(Manufacturer=GE_MANUFACTURER, SeriesDescription="Ax T2 SSFSE", SequenceName="ssfse",
                ImageType=["ORIGINAL", "PRIMARY", "OTHER"], PhotometricInterpretation="MONOCHROME2", SamplesPerPixel=1)
    assert match_series(ds) is None
    assert matching_rules(ds) == []


def test_empty_header_matches_nothing() -> None:
    assert match_series(Dataset()) is None
    assert match_series({}) is None


def test_philips_ffe_magnitude_is_not_claimed() -> None:
    """hepsort's Philips magnitude rules (ORIGINAL, M, FFE) would claim any FFE image: left out."""
    assert match_series(header(Manufacturer="Philips", ImageType=["ORIGINAL", "PRIMARY", "M", "FFE", "M"])) is None


def test_siemens_raw_phase_with_wv_is_wave() -> None:
    ds = header(Manufacturer="SIEMENS", ImageType=["ORIGINAL", "PRIMARY", "P", "WV"], SequenceName="*fl2d1_greMRE")
    names = [m.rule.name for m in matching_rules(ds)]
    assert names[0] == "siemens.wave" and "siemens.gre.phase" not in names


def test_mmdi_stiffness_needs_derived_secondary_processed() -> None:
    assert match_series(header(SeriesDescription="Stiffness", ImageType=["ORIGINAL", "PRIMARY"])) is None


# --- header access ------------------------------------------------------------------------------------

def test_private_tag_read_by_number_whatever_the_creator() -> None:
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
    ds.private_block(0x0019, "SOME OTHER CREATOR", create=True).add_new(0x9C, "LO", "MR-Touch")
    assert (0x0019, 0x109C) in ds
    match = match_series(ds)
    assert match is not None and match.rule.name == "ge.mrtouch.raw"


def test_private_tag_as_unknown_vr_bytes() -> None:
    ds = Dataset()
    ds.add_new((0x0019, 0x109C), "UN", b"MR-Touch")
    assert Predicate("(0019,109C)", "equals", "MR-Touch").test(ds)


def test_plain_dict_headers() -> None:
    headers = [({"(0019,109C)": "MR-Touch", "ImageType": "ORIGINAL\\PRIMARY\\OTHER"}, "ge.mrtouch.raw"),
               ({0x0019109C: "MR-Touch", "ImageType": ["ORIGINAL"]}, "ge.mrtouch.raw"),
               ({"SeriesDescription": "Confidence", "ImageType": DSP}, "mmdi.confidence")]
    for plain, name in headers:
        match = match_series(plain)
        assert match is not None and match.rule.name == name


def test_get_rule() -> None:
    assert get_rule("mmdi.stiffness").unit is ValueUnit.PA
    with pytest.raises(KeyError):
        get_rule("no.such.rule")


# --- predicates ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [op for op in OPS if op != "absent"])
def test_predicate_on_missing_tag_is_false(op: str) -> None:
    value = {"any_of": ("a",), "gte": 1, "lte": 1, "present": None}.get(op, "a")
    predicate = Predicate("SeriesDescription", op, value)
    assert predicate.test(Dataset()) is False
    assert predicate.test({}) is False


def test_absent_and_negation_on_missing_tag() -> None:
    assert Predicate("SeriesDescription", "absent").test(Dataset()) is True
    assert Predicate("ImageType", "equals", "DERIVED", negate=True).test(Dataset()) is True


def test_predicate_never_raises_on_odd_values() -> None:
    class Broken:
        def get(self, key: Any) -> Any:
            raise RuntimeError("unreadable header")

    assert Predicate("ImageType", "equals", "DERIVED").test(Broken()) is False
    assert Predicate("SamplesPerPixel", "gte", 3).test({"SamplesPerPixel": "three"}) is False
    assert Predicate("SeriesDescription", "regex", "x").test({"SeriesDescription": 12}) is False


def test_word_is_whole_word_and_contains_is_substring() -> None:
    ds = {"SeriesDescription": "MR Touch image"}
    assert not Predicate("SeriesDescription", "word", "mag").test(ds)
    assert Predicate("SeriesDescription", "contains", "mag").test(ds)
    assert Predicate("SeriesDescription", "word", ("wave", "mr touch")).test(ds)
    assert Predicate("SeriesDescription", "word", "wave images").test({"SeriesDescription": "WAVE_IMAGES"})


def test_multivalued_equals_is_per_element() -> None:
    ds = {"ImageType": ["ORIGINAL", "PRIMARY", "M_SE"]}
    assert not Predicate("ImageType", "equals", "M").test(ds)
    assert Predicate("ImageType", "equals", "m_se").test(ds)
    assert Predicate("ImageType", "any_of", ("X", "PRIMARY")).test(ds)


def test_numeric_operators() -> None:
    ds = header(WindowCenter=950, WindowWidth=100)
    assert Predicate("WindowCenter", "gte", 950).test(ds)
    assert Predicate("WindowWidth", "lte", 100).test(ds)
    assert not Predicate("WindowWidth", "gte", 101).test(ds)
    assert Predicate("WindowCenter", "equals", 950.0).test(ds)


def test_predicate_and_rule_validation() -> None:
    with pytest.raises(ValueError):
        Predicate("ImageType", "startswith", "X")
    with pytest.raises(ValueError):
        Predicate("NotADicomKeyword", "present")
    with pytest.raises(ValueError):
        Predicate("ImageType", "any_of", "X")
    with pytest.raises(ValueError):
        Predicate("WindowCenter", "gte", "high")
    with pytest.raises(ValueError):
        Rule("x", "any", "x", (Predicate("ImageType", "present"),), SeriesRole.OTHER, ValueUnit.UNKNOWN, "", "all")
    with pytest.raises(ValueError):
        Rule("x", "any", "x", (Predicate("ImageType", "present"),), SeriesRole.OTHER, ValueUnit.UNKNOWN, "s", "most")


def test_rules_are_printable_data() -> None:
    for rule in RULES:
        assert rule.describe_predicates()
        assert all(isinstance(p, Predicate) and not callable(p.value) for p in rule.predicates)
    assert get_rule("ge.elastogram").predicates[2].describe() == "SeriesDescription not word ('mask', 'stgrym')"


def test_importable_without_torch() -> None:
    code = "import sys, mre_core.io.vendor_rules; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
