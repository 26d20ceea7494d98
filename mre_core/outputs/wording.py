"""Statements every output carries: the one statement of intended use for the app, PDF and model card."""

from __future__ import annotations

INTENDED_USE = (
    "MRE Liver Review is research and decision-support software. It is not a certified medical device and "
    "must not be used as the sole basis for a diagnosis. Its segmentation model was trained on synthetic "
    "phantoms, not on patient data; every ROI, stiffness value and stage must be checked by a qualified reader."
)
