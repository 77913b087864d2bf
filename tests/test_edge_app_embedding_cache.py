"""The embedding cache stays small when it reopens a merged file of many photos (edge_app.embeddings)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from dogtag.edge_app.embeddings import MERGE_ABOVE, EmbeddingCache
from dogtag.edge_app.runtime import Outputs

PHOTOS_PER_CHUNK = 8
FEATURES = 1280  # as the bundled models give


def test_reopening_a_merged_cache_of_many_photos_keeps_every_photo_in_little_memory(tmp_path):
    cache = EmbeddingCache("base-model", tmp_path)
    rng = np.random.default_rng(0)
    for chunk in range(MERGE_ABOVE + 1):  # one chunk more than the cache keeps unmerged
        keys = [f"photo-{chunk}-{i}" for i in range(PHOTOS_PER_CHUNK)]
        n = len(keys)
        cache.add(keys, Outputs(rng.random((n, 120), np.float32), rng.random(n, np.float32),
                                rng.random((n, FEATURES), np.float32)))
    EmbeddingCache("base-model", tmp_path)  # merges the chunks into one file
    tracemalloc.start()
    reopened = EmbeddingCache("base-model", tmp_path)  # reads the merged file
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    photos = (MERGE_ABOVE + 1) * PHOTOS_PER_CHUNK
    assert len(reopened.rows) == photos
    assert np.allclose(reopened.get("photo-3-5").features, cache.get("photo-3-5").features, atol=1e-3)
    stored = photos * (FEATURES * 2 + 120 * 4 + 4)  # float16 features, float32 breeds and dog
    assert peak < 4 * stored  # read once, not once per photo (that was photos times as much)
