"""Breed names as shelters write them: the one owner of display names, breed ids, groups and aliases.

The bundled models answer with Stanford Dogs' labels, which are ImageNet's names ("cairn",
"Blenheim spaniel", "Mexican hairless"). `breeds.json` beside this module gives each of Stanford's
120 synset ids (its *breed id*, e.g. n02110185) the name kennel clubs and adoption listings use
(AKC's list, cited in the file), its kennel-club group (for the XMP keyword tree
`Dogs|Terrier|Cairn Terrier`) and the aliases a person may type ("yorkie", "GSD", the old name).

Two namings, chosen per run (`--names`):

- `display` (the default): display names, and labels that are one kind of dog under two ids are
  merged (Stanford's "Eskimo dog" photos are Siberian huskies: the evidence is in breeds.json), their
  probabilities summed at prediction time.
- `stanford`: the model's own labels, all 120 of them, as Dogtag wrote them before.

A label a learned model adds with no synset id ("Mixed Breed", typed on the review page) keeps the
name as typed, spaces tidied (`normalise_label`), with an empty breed id. Any name, old or new, display,
Stanford or alias, finds its breed with `find`, so results files written before keep working.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from dogtag.edge_app.model_file import ModelInfo

BREEDS_FILE = Path(__file__).with_name("breeds.json")
NAMINGS = ("display", "stanford")
DEFAULT_NAMING = "display"
KEYWORD_ROOT = "Dogs"  # the top of the XMP keyword tree: Dogs|Terrier|Cairn Terrier


@dataclass(frozen=True)
class Breed:
    """One Stanford breed: its id, the name shelters write, Stanford's name, its group and aliases."""

    breed_id: str
    name: str
    stanford_name: str
    group: str
    aliases: tuple[str, ...] = ()
    merged_into: str = ""  # the breed id whose label answers for this one ("" when it answers itself)


@dataclass(frozen=True)
class LabelMap:
    """How a model's outputs become the labels of a naming: `labels[index[i]]` answers for output i.

    Several outputs map to one label when their breeds are merged; their probabilities are summed.
    """

    labels: tuple[str, ...]
    breed_ids: tuple[str, ...]  # "" for a label with no synset id
    index: tuple[int, ...]  # one per model output

    def merge(self, probabilities: np.ndarray) -> np.ndarray:
        """Model outputs (n, outputs) -> label probabilities (n, labels), merged outputs summed."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        if len(self.labels) == len(self.index):
            return probabilities
        merged = np.zeros((len(self.labels), probabilities.shape[0]), dtype=np.float64)
        np.add.at(merged, np.asarray(self.index), probabilities.T)
        return merged.T


@cache
def _document() -> dict:
    return json.loads(BREEDS_FILE.read_text(encoding="utf-8"))


@cache
def all_breeds() -> tuple[Breed, ...]:
    """Every breed of breeds.json, in Stanford's order."""
    return tuple(
        Breed(item["id"], item["name"], item["stanford"], item["group"], tuple(item.get("aliases", ())),
              item.get("merged_into", ""))
        for item in _document()["breeds"]
    )


@cache
def _by_id() -> dict[str, Breed]:
    return {breed.breed_id: breed for breed in all_breeds()}


@cache
def _by_name() -> dict[str, Breed]:
    """Every known name, casefolded -> its breed (the merge target for a merged id). Display and
    Stanford names win over aliases; an alias of two breeds ("corgi", "poodle") names neither."""
    names: dict[str, Breed] = {}
    owners: dict[str, set[str]] = {}
    for breed in all_breeds():
        target = answering(breed.breed_id) or breed
        for name in breed.aliases:
            owners.setdefault(_key(name), set()).add(target.breed_id)
            names[_key(name)] = target
    names = {name: breed for name, breed in names.items() if len(owners[name]) == 1}
    for breed in all_breeds():
        target = answering(breed.breed_id) or breed
        names[_key(breed.stanford_name)] = target
        names[_key(breed.stanford_name.replace(" ", "_"))] = target
    for breed in all_breeds():
        names[_key(breed.name)] = breed
    return names


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def by_id(breed_id: str) -> Breed | None:
    """The breed of a synset id, None for an unknown one."""
    return _by_id().get(breed_id)


