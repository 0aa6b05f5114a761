"""Image embeddings kept per image, least recently used dropped first, with hit and miss counters."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class EmbeddingCache:
    """image id (sha256 of the image bytes) -> (embedding, (H, W)); thread-safe.

    An embedding is whatever the predictor's ``set_embedding`` takes back (a few MB per image for SAM
    ViT-B; the model itself is shared). ``hits`` and ``misses`` count :meth:`get` calls.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: str) -> Any | None:
        """The embedding of image ``key`` (now the most recently used), or ``None``; counted."""
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(key)
            return found

    def put(self, key: str, embedding: Any) -> None:
        """Keep ``embedding`` under ``key``, dropping the least recently used beyond the capacity."""
        with self._lock:
            self._entries[key] = embedding
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "size": len(self._entries),
                "capacity": self.capacity,
                "hits": self.hits,
                "misses": self.misses,
            }
