"""Statements every output carries: the one statement of intended use for the app, PDF and model card, and what
the model in use was trained on (which differs once a site trains its own)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

INTENDED_USE = (
    "MRE Liver Review is research and decision-support software. It is not a certified medical device and "
    "must not be used as the sole basis for a diagnosis. Its segmentation model was trained on synthetic "
    "phantoms, not on patient data; every ROI, stiffness value and stage must be checked by a qualified reader."
)

#: the shipped weights' training, in one line (PDF footer)
SYNTHETIC_TRAINING = "Model trained on synthetic phantoms, not on patient data. Research and decision support only."


def model_card(weights_dir: Path | str, name: str) -> dict[str, Any]:
    """The ``card`` of ``<weights_dir>/<name>.json`` ({} when missing or unreadable)."""
    try:
        return dict(json.loads((Path(weights_dir) / f"{name}.json").read_text()).get("card") or {})
    except (OSError, ValueError):
        return {}


def training_statement(card: Mapping[str, Any] | None) -> str:
    """What the model was trained on, in one sentence: a site-trained model's card says it (``origin: site``),
    otherwise the shipped model's synthetic-phantom training."""
    card = card or {}
    if card.get("origin") == "site" and card.get("training_data"):
        return (f"Model fine-tuned at this site: {card['training_data']} Measured on this site's held-out studies "
                "only. Research and decision support only.")
    return SYNTHETIC_TRAINING


def intended_use(card: Mapping[str, Any] | None = None) -> str:
    """:data:`INTENDED_USE`, with the training sentence of a site-trained model in place of the phantom one."""
    card = card or {}
    if card.get("origin") == "site" and card.get("training_data"):
        return ("MRE Liver Review is research and decision-support software. It is not a certified medical device "
                "and must not be used as the sole basis for a diagnosis. " + training_statement(card).replace(
                    " Research and decision support only.", "") + " Every ROI, stiffness value and stage must be "
                "checked by a qualified reader.")
    return INTENDED_USE