def answering(breed_id: str) -> Breed | None:
    """The breed whose label answers for `breed_id` in the display naming (itself unless merged)."""
    breed = by_id(breed_id)
    if breed is None:
        return None
    return by_id(breed.merged_into) if breed.merged_into else breed


@cache
def _by_own_name() -> dict[str, Breed]:
    """Display and Stanford names -> the breed that bears them (a merged breed's own id, not its target)."""
    names = {_key(breed.name): breed for breed in all_breeds() if not breed.merged_into}
    for breed in all_breeds():
        names[_key(breed.stanford_name)] = names[_key(breed.stanford_name.replace(" ", "_"))] = breed
    return names


def find(name: str, aliases: bool = True) -> Breed | None:
    """The breed a name means: a display name, a Stanford name (with or without underscores) or, with
    `aliases`, a nickname of one breed only, in any case; None for a name no breed has (a learned
    label such as "Mixed Breed"). With `aliases` a merged breed's names find the breed that answers
    for it ("Eskimo dog" -> Siberian Husky); without, the breed that bears the name."""
    if not name:
        return None
    return (_by_name() if aliases else _by_own_name()).get(_key(name))


def normalise_label(text: str) -> str:
    """A label as typed, tidied: spaces collapsed, its case kept ("pit bull  type" -> "pit bull type"), since
    a shelter's own label is spelled as the volunteers chose."""
    return " ".join(str(text).split())


def display_name(name: str) -> str:
    """The display name for any name of a breed (old Stanford names included), else the name tidied."""
    breed = find(name)
    return breed.name if breed else normalise_label(name)


def breed_id_of(name: str) -> str:
    """The breed id for any name of a breed, "" for a label without one."""
    breed = find(name)
    return breed.breed_id if breed else ""


def group_of(name: str) -> str:
    """The kennel-club group of a breed's name, "" for a label without one."""
    breed = find(name)
    return breed.group if breed else ""


def hierarchical_keyword(name: str) -> str:
    """The XMP hierarchical subject of a breed: `Dogs|Terrier|Cairn Terrier`; `Dogs|<name>` for a
    label without a group. The name is kept as given (a --names stanford run writes Stanford's)."""
    group = group_of(name)
    return f"{KEYWORD_ROOT}|{group}|{name}" if group else f"{KEYWORD_ROOT}|{name}"


def model_breed_ids(labels: Sequence[str], wnids: Sequence[str] | None = None) -> tuple[str, ...]:
    """The breed id of each model label: the ids the model file carries (its `wnids`), else each
    label's id found by its display or Stanford name ("" for a label with none: a learned label is not
    guessed from a nickname)."""
    if wnids is not None and len(wnids) == len(labels):
        return tuple(str(wnid or "") for wnid in wnids)
    return tuple(breed.breed_id if (breed := find(label, aliases=False)) else "" for label in labels)


def label_map(labels: Sequence[str], breed_ids: Sequence[str], naming: str = DEFAULT_NAMING) -> LabelMap:
    """The labels a naming gives a model's outputs (see the module docstring)."""
    if naming not in NAMINGS:
        raise ValueError(f"unknown naming {naming!r}: choose one of {', '.join(NAMINGS)}")
    names: list[str] = []
    ids: list[str] = []
    index: list[int] = []
    for label, breed_id in zip(labels, breed_ids, strict=True):
        breed = by_id(breed_id)
        if naming == "stanford":
            name, answer_id = (breed.stanford_name if breed else label), breed_id
        elif breed is not None:
            target = answering(breed_id)
            name, answer_id = target.name, target.breed_id
        else:
            name, answer_id = normalise_label(label), ""
        if name in names:  # a merged breed, or two labels typed alike: one answer
            index.append(names.index(name))
            continue
        index.append(len(names))
        names.append(name)
        ids.append(answer_id)
    return LabelMap(tuple(names), tuple(ids), tuple(index))


