"""Benchmarks (speed and memory targets live here, not in timed unit tests).

``python -m mre_core.bench`` times DICOM bytes → staged result per study (:mod:`.study`);
``python -m mre_core.bench.listener`` times last instance received → result stored (:mod:`.listener`).

May import anything in ``mre_core`` except the app.
"""
