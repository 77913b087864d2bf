"""How a label the base model does not have is learned: from a few photos, against the breeds those
photos looked like to the base (its parents), never against the others; written and read back whole."""

from __future__ import annotations

import io

import numpy as np

from dogtag.edge_app.learned import Head
from dogtag.edge_app.runtime import Outputs
from dogtag.learn.fit import Split, class_stats, fit

CENTRES = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [6.0, 8.0, 0.0]])  # three base breeds: 2 near the new label too
NEW_CENTRE = np.array([6.0, 3.5, 0.0])  # a new label: a sibling of breed 1, whom the base calls breed 1
BASE_LABELS, LABELS, NEW = 3, 4, 3


def photos(centre: np.ndarray, count: int, base_says: int, seed: int) -> Outputs:
    """Features around `centre`; a base model sure (98%) that each is breed `base_says`."""
    rng = np.random.default_rng(seed)
    features = (centre + rng.normal(0, 1.0, (count, len(centre)))).astype(np.float32)
    breeds = np.full((count, BASE_LABELS), 0.01, np.float32)
    breeds[:, base_says] = 0.98
    return Outputs(breeds, np.full(count, 0.99, np.float32), features)


def split(parts: list[tuple[Outputs, int]]) -> Split:
    outputs = Outputs(*(np.concatenate([getattr(o, name) for o, _ in parts]) for name in ("breeds", "dog", "features")))
    return Split(outputs, np.concatenate([np.full(len(o.breeds), label) for o, label in parts]))


def bank() -> Split:
    return split([(photos(centre, 40, breed, seed=breed), breed) for breed, centre in enumerate(CENTRES)])


def learned_head() -> Head:
    examples = split([(photos(NEW_CENTRE, 5, base_says=1, seed=10), NEW)])
    training = bank()
    return fit(examples, training, LABELS, BASE_LABELS, stats=class_stats(training.outputs.features,
                                                                           training.labels, BASE_LABELS))


def answers(head: Head, outputs: Outputs) -> np.ndarray:
    return head.apply(outputs).breeds.argmax(1)


def test_a_new_label_learned_from_five_photos_is_given_to_new_photos_of_its_kind():
    head = learned_head()

    assert (answers(head, photos(NEW_CENTRE, 50, base_says=1, seed=20)) == NEW).mean() >= 0.8


def test_the_parent_breed_keeps_most_of_its_photos():
    head = learned_head()

    assert (answers(head, photos(CENTRES[1], 50, base_says=1, seed=21)) == 1).mean() >= 0.8


def test_a_new_label_takes_no_photos_of_the_breeds_its_photos_did_not_look_like():
    head = learned_head()

    for breed in (0, 2):
        assert (answers(head, photos(CENTRES[breed], 50, base_says=breed, seed=22 + breed)) == breed).all()


def test_a_head_with_new_labels_reads_back_from_its_file_and_answers_the_same():
    head = learned_head()
    buffer = io.BytesIO()
    np.savez(buffer, **head.arrays())
    buffer.seek(0)
    with np.load(buffer) as arrays:
        again = Head.from_arrays(arrays)
    test = photos(NEW_CENTRE, 10, base_says=1, seed=23)

    np.testing.assert_allclose(again.apply(test).breeds, head.apply(test).breeds, rtol=1e-6)


def test_a_head_written_before_new_labels_had_their_own_scoring_still_reads():
    arrays = {name: value for name, value in learned_head().arrays().items() if not name.startswith("new_")}

    head = Head.from_arrays(arrays)

    assert head.new_labels is None
    assert head.apply(photos(CENTRES[0], 3, base_says=0, seed=24)).breeds.shape == (3, LABELS)


def test_a_new_label_without_photos_in_a_fold_stays_out_of_the_way_and_breaks_nothing():
    """k-fold can leave a new label with no training photos: it gets no photos, and no NaN."""
    examples = split([(photos(NEW_CENTRE, 5, base_says=1, seed=10), NEW)])
    training = bank()
    head = fit(examples, training, LABELS + 1, BASE_LABELS,
               stats=class_stats(training.outputs.features, training.labels, BASE_LABELS))

    answered = head.apply(photos(NEW_CENTRE, 20, base_says=1, seed=25)).breeds

    assert np.isfinite(answered).all()
    assert (answered.argmax(1) != LABELS).all() and answered[:, LABELS].max() < 1e-3


def test_without_a_bank_a_new_label_learned_from_its_photos_alone_is_predicted_and_nothing_is_nan():
    """A model file with no bank beside it, and corrections that only name a new label."""
    examples = split([(photos(NEW_CENTRE, 5, base_says=1, seed=10), NEW)])

    head = fit(examples, None, LABELS, BASE_LABELS)
    answered = head.apply(photos(NEW_CENTRE, 20, base_says=1, seed=26)).breeds

    assert np.isfinite(answered).all()
    assert (answered.argmax(1) == NEW).mean() >= 0.8


def test_one_photo_per_breed_and_no_bank_gives_a_space_of_sensible_scale():
    """No spread within any label to measure: the whitening falls back to the spread of all photos."""
    examples = split([(photos(CENTRES[breed], 1, base_says=breed, seed=30 + breed), breed) for breed in range(3)]
                     + [(photos(NEW_CENTRE, 1, base_says=1, seed=33), NEW)])

    head = fit(examples, None, LABELS, BASE_LABELS)
    logits = head.breed_logits(*(lambda o: (o.breeds, o.features))(photos(CENTRES[0], 5, base_says=0, seed=34)))

    assert np.isfinite(logits).all() and np.abs(logits).max() < 1e3
