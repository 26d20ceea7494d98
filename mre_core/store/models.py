"""The model registry: every segmentation model the site has used or trained, which one is active, and why.

A model is registered once, by its weights' SHA-256: ``version`` is ``<name>@<sha256[:12]>``, the same string
every saved revision carries (``revisions.model_name`` / ``model_sha256``), so any result can be traced to the
entry that produced it — its weights folder, training-data manifest, training settings, metrics and creator.
Activation is a history (``model_activations``, never updated): the latest row is the active model, a rollback
is a new row, and every activation, override and rollback is in the audit log (``model:activate``,
``model:rollback``, ``model:register``).

The activation gate (:func:`activation_check`) compares a candidate with the active model on the candidate's
own held-out studies. The training side writes the comparison into the entry's ``metrics``::

    {"heldout": {"n_studies": 4, "n_slices": 16, "study_uids": ["1.2.3", ...],
                 "candidate": {"version": "site_a@0123456789ab",
                               "dice": {"value": 0.81, "ci_low": 0.75, "ci_high": 0.86},
                               "f2_specificity": {"value": 1.0, "ci_low": 0.51, "ci_high": 1.0},
                               "f2_sensitivity": {"value": 0.9, "ci_low": 0.6, "ci_high": 0.98}, ...},
                 "baseline": {"version": "<the model active when they were compared>",
                              "dice": {...}, "f2_specificity": {...}, ...}}}

A metric may also be a bare number. The gate passes only when that block exists, ``baseline.version`` is the
model active now, and the candidate's Dice and F2 specificity are each at least the baseline's; an F2
specificity that could not be measured (no F0–F1 study among the held-out ones: ``None`` or NaN) does not pass.
Otherwise :func:`activate` refuses unless ``override=True`` with a reason, and the override is recorded.

Rules this module chose:

* A shipped model has no held-out comparison with a site model, so activating it again goes through
  :func:`rollback` (no gate: it is the way back) or an explicit override.
* Activating the model that is already active is refused, override or not; so is an entry whose files are
  missing or no longer match their SHA-256.
* :func:`rollback` returns to the latest activation's ``previous_version``: it undoes the last change, and a
  second rollback undoes the rollback.
* With no activation yet the active model is the latest registered shipped model (:func:`ensure_shipped`).

Pure SQLAlchemy, JSON and hashlib: nothing here imports torch or :mod:`mre_core.model`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from mre_core.config import DEFAULT_MODEL_NAME, DEFAULT_WEIGHTS_DIR, Settings
from mre_core.store.audit import append_entry, utc_now
from mre_core.store.results import Store
from mre_core.store.schema import model_activations, models

ORIGINS = ("shipped", "site")
NO_SPECIFICITY = "F2 specificity could not be measured on the held-out studies (no F0–F1 study)"


class RegistryError(ValueError):
    """A registry action that cannot be done (unknown version, nothing to roll back to…); the message says why."""


class ModelFilesError(RegistryError):
    """A model's files are missing, or its weights do not match the SHA-256 in its ``<name>.json``."""


class ActivationRefused(ValueError):
    """The gate refused an activation; ``reasons`` lists why (override with a reason to activate anyway)."""

    def __init__(self, version: str, reasons: list[str], hint: str = "") -> None:
        self.version, self.reasons = version, list(reasons)
        super().__init__(f"{version} was not activated: " + "; ".join(reasons) + (f". {hint}" if hint else ""))


@dataclass(frozen=True)
class ModelEntry:
    """One registered model (a row of ``models``)."""

    version: str  #: ``<name>@<sha256[:12]>``
    name: str
    sha256: str
    weights_dir: Path
    arch: str
    origin: str  #: ``"shipped"`` | ``"site"``
    parent_version: str  #: the model it was fine-tuned from ("" if none)
    created_utc: str
    created_by: str
    manifest: dict  #: training data: studies, ROIs, the split
    settings: dict  #: training settings
    metrics: dict  #: evaluation; ``metrics["heldout"]`` is the gate's comparison (see the module text)
    heldout: tuple[str, ...]  #: study UIDs of its held-out test set
    job_id: int | None


