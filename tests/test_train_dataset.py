"""The Stanford Dogs reader: official layout, folder layout, breed selection, splits and boxes."""

from __future__ import annotations

import pytest

from dogtag.train.dataset import (
    Box,
    breed_name,
    load_split,
    read_folders,
    read_official,
    select_breeds,
    stratified_split,
)
from tests.fakes import make_photo


def test_reading_the_official_layout_gives_labels_in_folder_order_and_the_official_split(mini_stanford):
    train = read_official(mini_stanford, "train")
    test = read_official(mini_stanford, "test")
    assert train.breeds == ["Chihuahua", "Japanese spaniel", "Maltese dog"]
    assert train.wnids == ["n02085620", "n02085782", "n02085936"]
    assert len(train) == 18 and len(test) == 12
    assert {s.label for s in train.samples} == {0, 1, 2}
    assert all(s.path.parent.name.endswith(train.breeds[s.label].replace(" ", "_")) for s in train.samples)
    assert not {s.path for s in train.samples} & {s.path for s in test.samples}


def test_boxes_are_read_in_original_pixels_and_scaled_to_the_resized_image(mini_stanford):
    sample = read_official(mini_stanford, "train").samples[0]
    # The XML says the original was 64 x 96 with the box in its middle half; the file is 32 x 32.
    assert sample.box == Box(16, 24, 48, 72, 64, 96)
    assert sample.box.scaled_to(32, 32) == (8, 8, 24, 24)
    assert sample.box.scaled_to(64, 96) == (16, 24, 48, 72)  # an original-size image: scale 1


def test_boxes_are_clipped_to_the_image():
    assert Box(-5, -5, 500, 500, 100, 100).scaled_to(10, 10) == (0, 0, 10, 10)


def test_a_folder_without_the_official_lists_is_refused_with_the_download_address(tmp_path):
    with pytest.raises(FileNotFoundError, match="images.tar"):
        read_official(tmp_path, "train")


def test_a_plain_folder_per_breed_tree_is_read_too(tmp_path):
    make_photo(tmp_path / "Beagle" / "a.jpg", (8, 8))
    make_photo(tmp_path / "Beagle" / "b.png", (8, 8))
    make_photo(tmp_path / "n02099601-golden_retriever" / "c.jpg", (8, 8))
    (tmp_path / "Beagle" / "notes.txt").write_text("not a photo")
    dataset = load_split(tmp_path, "train")
    assert dataset.breeds == ["Beagle", "golden retriever"]
    assert [s.label for s in dataset.samples] == [0, 0, 1]
    assert read_folders(tmp_path).wnids == ["", "n02099601"]


def test_breeds_are_selected_by_name_or_count_and_relabelled(mini_stanford):
    train = read_official(mini_stanford, "train")
    chosen = select_breeds(train, breeds=["maltese_dog", "Chihuahua"])
    assert chosen.breeds == ["Chihuahua", "Maltese dog"]
    assert sorted({s.label for s in chosen.samples}) == [0, 1] and len(chosen) == 12
    assert select_breeds(train, count=2).breeds == ["Chihuahua", "Japanese spaniel"]
    with pytest.raises(ValueError, match="unknown breeds"):
        select_breeds(train, breeds=["Unicorn"])


def test_validation_is_carved_per_breed_reproducibly_and_without_overlap(mini_stanford):
    train = read_official(mini_stanford, "train")
    rest, validation = stratified_split(train, 0.34, seed=3)
    again_rest, again_validation = stratified_split(train, 0.34, seed=3)
    assert [s.path for s in validation.samples] == [s.path for s in again_validation.samples]
    assert len(rest) + len(validation) == len(train)
    assert not {s.path for s in rest.samples} & {s.path for s in validation.samples}
    assert [sum(s.label == b for s in validation.samples) for b in range(3)] == [2, 2, 2]
    other_rest, other_validation = stratified_split(train, 0.34, seed=4)
    assert [s.path for s in other_validation.samples] != [s.path for s in validation.samples]


def test_breed_names_come_from_the_folder_names():
    assert breed_name("n02085936-Maltese_dog") == "Maltese dog"
    assert breed_name("n02086240-Shih-Tzu") == "Shih-Tzu"
    assert breed_name("Beagle") == "Beagle"
