"""The boundary contract between DICOM ingest and the rest of the pipeline.

``mre_core.io.reader`` turns files into these objects; nothing downstream of it
imports pydicom or looks at stored pixel values. Reader contract (in the spirit of
nnU-Net's ``read_images`` docstring):

* ``Elastogram.kpa`` is float32 ``[rows, cols]`` in **kPa**, after the DICOM modality
  LUT (RescaleSlope/Intercept) and the vendor profile's scale. Pixels that carry no
  stiffness value (burned-in cross-hatch lines, zero fill, background) are ``NaN``.
* ``Elastogram.confidence`` is bool ``[rows, cols]``: the scanner's 95 % confidence
  region, read from the data. It is always a subset of ``isfinite(kpa)``.
* ``pixel_spacing_mm`` is ``(row spacing, column spacing)`` in mm, from PixelSpacing.
* Slices of an :class:`ElastogramSeries` are sorted by ``position_mm`` (along the
  slice normal), ties broken by InstanceNumber.
* ``Elastogram.magnitude`` is float32 ``[rows, cols]`` on the elastogram's grid: the magnitude image
  of the same slice (rescaled stored values), or None when the study has none at the analysed
  slice positions (``ElastogramSeries.magnitude_rule`` says which and why). It is anatomy for the
  reader and later models; no stiffness value or confidence region is computed from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np


class VendorProfile(str, Enum):
    """How stored (rescaled) pixel values become kPa."""

    SIEMENS = "siemens"  #: stored value = kPa x 100 (window 400/800 spans 0-8 kPa); a working assumption
    GE = "ge"  #: stored value = Pa
    CUSTOM = "custom"  #: user-supplied kPa per stored unit
    RWVM = "rwvm"  #: RealWorldValueMapping with a kPa/Pa unit, used as is
    PA = "pa"  #: stored value = Pa, by a named vendor rule (e.g. Resoundant MMDI "Stiffness" at any site)
    KPA = "kpa"  #: stored value = kPa, by a named vendor rule


class ConfidenceEncoding(str, Enum):
    """How the 95 % confidence region is marked in the data."""

    ZERO_FILL = "zero_fill"  #: low-confidence pixels stored as 0
    CROSS_HATCH = "cross_hatch"  #: a diagonal cross-hatch burned into low-confidence pixels
    PAIRED_SERIES = "paired_series"  #: GE style: full map + confidence-masked copy
    CONFIDENCE_MAP = "confidence_map"  #: a separate confidence-map series (per mille or percent), region >= 95 %
    NONE = "none"  #: no marking found (every non-zero pixel treated as confident; flagged)


@dataclass(frozen=True, eq=False)
class Elastogram:
    """One slice of a gray-scale elastogram with its confidence region.

    Attributes
    ----------
    kpa : float32 [rows, cols]
        Stiffness in kPa; NaN where the pixel holds no stiffness value.
    confidence : bool [rows, cols]
        95 % confidence region; subset of ``isfinite(kpa)``.
    pixel_spacing_mm : (float, float)
        Row and column spacing, mm.
    sop_uid, series_uid, study_uid, patient_id : str
        Identifiers of the source instance (for GE pairs: the confidence-masked copy).
    instance_number : int
    position_mm : float
        Position along the slice normal, mm (for sorting and reports).
    profile : VendorProfile
        The unit profile that produced ``kpa``.
    kpa_per_unit : float
        kPa per rescaled stored unit actually applied.
    encoding : ConfidenceEncoding
    source : str
        File name (or ``zip:member``) the slice came from.
    frame_number : int or None
        1-based frame number when the source instance is an Enhanced MR multi-frame image; then
        ``sop_uid`` is ``<SOPInstanceUID>#<frame>`` (a key, unique per slice) and ``header`` is the
        whole multi-frame header, with the frame's own rescale and real-world value mapping (from its
        functional groups) at the top level when the groups hold them (``reader._frame_header``).
    header : Any
        The pydicom header (no pixel data) of the source instance, kept opaque so that
        ``mre_core.outputs.tables`` can build a DICOM SEG referencing it. Downstream code must not
        read it for computation.
    magnitude : float32 [rows, cols] or None
        The magnitude image of the same slice (same position and frame of reference) on this
        slice's grid: the paired magnitude file's stored values after RescaleSlope/Intercept,
        resampled bilinearly only when its grid differs over the same field of view (see
        ``ElastogramSeries.magnitude_rule``). The anatomical reference a reader draws the ROI on;
        never used for the stiffness value or the confidence region. None when no magnitude was paired.
    magnitude_source : str
        File name (``zip:member``, ``file#frame``) of the paired magnitude slice; ``""`` when none.
    """

    kpa: np.ndarray
    confidence: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    sop_uid: str
    series_uid: str
    study_uid: str
    patient_id: str
    instance_number: int
    position_mm: float
    profile: VendorProfile
    kpa_per_unit: float
    encoding: ConfidenceEncoding
    source: str
    header: Any = field(default=None, repr=False)
    frame_number: int | None = None  #: 1-based frame when the source is a multi-frame (Enhanced MR) image
    magnitude: np.ndarray | None = field(default=None, repr=False)  #: float32, the paired magnitude slice
    magnitude_source: str = ""  #: the file the magnitude slice came from

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.kpa.shape[0]), int(self.kpa.shape[1]))

    @property
    def pixel_area_mm2(self) -> float:
        return float(self.pixel_spacing_mm[0] * self.pixel_spacing_mm[1])


@dataclass(frozen=True, eq=False)
class ElastogramSeries:
    """The elastogram-with-confidence series chosen for one study, slices sorted."""

    series_uid: str
    description: str
    manufacturer: str
    slices: tuple[Elastogram, ...]
    paired_series_uid: str | None = None  #: GE style: the full stiffness map's series
    confidence_series_uid: str | None = None  #: the separate confidence-map series, when one was used
    series_rule: str = ""  #: the vendor rule that chose this series, or "fallback: …"
    unit_rule: str = ""  #: how the unit was decided (rule name, RWVM, manufacturer, or "fallback: …")
    confidence_rule: str = ""  #: how the 95 % confidence region was read
    ingest_flags: tuple[str, ...] = ()  #: ``QcFlag`` values raised while reading (fallback, ambiguity, …)
    magnitude_series_uid: str | None = None  #: the magnitude series paired slice by slice, when one was
    magnitude_rule: str = ""  #: how the magnitude was paired (or why not), in words

    @property
    def profile(self) -> VendorProfile:
        return self.slices[0].profile

    @property
    def encoding(self) -> ConfidenceEncoding:
        return self.slices[0].encoding


@dataclass(frozen=True, eq=False)
class StudyInput:
    """One study ready for analysis: who, which study, and its elastogram series."""

    patient_id: str
    study_uid: str
    series: ElastogramSeries
    meta: dict[str, str] = field(default_factory=dict)  #: PatientName, PatientAge, PatientSex, StudyDate, ...


@dataclass(frozen=True)
class SkippedFile:
    """A file, or a whole series, that was not analysed, and why, in words a user can act on.

    A series left out is one entry: ``file`` is its first file, ``files`` all of them, and
    ``series_number``, ``series_description``, ``role`` (what the series was recognised as) and
    ``rule`` (the vendor rule that said so, or ``"fallback: …"``) describe it.
    """

    file: str
    reason: str
    series_uid: str = ""
    series_number: str = ""
    series_description: str = ""
    role: str = ""
    rule: str = ""
    files: tuple[str, ...] = ()

    @property
    def n_files(self) -> int:
        return len(self.files) or 1

    def describe(self) -> str:
        """One line: ``series 7 'Shear Wave' (3 files): wave [mmdi.shear_wave] — reason`` (or ``file: reason``)."""
        if not self.series_uid:
            return f"{self.file}: {self.reason}"
        role = f"{self.role} [{self.rule}]" if self.rule else self.role or "unknown"
        files = f"{self.n_files} file{'s' if self.n_files != 1 else ''}"
        return f"series {self.series_number or '?'} '{self.series_description}' ({files}): {role} — {self.reason}"


@dataclass(frozen=True, eq=False)
class ReadResult:
    """What ingest found: the studies to analyse and everything left out, with reasons."""

    studies: tuple[StudyInput, ...]
    skipped: tuple[SkippedFile, ...]
