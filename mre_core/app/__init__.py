"""What the Streamlit pages call: settings and cached resources, review state, cohort data, figures.

Owns :mod:`.context` (settings from env/secrets/sidebar, the cached model and store, the banner —
the only Streamlit-importing modules are here), :mod:`.auth` (sign-in, sign-out, who the user is, the
pages a role gets and the guard every page calls), :mod:`.audit_view` (the Audit log page's filters),
:mod:`.serve` (the launcher, which refuses to serve beyond loopback without sign-in),
:mod:`.review_state` (edits, re-analysis for review),
:mod:`.review_status` (is a study auto / reviewed / signed off, and by whom), the Review page's
components (:mod:`.worklist_panel`, :mod:`.slice_viewer`, :mod:`.review_panel`, :mod:`.roi_drawing`,
:mod:`.downloads`),
:mod:`.cohort_data`, :mod:`.figures`, :mod:`.exports` and :mod:`.demo`.

May import: everything below it. Pages import only this package, :mod:`mre_core.config` and
:mod:`mre_core.access` (the actions they check);
nothing in ``mre_core`` outside this package imports it.
"""
