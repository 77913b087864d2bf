"""Do two model files answer the same on real photos? (e.g. a bundled file before and after it got
its features output, see export.add_features_output).

    python -m dogtag.benchmarks.same_predictions OLD_FILE NEW_FILE FOLDER [FOLDER ...]

Every photo under the folders goes through the edge app's path (`load_photo`, the model's resize),
one photo per call as `dogtag tag` of a single new photo would; prints one JSON line: photos, how
many get the same top-1 breed, the largest absolute difference of any breed probability and of
the dog probability, and whether every output is bit for bit the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from dogtag.edge_app.images import PhotoError, load_photo
from dogtag.edge_app.runtime import Model
from dogtag.edge_app.walk import find_photos


def compare(old_path: Path, new_path: Path, folders: list[Path]) -> dict:
    """Compare the breed and dog outputs of two model files on every photo under `folders`."""
    old, new = Model(old_path, num_threads=1), Model(new_path, num_threads=1)
    if (old.info.input_size, old.info.resize) != (new.info.input_size, new.info.resize):
        raise ValueError(f"{old_path} and {new_path} do not take the same input")
    photos = same_top1 = identical = 0
    breeds_diff = dog_diff = 0.0
    for folder in folders:
        for path in find_photos(folder):
            try:
                pixels = load_photo(path, old.info.input_size, old.info.resize)[None]
            except PhotoError:
                continue
            (old_breeds, old_dog), (new_breeds, new_dog) = old.run(pixels), new.run(pixels)
            photos += 1
            same_top1 += int(np.argmax(old_breeds) == np.argmax(new_breeds))
            breeds_diff = max(breeds_diff, float(np.abs(old_breeds - new_breeds).max()))
            if old_dog is not None:
                dog_diff = max(dog_diff, float(np.abs(old_dog - new_dog).max()))
            identical += int(np.array_equal(old_breeds, new_breeds)
                             and (old_dog is None or np.array_equal(old_dog, new_dog)))
    return {"old": str(old_path), "new": str(new_path), "photos": photos, "same_top1": same_top1,
            "bit_identical": identical, "max_abs_diff_breeds": breeds_diff, "max_abs_diff_dog": dog_diff}


def main(argv: list[str]) -> None:
    """Print the comparison as one JSON line."""
    if len(argv) < 3:
        raise SystemExit("usage: python -m dogtag.benchmarks.same_predictions OLD_FILE NEW_FILE FOLDER [FOLDER ...]")
    print(json.dumps(compare(Path(argv[0]), Path(argv[1]), [Path(a) for a in argv[2:]])), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
