"""One settings object for the library, the CLI, the app and the listener.

:class:`Settings` is a frozen dataclass. Build it from environment variables
(``MRE_*``) with :meth:`Settings.from_env` and override single fields with
:func:`dataclasses.replace` (the CLI flags and the app's sidebar do this). Nothing
in ``mre_core`` reads the environment anywhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping

from mre_core.analysis.staging import PAPER_TABLE, StagingTable, get_table

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS_DIR = REPO_ROOT / "weights"
DEFAULT_MODEL_NAME = "unet_resnext50_32x4d"

PROFILES = ("auto", "siemens", "ge", "custom")

#: The shortest de-identification key accepted, in bytes (32 = 256 bits, as HMAC-SHA256's own output).
MIN_DEID_KEY_BYTES = 32
#: The placeholder of ``.streamlit/secrets.toml.example``; a secret still containing it counts as not set.
SECRET_PLACEHOLDER = "CHANGE-ME"
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Settings:
    """Every tunable of the pipeline, with its unit in the name.

    Parameters
    ----------
    device:
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    weights_dir, model_name:
        Where the model lives: ``<weights_dir>/<model_name>.safetensors`` + ``.json``.
    profile:
        Vendor unit profile: ``"auto"`` (from Manufacturer / RealWorldValueMapping units),
        ``"siemens"`` (stored value = kPa x 100), ``"ge"`` (stored = Pa) or ``"custom"``.
    custom_kpa_per_unit:
        kPa per (rescaled) stored unit, used when ``profile == "custom"``.
    mask_threshold:
        Probability above which a pixel belongs to the predicted liver ROI; ``None`` uses the
        threshold stored with the model.
    min_component_area_mm2:
        Connected ROI pieces smaller than this (after ∩ confidence region) are dropped: a reader does not
        measure stiffness in a fragment of a few pixels. 300 mm² (3 cm²) was chosen on a separate phantom
        tuning cohort (60 patients, seed 777; ``tools/tune_roi_rules.py``), never on the test split: mean
        slice Dice 0.899 at 50 mm², 0.901 at 200, 0.909 at 300, 0.910 at 400, 0.905 at 500 mm².
    roi_guardrails:
        Keep the automatic ROI to one predicted liver region and leave out of the study value a slice
        whose automatic ROI is scattered, uncertain or on the spleen side
        (:mod:`mre_core.analysis.guardrails`). Off only to measure what they change.
    roi_stability:
        With the guardrails on, run the network again on four slightly zoomed or shifted copies of the study and
        leave out a slice whose automatic ROI does not survive them (``ROI_UNSTABLE``;
        :mod:`mre_core.analysis.stability`). Costs four copies of each usable slice through the network (one
        batch; about four times the model time on a CPU, docs/PERFORMANCE.md); off only to measure what it
        changes or where time matters more than this check.
    liver_margin_mm:
        For a model with a liver output: the automatic ROI stays this far inside the predicted liver (its
        largest piece, eroded by this margin; 0 = no erosion). Models with only an ROI output ignore it.
        10 mm is published practice: the ROI at least about 1 cm inside the liver edge (Venkatesh & Ehman,
        Magn Reson Imaging Clin N Am 2014;22:433-446; Dzyubak et al., JMRI 2013;38:371-379 and 2016;43:1055-1063,
        ALEC: the liver eroded ~1 cm from its edge; the same rule draws the phantoms' expert ROI).
        It was 5 mm until 2026-12-02; on three phantom safety sets (never trained on) 10 mm gave fewer ROI
        pixels outside the liver and one slice fewer over 10 % at 0.005 less Dice (docs/GENERALISATION.md).
    min_roi_area_cm2:
        A slice whose final ROI is smaller than this is flagged ``SMALL_ROI``
        (and an empty ROI is flagged ``EMPTY_ROI`` and left out of the study value).
    min_slices:
        Fewer usable slices than this flags the study ``FEW_SLICES``.
    max_slice_cv:
        Coefficient of variation of slice means above this flags ``HIGH_SLICE_SPREAD``.
    plausible_kpa:
        Median ROI stiffness outside this range flags ``IMPLAUSIBLE_VALUES`` (wrong unit profile?).
    max_file_mb:
        Files larger than this are refused before they are read.
    inference_batch:
        Slices per forward pass (all slices of a study usually fit in one).
    staging:
        The cut-off table used by :func:`mre_core.analysis.staging.stage`.
    db_url:
        SQLAlchemy URL of the results store.
    inbox_dir:
        Where the DICOM listener and the watch folder file received instances (see :mod:`mre_core.store.inbox`).
    models_dir:
        Where site-trained models and their training runs are written (one folder per model; see
        :mod:`mre_core.store.models` and :mod:`mre_core.workflow.training_job`).
    """

    device: str = "auto"
    weights_dir: Path = DEFAULT_WEIGHTS_DIR
    model_name: str = DEFAULT_MODEL_NAME
    profile: str = "auto"
    custom_kpa_per_unit: float | None = None
    mask_threshold: float | None = None
    min_component_area_mm2: float = 300.0
    roi_guardrails: bool = True
    roi_stability: bool = True
    liver_margin_mm: float = 10.0
    min_roi_area_cm2: float = 2.0
    min_slices: int = 3
    max_slice_cv: float = 0.20
    plausible_kpa: tuple[float, float] = (0.5, 20.0)
    max_file_mb: float = 100.0
    inference_batch: int = 8
    staging: StagingTable = field(default=PAPER_TABLE)
    db_url: str = f"sqlite:///{REPO_ROOT / 'data' / 'mre_review.sqlite'}"
    inbox_dir: Path = REPO_ROOT / "data" / "inbox"
    models_dir: Path = REPO_ROOT / "data" / "models"

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if self.profile == "custom" and not (self.custom_kpa_per_unit and self.custom_kpa_per_unit > 0):
            raise ValueError("profile 'custom' needs custom_kpa_per_unit > 0 (kPa per stored unit), e.g. 0.01")
        if self.mask_threshold is not None and not 0.0 < self.mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in (0, 1), got {self.mask_threshold}")
        if self.liver_margin_mm < 0:
            raise ValueError(f"liver_margin_mm must be >= 0 (0 = no margin), got {self.liver_margin_mm}")
        if self.max_file_mb <= 0:
            raise ValueError("max_file_mb must be > 0")

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)

    @property
    def weights_path(self) -> Path:
        return Path(self.weights_dir) / f"{self.model_name}.safetensors"

    @property
    def model_config_path(self) -> Path:
        return Path(self.weights_dir) / f"{self.model_name}.json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from ``MRE_<FIELD>`` variables (e.g. ``MRE_DEVICE=cpu``), then ``overrides``.

        ``MRE_STAGING`` names a table (``paper`` or ``rdes149``); ``MRE_PLAUSIBLE_KPA`` is ``"low,high"``.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"MRE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


class DeidKeyError(ValueError):
    """No usable de-identification key: none configured, or too short. The message says how to set one."""


DEID_KEY_HELP = ("set one in .streamlit/secrets.toml ([deid] key = \"...\") or in the environment (MRE_DEID_KEY); "
                 "make it with: python -c \"import secrets; print(secrets.token_hex(32))\". Keep it secret and keep "
                 "it: the same key gives the same pseudonyms in every export")


def deid_key(secrets: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None) -> bytes:
    """The key for de-identified research exports (:func:`mre_core.access.deid.deidentify`), as bytes.

    Read from ``secrets["deid"]["key"]`` (the app passes ``st.secrets``), else ``MRE_DEID_KEY``; secrets win, as
    for the other settings. It is kept out of :class:`Settings` on purpose, so it never reaches the settings
    JSON saved with each result. There is no default key: without one this raises :class:`DeidKeyError`.
    """
    env = os.environ if environ is None else environ
    section = (secrets or {}).get("deid")
    raw = section.get("key") if isinstance(section, Mapping) else None
    if not raw:
        raw = env.get("MRE_DEID_KEY")
    if not raw:
        raise DeidKeyError(f"no de-identification key configured: {DEID_KEY_HELP}")
    return check_deid_key(str(raw).strip().encode("utf-8"))


def check_deid_key(key: bytes | None) -> bytes:
    """``key`` when it is usable: bytes, at least :data:`MIN_DEID_KEY_BYTES` long, not the example's placeholder."""
    if not key:
        raise DeidKeyError(f"no de-identification key given, and no default key is used: {DEID_KEY_HELP}")
    if not isinstance(key, bytes):
        raise TypeError(f"the de-identification key must be bytes, got {type(key).__name__}")
    if SECRET_PLACEHOLDER.lower().encode() in key.lower():
        raise DeidKeyError(f"the de-identification key is still the example's {SECRET_PLACEHOLDER} placeholder: "
                           f"{DEID_KEY_HELP}")
    if len(key) < MIN_DEID_KEY_BYTES:
        raise DeidKeyError(f"the de-identification key is {len(key)} bytes, shorter than {MIN_DEID_KEY_BYTES}: "
                           f"{DEID_KEY_HELP}")
    return key


def _parse(name: str, raw: str) -> object:
    if name == "staging":
        return get_table(raw)
    if name in ("weights_dir", "inbox_dir", "models_dir"):
        return Path(raw)
    if name == "plausible_kpa":
        low, high = (float(x) for x in raw.split(","))
        return (low, high)
    if name in ("min_slices", "inference_batch"):
        return int(raw)
    if name in ("device", "model_name", "profile", "db_url"):
        return raw
    if name in ("roi_guardrails", "roi_stability"):
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(f"MRE_{name.upper()}={raw!r}: use 1/0, true/false, yes/no or on/off")
        return raw.lower() in ("1", "true", "yes", "on")
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"MRE_{name.upper()}={raw!r} is not a number") from None
