"""
The library's one caching idiom: :class:`Memo` keeps one value and gives it
back while the key it was built for is the same. Standard library only.

A key is a tuple compared with ``==`` (a tuple compares its items by
identity first, so the same ``opts`` object is a cheap hit), for example
``(opts, file_state)``. Counters are ``itertools.count`` (``next()`` is
atomic), never a one-item list.
"""

import atexit
import threading


class Memo:
    """
    One cached value, built by the caller's ``build()`` when the key changes.

    ``per_thread``: one value per thread (Salt's loaders and caches are not
    shared between threads). ``close``: called with a value when another
    replaces it and, once, on every value still held when the interpreter
    exits (before it tears its modules down).
    """

    def __init__(self, per_thread=False, close=None):
        self._lock = threading.Lock()
        self._local = threading.local() if per_thread else None
        self._entry = None
        self._generation = 0  # an entry of an older generation is a miss (clear)
        self._close = close
        self._held = {}
        if close is not None:
            atexit.register(self.clear)

    def _current(self):
        return getattr(self._local, "entry", None) if self._local is not None else self._entry

    def get(self, key, build):
        """Return the value built for ``key``: the kept one when ``key`` is the same, else ``build()``."""
        with self._lock:
            entry, generation = self._current(), self._generation
        if entry is not None and entry[0] == generation and entry[1] == key:
            return entry[2]
        value = build()
        old = None
        with self._lock:
            if self._local is not None:
                self._local.entry = (generation, key, value)
            else:
                self._entry = (generation, key, value)
            if self._close is not None:
                self._held[id(value)] = value
                if entry is not None:
                    old = self._held.pop(id(entry[2]), None)
        if old is not None and old is not value:
            self._close(old)
        return value

    def clear(self):
        """Forget every value kept (each one closed with ``close``)."""
        with self._lock:
            held, self._held = list(self._held.values()), {}
            self._entry = None
            self._generation += 1
        for value in held:
            self._close(value)