@dataclass(frozen=True)
class ActivationCheck:
    """What :func:`activation_check` found: ``ok``, the reasons it is not, and the numbers compared."""

    ok: bool
    reasons: list[str]
    candidate: dict  #: version, dice, f2_specificity, f2_sensitivity, n_studies (held-out values)
    active: dict  #: version (active now), compared_version, dice, f2_specificity, f2_sensitivity (baseline)


# ---------------------------------------------------------------------------------------------- files
@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(path: Path) -> str:
    """Hex SHA-256 of a weights file, remembered per (path, mtime, size): a page run does not hash 60 MB again."""
    st = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def _read_card(weights_dir: Path, name: str) -> tuple[dict, str]:
    """``<name>.json`` and the verified SHA-256 of ``<name>.safetensors``; :class:`ModelFilesError` otherwise."""
    cfg, weights = Path(weights_dir) / f"{name}.json", Path(weights_dir) / f"{name}.safetensors"
    if not cfg.is_file() or not weights.is_file():
        raise ModelFilesError(f"model {name!r} not found in {weights_dir} (need {weights.name} and {cfg.name})")
    try:
        record = json.loads(cfg.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"{cfg}: not a readable model card ({exc})") from None
    actual = weights_sha256(weights)
    if record.get("sha256") != actual:
        raise ModelFilesError(f"{weights.name}: SHA-256 {actual[:12]}… does not match {cfg.name} "
                              f"({str(record.get('sha256'))[:12]}…): the file is corrupt or was replaced")
    return record, actual


def files_problem(entry: ModelEntry) -> str:
    """Why ``entry``'s files cannot be used (missing, or not the registered weights), or ``""`` when they can."""
    try:
        _record, sha = _read_card(entry.weights_dir, entry.name)
    except ModelFilesError as exc:
        return str(exc)
    return "" if sha == entry.sha256 else (f"the weights in {entry.weights_dir} are {sha[:12]}…, not the "
                                           f"registered {entry.sha256[:12]}…")


# ---------------------------------------------------------------------------------------------- reads
def _entry(row: sa.RowMapping) -> ModelEntry:
    return ModelEntry(
        version=row["version"], name=row["name"], sha256=row["sha256"], weights_dir=Path(row["weights_dir"]),
        arch=row["arch"] or "", origin=row["origin"], parent_version=row["parent_version"] or "",
        created_utc=row["created_utc"], created_by=row["created_by"] or "",
        manifest=json.loads(row["manifest_json"] or "{}"), settings=json.loads(row["settings_json"] or "{}"),
        metrics=json.loads(row["metrics_json"] or "{}"), heldout=tuple(json.loads(row["heldout_json"] or "[]")),
        job_id=row["job_id"])


def _get(conn: Connection, version: str) -> ModelEntry | None:
    row = conn.execute(sa.select(models).where(models.c.version == version)).mappings().first()
    return None if row is None else _entry(row)


def get(store: Store, version: str) -> ModelEntry | None:
    """The entry of ``version`` (``<name>@<sha12>``), or ``None``."""
    with store.engine.connect() as conn:
        return _get(conn, version)


def list_models(store: Store) -> list[ModelEntry]:
    """Every registered model, newest first."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(models).order_by(models.c.id.desc())).mappings().all()
    return [_entry(r) for r in rows]


def _active_version(conn: Connection) -> str:
    """The latest activation's version, ``""`` when nothing was ever activated."""
    q = sa.select(model_activations.c.version).order_by(model_activations.c.id.desc()).limit(1)
    return str(conn.execute(q).scalar() or "")


def active_version(store: Store) -> str:
    """The latest activation's version (``""`` before the first): one cheap query, for workers that re-check."""
    with store.engine.connect() as conn:
        return _active_version(conn)


def _active(conn: Connection) -> ModelEntry | None:
    version = _active_version(conn)
    if version:
        return _get(conn, version)
    row = conn.execute(sa.select(models).where(models.c.origin == "shipped").order_by(models.c.id.desc())
                       .limit(1)).mappings().first()
    return None if row is None else _entry(row)


def active(store: Store) -> ModelEntry | None:
    """The active model: the latest activation; before any, the latest shipped entry; ``None`` if neither."""
    with store.engine.connect() as conn:
        return _active(conn)


