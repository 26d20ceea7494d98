"""How studies move: batch analysis, the DICOM listener, the watch folder, the worker, forwarding.

Owns :mod:`.batch` (files → results → CSV/SEG/SR/PDF, the CLI's ``analyze``), :mod:`.listener` (the
pynetdicom Storage SCP and the ``listen``/``watch`` verbs), :mod:`.watch` (the watch folder),
:mod:`.worker` (analyse studies that have gone quiet), :mod:`.forwarder` (send SEG/SR back with
retries), :mod:`.loop` (their background thread and the registry's active model for the worker) and
:mod:`.worklist` (the worklist table); site training: :mod:`.import_rois` (reader ROIs from DICOM SEG /
RTSTRUCT, the ``import-rois`` verb), :mod:`.site_training` (train from the store, compare, register),
:mod:`.training_job` (that run as a background job with its state in the store), :mod:`.reanalyse` (a cohort
with another model, as a comparison) and :mod:`.models_cli` (the ``models`` verb).

May import: everything below it (io, analysis, model, outputs, store, config) and pynetdicom. Never
the app (Streamlit) or the pages.
"""
