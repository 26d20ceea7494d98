"""De-identified exports: names gone, stable keyed pseudonyms, no key → refusal, the record holds no key."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mre_core.access.deid import DEFAULT_DROP, deidentify, key_fingerprint, pseudonym
from mre_core.config import DeidKeyError, deid_key

KEY = b"k" * 32
OTHER = b"o" * 32


def _cohort() -> pd.DataFrame:
    """Columns as the cohort export and Store.latest_table have them, plus a few DICOM-style ones."""
    return pd.DataFrame({
        "patient_id": ["P001", "P002", "P001", None],
        "patient_name": ["DOE^JANE", "ROE^RICHARD", "DOE^JANE", ""],
        "PatientBirthDate": ["19600101", "19700202", "19600101", ""],
        "study_uid": ["1.2.3.1", "1.2.3.2", "1.2.3.3", "1.2.3.4"],
        "series_uid": ["1.2.3.1.1", "1.2.3.2.1", "1.2.3.3.1", "1.2.3.4.1"],
        "accession_number": ["A1", "A2", "A3", ""],
        "study_date": ["2025-03-14", "20240102", "", None],
        "created_utc": ["2025-03-15T10:00:00+00:00"] * 4,
        "comment": ["Mrs Doe, re-scan", "", "", ""],
        "stiffness_kpa": [2.5, 3.9, 2.7, 4.1],
        "reviewer": ["Dr Bob"] * 4,
    })


def test_names_birth_dates_and_free_text_are_gone() -> None:
    out, record = deidentify(_cohort(), KEY)
    assert not {"patient_name", "PatientBirthDate", "comment"} & set(out.columns)
    text = out.to_csv(index=False)
    for value in ("DOE", "ROE", "19600101", "P001", "1.2.3.1", "A1", "Mrs Doe"):
        assert value not in text
    assert set(record.dropped) == {"patient_name", "PatientBirthDate", "comment"}
    assert out["stiffness_kpa"].tolist() == [2.5, 3.9, 2.7, 4.1]  # values untouched
    assert "stiffness_kpa" in record.kept and "reviewer" in record.kept


def test_the_same_id_gets_the_same_pseudonym_with_the_same_key() -> None:
    out, _ = deidentify(_cohort(), KEY)
    again, _ = deidentify(_cohort().iloc[::-1], KEY)
    assert out.loc[0, "patient_id"] == out.loc[2, "patient_id"] != out.loc[1, "patient_id"]
    assert out.loc[0, "patient_id"] == again.loc[0, "patient_id"]  # stable across exports
    assert out.loc[0, "patient_id"].startswith("pt-") and len(out.loc[0, "patient_id"]) == 3 + 16
    assert out.loc[0, "study_uid"].startswith("st-") and out.loc[0, "series_uid"].startswith("se-")
    assert out.loc[0, "accession_number"].startswith("acc-")
    assert pd.isna(out.loc[3, "patient_id"]) and out.loc[3, "accession_number"] == ""  # blanks stay blank


def test_a_different_key_gives_different_pseudonyms() -> None:
    a, ra = deidentify(_cohort(), KEY)
    b, rb = deidentify(_cohort(), OTHER)
    assert not set(a["patient_id"].dropna()) & set(b["patient_id"].dropna())
    assert ra.key_fingerprint != rb.key_fingerprint


def test_the_kind_of_identifier_is_part_of_the_pseudonym() -> None:
    assert pseudonym("123", KEY, "pt")[3:] != pseudonym("123", KEY, "st")[3:]


def test_dates_keep_only_the_year_by_default_or_go() -> None:
    out, record = deidentify(_cohort(), KEY)
    assert out["study_date"].tolist() == ["2025", "2024", "", ""]
    assert set(out["created_utc"]) == {"2025"}
    assert record.dates == "year" and set(record.date_columns) == {"study_date", "created_utc"}
    dropped, record = deidentify(_cohort(), KEY, dates="drop")
    assert "study_date" not in dropped and "study_date" in record.dropped
    kept, record = deidentify(_cohort(), KEY, dates="keep")
    assert kept["study_date"].iloc[0] == "2025-03-14" and record.dates == "keep"


def test_datetime_columns_become_years() -> None:
    frame = pd.DataFrame({"study_day": pd.to_datetime(["2025-03-14", None]), "patient_id": ["a", "b"]})
    out, _ = deidentify(frame, KEY)
    assert out["study_day"].tolist() == ["2025", ""]


@pytest.mark.parametrize("key", [None, b""])
def test_no_key_is_refused_rather_than_a_default_key(key: bytes | None) -> None:
    with pytest.raises(DeidKeyError, match="MRE_DEID_KEY"):
        deidentify(_cohort(), key)


def test_a_short_or_placeholder_key_is_refused() -> None:
    with pytest.raises(DeidKeyError, match="shorter than 32"):
        deidentify(_cohort(), b"short")
    with pytest.raises(DeidKeyError, match="placeholder"):
        deidentify(_cohort(), b"CHANGE-ME-64-random-hex-characters")


def test_the_record_says_what_was_done_and_never_holds_the_key() -> None:
    key = b"s3cr3t-key-0123456789abcdef-XYZW"
    _, record = deidentify(_cohort(), key)
    text = record.to_json()
    assert key.decode() not in text and key.hex() not in text
    data = json.loads(text)
    assert data["key_fingerprint"] == key_fingerprint(key) and data["key_fingerprint"].startswith("hmac-sha256:")
    assert data["replaced"] == {"patient_id": "pt", "study_uid": "st", "series_uid": "se", "accession_number": "acc"}
    assert "HMAC-SHA256" in data["method"] and data["n_rows"] == 4


def test_a_column_both_to_drop_and_to_pseudonymise_is_an_error() -> None:
    with pytest.raises(ValueError, match="both"):
        deidentify(_cohort(), KEY, drop=(*DEFAULT_DROP, "accession_number"))


def test_the_key_comes_from_secrets_then_the_environment_never_a_default() -> None:
    env_key, secret_key = "e" * 40, "s" * 40
    assert deid_key({"deid": {"key": secret_key}}, {"MRE_DEID_KEY": env_key}) == secret_key.encode()
    assert deid_key({}, {"MRE_DEID_KEY": env_key}) == env_key.encode()
    with pytest.raises(DeidKeyError, match=r"\[deid\] key"):
        deid_key({}, {})
    with pytest.raises(DeidKeyError, match="shorter"):
        deid_key(None, {"MRE_DEID_KEY": "abc"})


def test_the_cohort_export_columns_keep_no_identifier() -> None:
    from mre_core.app.cohort_data import EXPORT_COLUMNS, IDENTIFYING_COLUMNS

    row = {c: f"value-{c}" for c in (*EXPORT_COLUMNS, *IDENTIFYING_COLUMNS)}
    row.update(study_date="2025-03-14", created_utc="2025-03-15T10:00:00+00:00")
    out, record = deidentify(pd.DataFrame([row]), KEY)
    assert set(IDENTIFYING_COLUMNS) <= set(record.dropped)
    assert set(record.replaced) == {"patient_id", "study_uid", "series_uid"}
    assert (out["study_date"].iloc[0], out["created_utc"].iloc[0]) == ("2025", "2025")
    text = out.to_csv(index=False)
    assert not any(f"value-{c}" in text for c in ("patient_id", "study_uid", "series_uid", *IDENTIFYING_COLUMNS))
