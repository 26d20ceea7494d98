"""What a result is written as: CSV tables, DICOM SEG, DICOM SR, PDF report and overlay images.

Owns :mod:`.tables` (studies/slices/skipped CSV), :mod:`.seg` (the ROI as a DICOM Segmentation),
:mod:`.sr` and :mod:`.sr_read` (the TID 1500 report and reading it back), :mod:`.pdf` (the one-page
report), :mod:`.overlay` (PNG tiles) and :mod:`.wording` (the intended-use statement every output
carries).

May import: :mod:`mre_core.io.elastogram`, :mod:`mre_core.analysis` (results, QC flags, staging),
highdicom, pydicom and Pillow. Never the store, the app or the workflow: outputs are pure functions
of a :class:`~mre_core.analysis.pipeline.StudyResult`.
"""
