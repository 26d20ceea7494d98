"""Persistence: the results store, the inbox of received DICOM, and the schema they share.

Owns :mod:`.schema` (every table, the schema version and its migrations), :mod:`.results` (saved
analyses and reviews as revisions that are never overwritten) and :mod:`.inbox` (instances received
by the listener or the watch folder, the study queue and the forwarding queue). SQLite by default,
PostgreSQL by URL, through SQLAlchemy Core.

May import: SQLAlchemy, :mod:`mre_core.config` and :mod:`mre_core.analysis.pipeline` (what a result
is). Arrows inside: ``results`` → ``schema`` and ``inbox`` → ``results``, ``schema``; ``schema``
imports nothing of the store. Never the app, the workflow or the model.
"""
