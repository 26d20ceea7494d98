"""Synthetic MRE studies with known truth: the demo, the tests, training and evaluation.

Real MRE data is not public, so the product ships a generator users can test their install with.
Owns :mod:`.anatomy` (tissue maps), :mod:`.fields` (true stiffness, wave amplitude, confidence,
measured stiffness, expert ROI), :mod:`.writers` (vendor-style DICOM series and the contact sheet),
:mod:`.physics` and :mod:`.inversion` (a time-harmonic shear-wave solve through the true stiffness and the
algebraic Helmholtz inversion a scanner's software runs, with its confidence map), :mod:`.study` (one
study as a pure function of its seed) and :mod:`.cohort` (cohorts, the demo study,
the ``phantom`` verb).

May import: numpy, scipy, OpenCV, pydicom, :mod:`mre_core.io.elastogram` (the encodings it writes)
and :mod:`mre_core.analysis.staging` (to stage the truth). Never the model, the readers (it must not
share code with what it tests), the store, the app or the workflow.
"""
