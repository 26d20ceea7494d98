"""Access control and privacy: who may do what, OIDC roles, de-identified exports, the startup rule.

Owns :mod:`.roles` (the actions, the three roles as cited data, :class:`User`, :func:`allowed` and
:func:`require`), :mod:`.oidc` (``[auth]`` configured? which role do an OIDC sign-in's claims get),
:mod:`.deid` (:func:`deidentify`: keyed pseudonyms for research exports) and :mod:`.serving` (when sign-in is
required; refuse to serve other machines without sign-in). Local accounts and their password hashes live in
:mod:`mre_core.store.users`, the audit log in :mod:`mre_core.store.audit`.

Pure: may import only the standard library, pandas and :mod:`mre_core.config`; never the store, the app,
Streamlit or the workflow (the pages pass ``st.secrets``/``st.user`` in as plain mappings). The pipeline
(``io``, ``analysis``, ``outputs``, ``stats``) never imports it: a result does not depend on who asked.
"""

from mre_core.access.roles import PERMISSIONS, ROLES, Action, PermissionDenied, Role, User, allowed, require

__all__ = ["Action", "PERMISSIONS", "PermissionDenied", "ROLES", "Role", "User", "allowed", "require"]
