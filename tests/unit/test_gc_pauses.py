"""Settling the heap makes full collections cheap without pinning garbage for ever."""

from __future__ import annotations

import gc
import sys
import time
import types
import weakref

from lib import gc_pauses


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


def _full_collection_ms() -> float:
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000


def test_settled_objects_drop_out_of_full_collections():
    heap = [{"n": [i]} for i in range(600_000)]  # long-lived state, like loaded modules and caches
    try:
        gc.unfreeze()
        before = min(_full_collection_ms() for _ in range(3))
        assert gc_pauses.settle() >= len(heap)
        after = min(_full_collection_ms() for _ in range(3))
        assert after < before / 5, (before, after)
    finally:
        gc.unfreeze()
        del heap


def test_garbage_frozen_while_alive_is_freed_at_the_next_settle():
    node = Node()
    ref = weakref.ref(node)
    try:
        gc_pauses.settle()  # node is alive: frozen
        del node
        gc.collect()
        assert ref() is not None  # frozen cycles are invisible to ordinary collections...
        gc_pauses.settle()
        assert ref() is None  # ...but settle thaws and collects first
    finally:
        gc.unfreeze()


def test_the_heap_is_settled_again_only_after_new_imports():
    gc_pauses.settle()
    assert not gc_pauses.settle_if_imports_grew()  # nothing imported since: no pause
    sys.modules["avatar_ops_test_fresh_import"] = types.ModuleType("avatar_ops_test_fresh_import")
    try:
        node = Node()
        ref = weakref.ref(node)
        del node
        assert gc_pauses.settle_if_imports_grew()  # a page's first visit imported something
        assert ref() is None  # and it collected on the way
        assert not gc_pauses.settle_if_imports_grew()
    finally:
        del sys.modules["avatar_ops_test_fresh_import"]
