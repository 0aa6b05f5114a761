"""One naming rule for the files written per input image (predict, everything, inpaint, label, track).

* An output mirrors the input's path relative to the folder it was found in (a file given directly:
  its name), so ``a/x.png`` and ``b/x.png`` become ``a/x`` and ``b/x`` and never share an output.
* Every path component is made safe for the file system: control characters (newlines, ...),
  backslashes and bytes that are not UTF-8 become ``_``, and a component longer than
  `MAX_STEM_BYTES` is cut at a character boundary. A component that had to change carries ``~`` and
  8 hex digits of the sha256 of its original bytes, so two different names stay different.
* Inputs that still meet on one stem (``x.png`` beside ``x.jpg``, or two files given directly from
  different folders) get the hash of their whole path appended, again ``~`` + 8 hex digits.
  `output_stems` hashes every input of a meeting (one-shot commands); `claim_stems` leaves the first
  in sorted order plain and keeps the stems an earlier run gave (resumable datasets; `copy_name` then
  names the image copy so that it shares the stem of its label files).

The original path is kept, readable, in the JSON written beside the outputs (`printable`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import PurePosixPath

MAX_STEM_BYTES = 160
"""The longest output stem component in bytes: leaves room under the 255-byte limit of a file name for
the suffixes an exporter adds (``_mask_000_<label>.png``, ``.instances.png``, ...)."""

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\\udc80-\udcff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def short_hash(text: str) -> str:
    """8 hex digits of the sha256 of `text`'s file-system bytes (stable across runs and machines)."""
    return hashlib.sha256(os.fsencode(text)).hexdigest()[:8]


def printable(text: str) -> str:
    """`text` as it can be shown and stored in JSON: bytes that are not UTF-8 as ``\\xNN``, control
    characters as ``\\n``, ``\\t``, ``\\x1b``, ... (everything else unchanged)."""
    if _UNSAFE.search(text) is None:
        return text
    decoded = os.fsencode(text).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], decoded)


def safe_component(name: str, max_bytes: int = MAX_STEM_BYTES) -> str:
    """`name` (one path component, no suffix handling) made safe for any file system; see the module
    docstring. Unchanged when it already is."""
    cleaned = _UNSAFE.sub("_", name)
    if cleaned == name and len(os.fsencode(name)) <= max_bytes and name not in ("", ".", ".."):
        return name
    tag = "~" + short_hash(name)
    encoded = cleaned.encode("utf-8")[: max_bytes - len(tag)]
    return encoded.decode("utf-8", "ignore") + tag  # "ignore" drops a character cut in two


def safe_stem(rel: str) -> str:
    """The output stem of an input at relative POSIX path `rel`: the path without its suffix, each
    component made safe."""
    path = PurePosixPath(rel)
    parts = [*path.parent.parts, path.stem] if path.parent != PurePosixPath(".") else [path.stem]
    return "/".join(safe_component(part) for part in parts if part not in ("", "/"))


def safe_relative(rel: str) -> str:
    """`rel` with each component made safe, keeping the file's suffix (for copies of the input)."""
    path = PurePosixPath(rel)
    suffix = path.suffix
    if suffix and _UNSAFE.search(suffix) is None and len(os.fsencode(suffix)) <= 16:
        return safe_stem(rel) + suffix
    return "/".join(safe_component(part) for part in path.parts)


def output_stems(
    rels: Sequence[str], keys: Sequence[str] | None = None, reserved: Collection[str] = ()
) -> list[str]:
    """One distinct output stem per input: `safe_stem` of its relative path, plus the hash of its key
    (default: the relative path; pass the full input paths) where two inputs would meet or the stem is
    `reserved` (taken by a file of the command's own)."""
    keys = rels if keys is None else keys
    stems = [safe_stem(rel) for rel in rels]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    return [
        stem if counts[stem] == 1 and stem not in reserved else f"{stem}~{short_hash(key)}"
        for stem, key in zip(stems, keys, strict=True)
    ]


def claim_stems(rels: Collection[str], known: Mapping[str, str] | None = None) -> dict[str, str]:
    """One distinct output stem per input at relative path `rel`, stable while inputs come and go.

    The stems in `known` (given by an earlier run) are kept first; every other input, in sorted order,
    takes its `safe_stem` if no input holds it yet, else that stem with ``~`` and the hash of its path
    (so of ``x.jpg`` and ``x.png`` the later one becomes ``x~<8 hex>``).
    """
    known = known or {}
    stems: dict[str, str] = {}
    taken: set[str] = set()
    first = sorted(rel for rel in rels if rel in known)
    for rel in [*first, *sorted(rel for rel in rels if rel not in known)]:
        stem = known.get(rel) or safe_stem(rel)
        salt = 0
        while stem in taken:  # a second (pathological) meeting gets a hash of the path and a counter
            base = safe_stem(rel)
            stem = f"{base}~{short_hash(rel if salt == 0 else f'{rel}#{salt}')}"
            salt += 1
        stems[rel] = stem
        taken.add(stem)
    return stems


def copy_name(rel: str, stem: str) -> str:
    """The path of a copy of the input at `rel` given the output stem `stem`: `safe_relative(rel)` when
    `stem` is its own `safe_stem`, else `stem` with the copy's suffix (image and label share a stem)."""
    own = safe_relative(rel)
    if stem == safe_stem(rel):
        return own
    return stem + PurePosixPath(own).suffix
