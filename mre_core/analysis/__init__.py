"""Analysis: one study's elastograms → ROI → stiffness (kPa) → stage, with quality-control flags.

Owns the model input (:mod:`.preprocess`), running the network and cleaning its mask into the final
ROI (:mod:`.segment`) with its guardrails (:mod:`.guardrails`, and :mod:`.stability`: does the ROI survive a
slightly zoomed or shifted copy of the slice?), per-slice and per-study statistics and QC (:mod:`.stiffness`), the cited
staging tables (:mod:`.staging`, pure data, importable without torch) and the one pipeline every
front door calls, :func:`mre_core.analysis.pipeline.analyze_study`.

May import: :mod:`mre_core.config`, :mod:`mre_core.io.elastogram` (the contract, not the readers) and
:mod:`mre_core.model.network`. Never the store, the outputs, the app or the workflow; it knows no
network and no database.
"""
