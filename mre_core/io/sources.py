"""Where DICOM bytes come from: files, folders (recursive), zip archives and uploads.

``expand_source`` turns one source into items: either a ``SkippedFile`` (with the reason)
or a ``(label, read)`` pair whose ``read()`` returns the bytes. Sizes are checked before
anything is read (``os.stat`` for files, the member header for zips, and again while
reading), zip members are read in memory and never extracted, and unsafe member names
(absolute paths, ``..``, drive letters) are refused.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path, PurePosixPath
from typing import Any, Union

from mre_core.io.elastogram import SkippedFile

Source = Union[Path, str, tuple[str, bytes]]


class DicomInputError(ValueError):
    """A file that cannot be analysed; the message says why and what to do.

    ``header`` is the file's header when it could be read (so that files of one series left out for
    the same reason are reported as one series), ``role`` what the file was recognised as.
    """

    def __init__(self, message: str, header: object = None, role: str = "") -> None:
        super().__init__(message)
        self.header, self.role = header, role


_Item = Union[SkippedFile, tuple[str, Callable[[], bytes]]]


def expand_source(src: Source, limit: int, stack: ExitStack) -> Iterator[_Item]:
    if isinstance(src, tuple):
        name, data = src
        if len(data) > limit:
            yield SkippedFile(name, _too_big(len(data), limit))
        elif data[:4] == b"PK\x03\x04" and data[128:132] != b"DICM":
            yield from _zip_members(name, io.BytesIO(data), limit, stack)
        else:
            yield (name, lambda d=bytes(data): d)
        return
    path = Path(src)
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                yield from _expand_file(p, str(p.relative_to(path.parent)), limit, stack)
    elif path.is_file():
        yield from _expand_file(path, path.name, limit, stack)
    else:
        yield SkippedFile(str(src), "file or folder not found: check the path")


def _expand_file(path: Path, label: str, limit: int, stack: ExitStack) -> Iterator[_Item]:
    skip = _skip_name(path.name)
    if skip:
        yield SkippedFile(label, skip)
        return
    with path.open("rb") as f:
        head = f.read(132)
    if head[128:132] != b"DICM" and zipfile.is_zipfile(path):
        yield from _zip_members(label, path, limit, stack)
        return
    size = path.stat().st_size  # before reading: a huge (or sparse) file is never loaded
    if size > limit:
        yield SkippedFile(label, _too_big(size, limit))
    else:
        yield (label, path.read_bytes)


def _zip_members(label: str, file: Any, limit: int, stack: ExitStack) -> Iterator[_Item]:
    try:
        zf = stack.enter_context(zipfile.ZipFile(file))
    except (zipfile.BadZipFile, OSError) as err:
        yield SkippedFile(label, f"damaged zip archive ({err}): re-create the archive")
        return
    for info in zf.infolist():
        name = f"{label}:{info.filename}"
        if info.is_dir():
            continue
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.filename.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", info.filename):
            yield SkippedFile(name, f"unsafe path in zip archive ({info.filename!r}): member refused")
        elif info.file_size > limit:
            yield SkippedFile(name, _too_big(info.file_size, limit))
        elif _skip_name(parts[-1]) or parts[0] == "__MACOSX":
            yield SkippedFile(name, _skip_name(parts[-1]) or "macOS resource fork in zip: not an image")
        else:
            yield (name, lambda i=info: _read_member(zf, i, limit))


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    with zf.open(info) as f:
        data = f.read(limit + 1)  # never trust the header's size: stop at the limit
    if len(data) > limit:
        raise DicomInputError(_too_big(len(data), limit))
    if data[:4] == b"PK\x03\x04":
        raise DicomInputError("zip archive inside a zip archive: unpack the outer archive first")
    return data


def _skip_name(name: str) -> str:
    if name.upper() == "DICOMDIR":
        return "DICOMDIR index file: not an image (the images it lists are read from the folder)"
    if name.startswith("."):
        return "hidden file: not read"
    return ""


def _too_big(size: int, limit: int) -> str:
    return (f"file is {size / 2**20:.1f} MB, over the size limit of {limit / 2**20:.1f} MB: "
            "raise max_file_mb (MRE_MAX_FILE_MB) if this is a genuine image")
