"""Keep the source files of a study reviewed from an upload, so it opens with its images from any page.

A study that came by DICOM (listener, watch folder) has its files in the inbox already. One uploaded in the
browser (or the demo) exists only in the browser session; when the reader saves it, the page calls
:func:`keep_study_files`, which files every uploaded instance of that study (all of its series: GE keeps the
confidence map in a series of its own) into the inbox under the state ``kept`` — a worker never analyses it
because of this (:data:`mre_core.store.inbox.KEPT`). The cohort page's link and the worklist then open the
study from those files, and the Review page shows its latest saved revision over them.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import pydicom

from mre_core.io.elastogram import SkippedFile
from mre_core.io.sources import Source, expand_source
from mre_core.store.inbox import Inbox, InstanceKeys

log = logging.getLogger(__name__)


@dataclass
class KeptFiles:
    """What :func:`keep_study_files` did with each file of the upload."""

    kept: int = 0  #: filed now
    already: int = 0  #: the same SOP Instance UID was in the inbox already
    other_study: int = 0  #: a file of another study of the same upload (kept when that study is saved)
    unreadable: list[str] = field(default_factory=list)  #: "name: reason" (not DICOM, too big, …)

    def describe(self) -> str:
        text = f"{self.kept} file(s) kept with the study" + (f", {self.already} already kept" if self.already else "")
        if self.unreadable:
            text += f"; {len(self.unreadable)} not kept: " + "; ".join(self.unreadable[:3])
        return text


def keep_study_files(inbox: Inbox, sources: Sequence[Source], study_uid: str, series_uid: str,
                     max_file_bytes: int, origin: str = "upload") -> KeptFiles:
    """File every instance of study ``study_uid`` found in ``sources`` into the inbox as ``kept``.

    ``series_uid`` is the elastogram series the review measured (the worklist shows that series' result).
    Files of other studies are counted and left; unreadable ones are named with the reason.
    """
    out = KeptFiles()
    with ExitStack() as stack:
        for src in sources:
            for item in expand_source(src, max_file_bytes, stack):
                if isinstance(item, SkippedFile):
                    out.unreadable.append(f"{item.file}: {item.reason}")
                    continue
                label, read = item
                try:
                    data = read()
                    keys = InstanceKeys.from_dataset(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True,
                                                                     force=True))
                except Exception as exc:  # noqa: BLE001 - named with its reason; the others go on
                    out.unreadable.append(f"{label}: not a readable DICOM file ({type(exc).__name__})")
                    continue
                if keys.study_uid != study_uid:
                    out.other_study += 1
                elif inbox.add(keys, data, origin, kept=True):
                    out.kept += 1
                else:
                    out.already += 1
    inbox.set_kept_series(study_uid, series_uid)
    log.info("study %s: %s", study_uid, out.describe())
    return out


__all__ = ["KeptFiles", "keep_study_files"]
