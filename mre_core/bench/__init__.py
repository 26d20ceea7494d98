"""Benchmarks (speed and memory targets live here, not in timed unit tests).

``python -m mre_core.bench`` times DICOM bytes → staged result per study (:mod:`.study`);
``python -m mre_core.bench.listener`` times last instance received → result stored (:mod:`.listener`);
``python -m mre_core.bench.orthanc`` times the round trip through a real PACS, last study sent by Orthanc →
last SEG/SR stored in Orthanc (:mod:`.orthanc`; needs the Debian package ``orthanc``);
``python -m mre_core.bench --app`` times the web app in Chromium, click → page finished, and shows where the
time goes (:mod:`.app`, with :mod:`.app_probe` in the browser and :mod:`.server_sampler` in the server;
needs ``/usr/bin/chromium``).

May import anything in ``mre_core`` except the app.
"""
