"""Stored DICOM pixel values → kPa: the modality LUT, then a vendor unit profile.

Profiles (DESIGN.md): ``siemens`` stored = kPa x 100 (the window 400/800 spans 0-8 kPa; a
working assumption shown in the UI), ``ge`` stored = Pa, a RealWorldValueMapping with a UCUM
``kPa``/``Pa`` unit (applied to stored values, as the standard defines it), or ``custom``
(user factor). An explicit profile in :class:`~mre_core.config.Settings` always wins.
"""

from __future__ import annotations

import logging
import re

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import apply_rescale

from mre_core.config import Settings
from mre_core.io.elastogram import VendorProfile

logger = logging.getLogger(__name__)

#: unknown manufacturer, no RWVM: median non-zero (rescaled) value below this → kPa (a liver is 1-15 kPa) …
AUTO_KPA_MAX_MEDIAN = 30.0
#: … at or below this → kPa x 100 (100-1500 for a liver), above → Pa (1000-15000)
AUTO_KPA100_MAX_MEDIAN = 1000.0


#: kPa per stored unit for the units a vendor rule can name (:class:`~mre_core.io.vendor_rules.ValueUnit` values)
RULE_UNITS: dict[str, tuple[VendorProfile, float]] = {
    "pa": (VendorProfile.PA, 0.001), "kpa": (VendorProfile.KPA, 1.0), "kpa_x100": (VendorProfile.SIEMENS, 0.01),
}


_UNIT_WORDS = {"pa": "Pa", "kpa": "kPa", "kpa_x100": "kPa x 100"}


def to_kpa(values: np.ndarray, ds_header: Dataset, settings: Settings,
           hint_values: np.ndarray | None = None, rule_unit: str | None = None,
           ) -> tuple[np.ndarray, VendorProfile, float]:
    """Stored pixel values → kPa (modality LUT, then the vendor profile).

    Parameters
    ----------
    values : array, stored pixel values (any shape)
    ds_header : pydicom Dataset
        Supplies RescaleSlope/Intercept, Manufacturer and RealWorldValueMappingSequence, all read at
        its top level. For a frame of an Enhanced MR multi-frame image the reader passes the frame's
        header, on which the frame's Pixel Value Transformation (DICOM PS3.3 C.7.6.16.2.9) and Real
        World Value Mapping (PS3.3 C.7.6.16.2.11) functional groups (per-frame, else shared) are set at
        the top level, replacing the file's top-level values (see ``mre_core.io.reader._frame_header``).
    settings : Settings
        An explicit ``profile`` overrides detection; ``custom`` uses ``custom_kpa_per_unit``.
    hint_values : array, optional
        Stored values of the whole series, for the range heuristic (default ``values``).
    rule_unit : str, optional
        The unit a named vendor rule assigns to the series (``"pa"``, ``"kpa"``, ``"kpa_x100"``):
        used after an explicit profile and a RealWorldValueMapping, before the manufacturer.

    Returns
    -------
    kpa : float32 array, kPa
    profile : VendorProfile
    kpa_per_unit : float
        kPa per rescaled stored unit (for RWVM: per stored unit, the mapping's slope).

    Notes
    -----
    Order: explicit profile; RWVM with UCUM ``kPa``/``Pa`` (applied to stored values, as
    the standard defines it); Manufacturer SIEMENS (kPa x 100) or GE (Pa); otherwise the
    median non-zero value decides: < 30 → kPa, <= 1000 → kPa x 100 (up to 10 kPa), above → Pa. That
    guess is logged; a study with stiff livers on an unknown scanner can be misread, so
    the profile is always shown and the user can override it.
    """
    stored = np.asarray(values)
    explicit = {"siemens": (VendorProfile.SIEMENS, 0.01), "ge": (VendorProfile.GE, 0.001)}
    if settings.profile == "custom":
        return _rescaled(stored, ds_header) * np.float32(settings.custom_kpa_per_unit), \
            VendorProfile.CUSTOM, float(settings.custom_kpa_per_unit or 0.0)
    if settings.profile in explicit:
        profile, factor = explicit[settings.profile]
        return _rescaled(stored, ds_header) * np.float32(factor), profile, factor
    rwvm = _rwvm(ds_header)
    if rwvm is not None:
        slope, intercept, unit = rwvm
        kpa = (stored.astype(np.float64) * slope + intercept) * unit
        return kpa.astype(np.float32), VendorProfile.RWVM, slope * unit
    if rule_unit in RULE_UNITS:
        profile, factor = RULE_UNITS[rule_unit]
        return _rescaled(stored, ds_header) * np.float32(factor), profile, factor
    profile, factor = _auto_profile(ds_header, stored if hint_values is None else hint_values)
    return _rescaled(stored, ds_header) * np.float32(factor), profile, factor


def _rescaled(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        return np.asarray(apply_rescale(stored.astype(np.float64), ds), dtype=np.float32)
    return stored.astype(np.float32)


def _rwvm(ds: Dataset) -> tuple[float, float, float] | None:
    """(slope, intercept, kPa per unit) of a RealWorldValueMapping in kPa or Pa, else None."""
    for item in ds.get("RealWorldValueMappingSequence", []):
        units = item.get("MeasurementUnitsCodeSequence", [])
        code = str(units[0].get("CodeValue", "")) if units else ""
        if code in ("kPa", "Pa"):
            return (float(item.get("RealWorldValueSlope", 1.0)), float(item.get("RealWorldValueIntercept", 0.0)),
                    1.0 if code == "kPa" else 0.001)
    return None


def _auto_profile(ds: Dataset, hint: np.ndarray) -> tuple[VendorProfile, float]:
    maker = str(ds.get("Manufacturer", "")).upper()
    if "SIEMENS" in maker:
        return VendorProfile.SIEMENS, 0.01
    if re.search(r"\bGE\b|GENERAL ELECTRIC", maker):
        return VendorProfile.GE, 0.001
    values = _rescaled(np.asarray(hint), ds)
    nonzero = values[values != 0]
    median = float(np.median(nonzero)) if nonzero.size else 0.0
    if median < AUTO_KPA_MAX_MEDIAN:
        profile, factor = VendorProfile.KPA, 1.0
    elif median <= AUTO_KPA100_MAX_MEDIAN:
        profile, factor = VendorProfile.SIEMENS, 0.01
    else:
        profile, factor = VendorProfile.GE, 0.001
    logger.warning("unknown manufacturer %r and no RealWorldValueMapping: median value %.3g → profile %s "
                   "(set the profile explicitly if this is wrong)", maker, median, profile.value)
    return profile, factor


def profile_note(ds: Dataset, settings: Settings, rule: str | None = None, rule_unit: str | None = None) -> str:
    """How the unit profile was chosen, in words (``StudyInput.meta`` and the ``unit_rule`` of a result).

    Starts with ``"fallback: "`` when the unit was guessed from the value range.
    """
    if settings.profile != "auto":
        return f"set by user: {settings.profile}"
    if _rwvm(ds) is not None:
        return "RealWorldValueMapping units (kPa/Pa)"
    if rule and rule_unit in RULE_UNITS:
        return f"rule {rule}: stored value = {_UNIT_WORDS[rule_unit]}"
    maker = str(ds.get("Manufacturer", ""))
    if "SIEMENS" in maker.upper() or re.search(r"\bGE\b|GENERAL ELECTRIC", maker.upper()):
        return f"Manufacturer {maker!r}"
    return f"fallback: guessed from the value range (unknown manufacturer {maker!r}); check it"