def activation_history(store: Store) -> list[dict]:
    """Every activation and rollback, newest first: at_utc, version, previous_version, user, reason, override."""
    t = model_activations
    q = sa.select(t.c.at_utc, t.c.version, t.c.previous_version, t.c.user, t.c.reason, t.c.override)
    with store.engine.connect() as conn:
        rows = conn.execute(q.order_by(t.c.id.desc())).mappings().all()
    return [{**r, "override": bool(r["override"])} for r in rows]


# ---------------------------------------------------------------------------------------------- writes
def register(store: Store, weights_dir: Path, name: str, *, origin: str, created_by: str = "",
             parent_version: str = "", manifest: dict | None = None, settings: dict | None = None,
             metrics: dict | None = None, heldout: Sequence[str] = (), job_id: int | None = None) -> ModelEntry:
    """Register ``<weights_dir>/<name>.safetensors`` after verifying its SHA-256 against ``<name>.json``.

    Idempotent: a version already registered is returned as it is (its folder and metadata unchanged), and
    only a new registration is audited (``model:register``).

    Raises
    ------
    ModelFilesError
        When a file is missing or the weights do not match their card.
    """
    if origin not in ORIGINS:
        raise RegistryError(f"origin must be one of {ORIGINS}, got {origin!r}")
    record, sha = _read_card(Path(weights_dir), name)
    version = f"{name}@{sha[:12]}"
    found = get(store, version)
    if found is not None:
        return found
    row = {"version": version, "name": name, "sha256": sha, "weights_dir": str(Path(weights_dir).resolve()),
           "arch": str(record.get("arch", "")), "origin": origin, "parent_version": parent_version,
           "created_utc": utc_now(), "created_by": created_by[:128],
           "manifest_json": json.dumps(manifest or {}, default=str),
           "settings_json": json.dumps(settings or {}, default=str),
           "metrics_json": json.dumps(metrics or {}, default=_json_number),
           "heldout_json": json.dumps(list(heldout)), "job_id": job_id}
    try:
        with store.writer() as conn:
            conn.execute(models.insert().values(**row))
            append_entry(conn, "model:register", user=created_by,
                         detail=f"{version} ({origin}) from {row['weights_dir']}"
                                + (f"; fine-tuned from {parent_version}" if parent_version else ""))
    except IntegrityError:  # registered by someone else meanwhile
        pass
    entry = get(store, version)
    assert entry is not None
    return entry


def _json_number(value: Any) -> Any:
    return float(value) if hasattr(value, "__float__") else str(value)


def ensure_shipped(store: Store, settings: Settings | None = None) -> ModelEntry | None:
    """Register the model that ships with the software (``DEFAULT_WEIGHTS_DIR / DEFAULT_MODEL_NAME``, origin
    ``shipped``, metrics ``{"test_metrics": <its card's test_metrics>}``); ``None`` when its files are missing.

    The shipped folder is always the default one, whatever ``settings`` name (accepted so callers pass what they
    have). Weights that do not match their card raise :class:`ModelFilesError`.
    """
    cfg = DEFAULT_WEIGHTS_DIR / f"{DEFAULT_MODEL_NAME}.json"
    if not cfg.is_file() or not (DEFAULT_WEIGHTS_DIR / f"{DEFAULT_MODEL_NAME}.safetensors").is_file():
        return None
    card = json.loads(cfg.read_text()).get("card", {})
    training = card.get("training", {})
    return register(store, DEFAULT_WEIGHTS_DIR, DEFAULT_MODEL_NAME, origin="shipped", created_by="shipped",
                    parent_version=str(training.get("init_weights", "")),
                    manifest={"training_data": card.get("training_data", "")},
                    settings=training.get("train_config", {}), metrics={"test_metrics": card.get("test_metrics", {})})


