"""How studies move: batch analysis, the DICOM listener, the watch folder, the worker, forwarding.

Owns :mod:`.batch` (files → results → CSV/SEG/SR/PDF, the CLI's ``analyze``), :mod:`.listener` (the
pynetdicom Storage SCP and the ``listen``/``watch`` verbs), :mod:`.watch` (the watch folder),
:mod:`.worker` (analyse studies that have gone quiet), :mod:`.forwarder` (send SEG/SR back with
retries), :mod:`.loop` (their background thread) and :mod:`.worklist` (the worklist table).

May import: everything below it (io, analysis, model, outputs, store, config) and pynetdicom. Never
the app (Streamlit) or the pages.
"""
