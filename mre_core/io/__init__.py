"""Ingest: DICOM files, folders, zips and uploads → :class:`~mre_core.io.elastogram.StudyInput`.

Owns everything that knows DICOM on the way in: expanding sources (:mod:`.sources`), parsing and
validating files (:mod:`.reader`), grouping them into series and recognising each series' role
(:mod:`.series`; roles by :mod:`.roles` from the named rules of :mod:`.vendor_rules`), converting stored values to kPa (:mod:`.units`), reading the 95 % confidence
marking (:mod:`.confidence`) and pairing each analysed slice with its magnitude image (:mod:`.magnitude`). Its output is the boundary contract of :mod:`.elastogram`; nothing
downstream of this package imports pydicom for computation.

May import: :mod:`mre_core.config` and the standard scientific stack (numpy, pydicom). Never torch,
the model, the store, the app or the workflow.
"""
