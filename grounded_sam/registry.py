"""One registry type for every model family: named entries, aliases, and "did you mean" for the rest.

Used by the SAM, SAM 2, detector and CLIP registries, so an unknown name gets the same answer everywhere:
the closest registered names and the full list.

Example:
    >>> models = Registry("SAM model", {"sam_vit_b": b}, aliases={"vit_b": "sam_vit_b"})  # doctest: +SKIP
    >>> models.get("sam_vit_bb")  # ValueError: unknown SAM model 'sam_vit_bb'. Did you mean 'sam_vit_b'? ...
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """Entries by name (plus ``aliases``: other names for them), looked up with close-match hints."""

    def __init__(
        self,
        kind: str,
        entries: Mapping[str, Entry],
        *,
        aliases: Mapping[str, str] | None = None,
        cutoff: float = 0.4,
    ) -> None:
        """``kind`` names an entry in messages ("SAM model"); ``cutoff`` is difflib's similarity floor."""
        self.kind = kind
        self._entries = dict(entries)
        self._aliases = dict(aliases or {})
        unknown = sorted(set(self._aliases.values()) - set(self._entries))
        if unknown:
            raise ValueError(f"aliases point to unregistered {kind} names: {unknown}")
        self._cutoff = cutoff

    def names(self) -> list[str]:
        """Every registered name, sorted (aliases not included)."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> Entry:
        """The entry called ``name`` (or aliased so); ValueError with the closest names otherwise."""
        entry = self._entries.get(self._aliases.get(name, name))
        if entry is None:
            raise ValueError(self.unknown_message(name)) from None
        return entry

    def close_matches(self, name: str) -> list[str]:
        """Up to three registered names (or aliases) closest to ``name``."""
        return difflib.get_close_matches(name, [*self._entries, *self._aliases], n=3, cutoff=self._cutoff)

    def unknown_message(self, name: str) -> str:
        """``unknown <kind> 'name'. Did you mean ...? Known <kind>s: ...``."""
        close = self.close_matches(name)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(self.names())}"