def _metric(block: dict, key: str) -> float | None:
    """``block[key]`` as a number (``{"value": x}`` or a bare number); ``None`` when absent or NaN."""
    raw = block.get(key)
    raw = raw.get("value") if isinstance(raw, dict) else raw
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _check(conn: Connection, version: str) -> ActivationCheck:
    entry, current = _get(conn, version), _active(conn)
    now = current.version if current else ""
    if entry is None:
        return ActivationCheck(False, [f"no model {version!r} in the registry"], {"version": version},
                               {"version": now})
    heldout = entry.metrics.get("heldout") if isinstance(entry.metrics, dict) else None
    heldout = heldout if isinstance(heldout, dict) else {}
    cand, base = heldout.get("candidate") or {}, heldout.get("baseline") or {}
    keys = ("dice", "f2_specificity", "f2_sensitivity")
    candidate = {"version": version, "n_studies": heldout.get("n_studies"), **{k: _metric(cand, k) for k in keys}}
    baseline = {"version": now, "compared_version": str(base.get("version", "")),
                **{k: _metric(base, k) for k in keys}}
    reasons: list[str] = []
    if now == version:
        reasons.append(f"{version} is already the active model")
    elif entry.origin == "shipped" and not heldout:
        reasons.append(f"{version} is a shipped model with no held-out comparison with the active {now or 'none'}: "
                       "use rollback to return to it, or override with a reason")
    elif not cand or not base:
        reasons.append(f"{version} has no held-out comparison with the active model (metrics.heldout): "
                       "evaluate it on held-out studies, or override")
    else:
        if not now:
            reasons.append("no model is active (the shipped model is not registered), so there is nothing it was "
                           "compared with: register the shipped model, or override")
        elif baseline["compared_version"] != now:
            reasons.append(f"compared with {baseline['compared_version'] or 'an unnamed model'}, but {now} is "
                           "active now: re-evaluate or override")
        c, b = candidate["dice"], baseline["dice"]
        if c is None or b is None:
            reasons.append("held-out Dice is missing for " + ("the candidate" if c is None else "the baseline"))
        elif c < b:
            reasons.append(f"held-out Dice {c:.3f} is below the active model's {b:.3f}")
        c, b = candidate["f2_specificity"], baseline["f2_specificity"]
        if c is None or b is None:
            reasons.append(NO_SPECIFICITY)
        elif c < b:
            reasons.append(f"held-out F2 specificity {c:.3f} is below the active model's {b:.3f}")
    if not reasons and (problem := files_problem(entry)):
        reasons.append(problem)
    return ActivationCheck(not reasons, reasons, candidate, baseline)


def activation_check(store: Store, version: str) -> ActivationCheck:
    """Whether ``version`` may replace the active model without an override (see the module text)."""
    with store.engine.connect() as conn:
        return _check(conn, version)


def _record(conn: Connection, version: str, previous: str, user: str, reason: str, override: bool) -> None:
    conn.execute(model_activations.insert().values(at_utc=utc_now(), version=version, previous_version=previous,
                                                   user=user[:128], reason=reason, override=override))


def _usable(conn: Connection, version: str, what: str) -> ModelEntry:
    entry = _get(conn, version)
    if entry is None:
        known = ", ".join(r[0] for r in conn.execute(sa.select(models.c.version).order_by(models.c.id.desc())))
        raise RegistryError(f"no model {version!r} in the registry (registered: {known or 'none'})")
    if problem := files_problem(entry):
        raise ModelFilesError(f"{version} cannot be {what}: {problem}")
    return entry


def activate(store: Store, version: str, *, user: str, reason: str = "", override: bool = False) -> ModelEntry:
    """Make ``version`` the active model, if :func:`activation_check` passes or ``override`` is given with a reason.

    One transaction: the ``model_activations`` row (``override`` true when gate reasons were overridden) and
    the ``model:activate`` audit entry naming both versions, the reasons overridden and the reason given.

    Raises
    ------
    ActivationRefused
        The gate's reasons (or: already active; an override without a reason).
    RegistryError
        Unknown version, no user, or files missing (:class:`ModelFilesError`).
    """
    if not user.strip():
        raise RegistryError("activating a model needs the name of the user who does it")
    if override and not reason.strip():
        raise ActivationRefused(version, ["an override needs a reason (it is recorded with the activation)"])
    with store.writer() as conn:
        entry = _usable(conn, version, "activated")
        check = _check(conn, version)
        current = _active(conn)
        previous = current.version if current else ""
        if previous == version:
            raise ActivationRefused(version, [f"{version} is already the active model"])
        if not check.ok and not override:
            raise ActivationRefused(version, check.reasons, "Override with a reason to activate it anyway")
        overridden = not check.ok
        _record(conn, version, previous, user, reason.strip(), overridden)
        detail = f"{version} activated, replacing {previous or 'none'}"
        if overridden:
            detail += "; OVERRIDE of: " + "; ".join(check.reasons)
        append_entry(conn, "model:activate", user=user, detail=detail + (f"; reason: {reason.strip()}"
                                                                          if reason.strip() else ""))
    return entry


