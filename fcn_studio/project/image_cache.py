"""Decoded images kept and read ahead in a background thread.

Decoding a 12-megapixel JPEG takes longer than a person should wait when
paging through a project, so the neighbours of the shown image are decoded
while the person works, and switching to them is a dictionary lookup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np


class ImageCache:
    def __init__(self, loader: Callable[[str], np.ndarray], capacity: int = 4) -> None:
        self._loader = loader
        self._capacity = max(1, capacity)
        self._items: OrderedDict[str, Future[np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-cache")

    def _future(self, key: str) -> Future[np.ndarray]:
        with self._lock:
            fut = self._items.get(key)
            if fut is None:
                fut = self._pool.submit(self._loader, key)
                self._items[key] = fut
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                old_key, old = next(iter(self._items.items()))
                if old_key == key:
                    break
                old.cancel()
                del self._items[old_key]
            return fut

    def get(self, key: str) -> np.ndarray:
        """The decoded image; raises what the loader raised (and forgets the failure)."""
        fut = self._future(key)
        try:
            return fut.result()
        except BaseException:
            self.forget(key)
            raise

    def prefetch(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._future(key)

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            for fut in self._items.values():
                fut.cancel()
            self._items.clear()

    def close(self) -> None:
        self.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