def model_label_map(info: ModelInfo, naming: str = DEFAULT_NAMING) -> LabelMap:
    """The labels a naming gives a model file's outputs (its `wnids` give the ids, else its labels do)."""
    return label_map(info.labels, model_breed_ids(info.labels, info.extra.get("wnids")), naming)


def model_label(name: str, labels: Sequence[str], breed_ids: Sequence[str]) -> str | None:
    """The model label (as the model file has it) that a name means, however it was written: the label
    itself, or a display name, Stanford name or one breed's nickname of the label's breed ("Cairn
    Terrier" or "cairn" -> "cairn"; "Siberian Husky" -> "Siberian husky"). None when no label means it.
    For whoever maps people's corrections to a model's outputs (`dogtag learn`)."""
    if name in labels:
        return name
    breed = find(name)
    if breed is None:
        return None
    for label, breed_id in zip(labels, breed_ids, strict=True):
        if breed_id == breed.breed_id:
            return label
    return None


def canonical_name(name: str) -> str:
    """The display name of a breed named any way (old Stanford name, a nickname of one breed: "yorkie");
    any other name (a mix, "Labradoodle") as given."""
    breed = find(name)
    return breed.name if breed else name


@cache
def _sibling_groups() -> tuple[frozenset[str], ...]:
    return tuple(frozenset(item["ids"]) for item in _document().get("siblings", ()))


def are_siblings(first: str, second: str) -> bool:
    """Whether two breed names (or ids) are siblings told apart mostly by pedigree (breeds.json)."""
    ids = {breed.breed_id for breed in (by_id(first) or find(first), by_id(second) or find(second)) if breed}
    return len(ids) == 2 and any(ids <= group for group in _sibling_groups())


def search(query: str, names: Sequence[str], limit: int = 10) -> list[str]:
    """Which of `names` (a model's labels) a person typing `query` means, best first.

    Matches the display name, the Stanford name and the aliases ("pit bull", "lab", "yorkie",
    "GSD", "husky"): a whole name or alias first, then names starting with the query, then names
    containing it.
    """
    wanted = _key(query)
    if not wanted:
        return list(names)[:limit]
    scored = []
    for position, name in enumerate(dict.fromkeys(names)):
        breed = find(name)
        texts = [_key(name)]
        if breed is not None:
            texts += [_key(breed.stanford_name), *(_key(alias) for alias in breed.aliases)]
            texts += [_key(alias) for other in all_breeds() if other.merged_into == breed.breed_id
                      for alias in (other.stanford_name, *other.aliases)]
        if wanted in texts:
            rank = 0
        elif any(text.startswith(wanted) or f" {wanted}" in f" {text}" for text in texts):
            rank = 1
        elif any(wanted in text for text in texts):
            rank = 2
        else:
            continue
        scored.append((rank, position, name))
    return [name for _, _, name in sorted(scored)[:limit]]


def describe(name: str) -> dict:
    """A label as the review page's breed list gives it: name, breed_id, stanford_name, group, aliases."""
    breed = find(name)
    if breed is None:
        return {"name": name, "breed_id": "", "stanford_name": "", "group": "", "aliases": []}
    merged = [other for other in all_breeds() if other.merged_into == breed.breed_id]
    aliases = [*breed.aliases, *(alias for other in merged for alias in (other.stanford_name.lower(), *other.aliases))]
    return {
        "name": name, "breed_id": breed.breed_id, "stanford_name": breed.stanford_name, "group": breed.group,
        "aliases": list(dict.fromkeys(alias for alias in aliases if _key(alias) != _key(name))),
    }
