"""Persistence: the results store, the inbox of received DICOM, accounts, the audit log, and their schema.

Owns :mod:`.schema` (every table, the schema version and its migrations), :mod:`.results` (saved
analyses and reviews as revisions that are never overwritten), :mod:`.inbox` (instances received
by the listener or the watch folder, the study queue and the forwarding queue), :mod:`.rois` (the automatic
and the reader's ROI of each saved slice, for their overlap), :mod:`.users` (local
sign-in accounts with argon2id password hashes, and the ``users`` CLI verb), :mod:`.audit` (the
append-only audit log: append, read with filters, CSV), :mod:`.labels` (reader ROIs for site training: the app's
reviews and imported reads) and :mod:`.models` (the model registry: versions, activation history, the gate). SQLite by default, PostgreSQL by URL, through
SQLAlchemy Core.

May import: SQLAlchemy, argon2, :mod:`mre_core.config`, :mod:`mre_core.access.roles` (what a user and a
role are) and :mod:`mre_core.analysis.pipeline` (what a result is). Arrows inside: ``results`` → ``schema``,
``inbox`` → ``results``, ``schema``, ``users`` → ``audit`` → ``schema`` (``results`` only for type hints);
``schema`` imports nothing of the store. Never the app, the workflow or the model.
"""