def rollback(store: Store, *, user: str, reason: str = "") -> ModelEntry:
    """Re-activate the model that was active before the latest activation (no gate: this is the way back).

    Raises
    ------
    RegistryError
        Nothing was ever activated, no user, or the previous model's files are gone.
    """
    if not user.strip():
        raise RegistryError("rolling back needs the name of the user who does it")
    with store.writer() as conn:
        last = conn.execute(sa.select(model_activations).order_by(model_activations.c.id.desc())
                            .limit(1)).mappings().first()
        if last is None:
            raise RegistryError("nothing to roll back to: no model was ever activated (the shipped model is in use)")
        target = last["previous_version"]
        if not target:
            shipped = conn.execute(sa.select(models.c.version).where(models.c.origin == "shipped")
                                   .order_by(models.c.id.desc()).limit(1)).scalar()
            target = shipped if shipped and shipped != last["version"] else ""
        if not target:
            raise RegistryError(f"nothing to roll back to: {last['version']} was the first model activated and no "
                                "shipped model is registered")
        entry = _usable(conn, target, "rolled back to")
        text = "rollback" + (f": {reason.strip()}" if reason.strip() else "")
        _record(conn, target, last["version"], user, text, False)
        append_entry(conn, "model:rollback", user=user, detail=f"{target} re-activated, replacing {last['version']}"
                     + (f"; reason: {reason.strip()}" if reason.strip() else ""))
    return entry


# ---------------------------------------------------------------------------------------------- settings
def settings_for(settings: Settings, entry: ModelEntry) -> Settings:
    """``settings`` pointing at ``entry``'s weights."""
    return dataclasses.replace(settings, weights_dir=entry.weights_dir, model_name=entry.name)


def names_default_model(settings: Settings) -> bool:
    """Whether ``settings`` still name the shipped default (no MRE_WEIGHTS_DIR / MRE_MODEL_NAME / --model)."""
    return (Path(settings.weights_dir).resolve() == DEFAULT_WEIGHTS_DIR.resolve()
            and settings.model_name == DEFAULT_MODEL_NAME)


def _names(settings: Settings, entry: ModelEntry) -> bool:
    return Path(settings.weights_dir).resolve() == entry.weights_dir.resolve() and settings.model_name == entry.name


def active_settings(settings: Settings, store: Store) -> tuple[Settings, str]:
    """``settings`` using the registry's active model, and a sentence saying which model is used and why.

    The registry's choice applies only while ``settings`` name the default model; an explicitly configured
    model wins. An active entry whose files are missing or fail their checksum is not used: the configured
    model is, and the sentence says so.
    """
    configured = f"{settings.model_name} in {settings.weights_dir}"
    entry = active(store)
    if entry is None:
        return settings, f"The configured model {configured} is used: no model is registered in the store yet."
    if not _names(settings, entry) and not names_default_model(settings):
        return settings, (f"The configured model {configured} is used (set by MRE_WEIGHTS_DIR / MRE_MODEL_NAME or "
                          f"--model); the registry's active model {entry.version} is not used.")
    if problem := files_problem(entry):
        return settings, (f"The registry's active model {entry.version} cannot be used ({problem}); the configured "
                          f"model {configured} is used instead.")
    history = activation_history(store)
    how = (f", activated by {history[0]['user'] or 'unknown'} at {history[0]['at_utc']}"
           if history and history[0]["version"] == entry.version else "")
    kind = "site-trained" if entry.origin == "site" else "shipped"
    return settings_for(settings, entry), f"The registry's active model {entry.version} ({kind}{how}) is used."


__all__ = ["NO_SPECIFICITY", "ORIGINS", "ActivationCheck", "ActivationRefused", "ModelEntry", "ModelFilesError",
           "RegistryError", "activate", "activation_check", "activation_history", "active", "active_settings",
           "active_version", "ensure_shipped", "files_problem", "get", "list_models", "names_default_model",
           "register", "rollback", "settings_for", "weights_sha256"]
