"""XMP sidecars (`photo.xmp`, as Lightroom and digiKam read them) carrying the breed as a keyword.

The breed goes into dc:subject (a flat keyword) and, as `Dogs|<Group>|<Breed>` (its kennel-club group,
`Dogs|Terrier|Cairn Terrier`; `Dogs|<Breed>` for a label without one), into lr:hierarchicalSubject
(a keyword tree). An existing sidecar is merged, never replaced: every tag and every other property
it holds stays, with its namespace prefixes, its layout and its `<?xpacket?>` wrapper; a sidecar that is
not valid XML is left alone. Each keyword property is kept once, in whichever rdf:Description holds it
(exiftool writes one block per namespace): a second copy would hide one of them from every reader.

Which sidecar: the one `rex.jpg` already has, whichever convention named it: `rex.xmp` (Lightroom) or
`rex.jpg.xmp` (digiKam, darktable); both are kept in step when both exist. A new one is `rex.xmp`, or
`rex.jpg.xmp` when asked (`--xmp-name photo.jpg.xmp`, for digiKam and darktable users) or when another
photo in its folder has the same name (`rex.png`): one `rex.xmp` would carry both photos' breeds, so
there `rex.xmp` is never used.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import xml.etree.ElementTree as ElementTree
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from dogtag.edge_app.breeds import KEYWORD_ROOT, hierarchical_keyword  # KEYWORD_ROOT: "Dogs", the tree's top

NAMESPACES = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
}
# How a new sidecar is named (`--xmp-name`): rex.xmp (Lightroom's way, the default) or rex.jpg.xmp (digiKam's).
PHOTO_XMP, PHOTO_EXT_XMP = "photo.xmp", "photo.jpg.xmp"
SIDECAR_NAMES = (PHOTO_XMP, PHOTO_EXT_XMP)
_RDF = f"{{{NAMESPACES['rdf']}}}"
_SUBJECT = f"{{{NAMESPACES['dc']}}}subject"
_HIERARCHICAL = f"{{{NAMESPACES['lr']}}}hierarchicalSubject"
# What may come before and after the root element: an XML declaration, processing instructions such as
# the `<?xpacket begin=...?>` wrapper Adobe and exiftool write, comments.
_PROLOG = re.compile(r"(?:\s|<\?[^>]*\?>|<!--(?:(?!-->).)*-->|<!DOCTYPE[^>]*>)*", re.DOTALL)
_EPILOG = re.compile(r"(?:\s|<\?[^>]*\?>|<!--(?:(?!-->).)*-->)*\Z", re.DOTALL)
_EMPTY_SIDECAR = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Dogtag">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:lr="http://ns.adobe.com/lightroom/1.0/"/>'
    "</rdf:RDF></x:xmpmeta>"
)


class XmpError(Exception):
    """A sidecar that cannot be read or written."""


def sidecar_paths(photo: str | os.PathLike, shared_name: bool = False, new_name: str = PHOTO_XMP) -> list[Path]:
    """The sidecars that carry `photo`'s tags: those that exist (`kennel/rex.xmp`, `kennel/rex.jpg.xmp`),
    else the one to create, named as `new_name` says (PHOTO_XMP or PHOTO_EXT_XMP).

    `shared_name`: another photo in the folder is called rex too, so `rex.xmp` is not this photo's alone
    and only `rex.jpg.xmp` is used.
    """
    if new_name not in SIDECAR_NAMES:
        raise ValueError(f"new_name must be one of {SIDECAR_NAMES}, got {new_name!r}")
    photo = os.fspath(photo)
    full, short = Path(photo + ".xmp"), Path(os.path.splitext(photo)[0] + ".xmp")
    candidates = [full] if shared_name else [short, full]
    existing = [path for path in candidates if path.exists()]
    if existing:
        return existing
    return [full if shared_name or new_name == PHOTO_EXT_XMP else short]


def photos_sharing_a_name(photos: Iterable[str | os.PathLike]) -> set[str]:
    """The photos (as given) whose folder holds another of them with the same name before the extension.

    Names are compared case-insensitively: on the file systems of Windows and macOS, Rex.xmp is rex.xmp.
    """
    photos = [os.fspath(photo) for photo in photos]

    def name(photo: str) -> tuple[str, str]:
        folder, file = os.path.split(photo)
        return folder, os.path.splitext(file)[0].casefold()

    counts = Counter(name(photo) for photo in photos)
    return {photo for photo in photos if counts[name(photo)] > 1}


def add_breed_keyword(
    photo: str | os.PathLike, breed: str, shared_name: bool = False, new_name: str = PHOTO_XMP
) -> bool:
    """Write or update the photo's sidecars so they carry `breed` and `Dogs|<group>|<breed>`.

    Returns True when a sidecar was written, False when they already had both tags (then they are not
    touched). Writing is atomic (temporary file, then rename). Which sidecars: see `sidecar_paths`.
    """
    def edit(text: str, source: str) -> str | None:
        # A keyword an earlier Dogtag wrote for this breed in the old form (`Dogs|<breed>`, before the
        # kennel-club group) is replaced, not left beside the new one.
        if f"{KEYWORD_ROOT}|{breed}<" in text and hierarchical_keyword(breed) != f"{KEYWORD_ROOT}|{breed}":
            return replace_breed(text, breed, source)
        return merge_keywords(text, [breed], [hierarchical_keyword(breed)], source)

    return _update(sidecar_paths(photo, shared_name, new_name), edit)


def set_breed_keyword(
    photo: str | os.PathLike, breed: str | None, shared_name: bool = False, new_name: str = PHOTO_XMP,
    create: bool = True,
) -> bool:
    """Make the photo's sidecars carry `breed` as their only Dogtag breed (a person's correction, a rerun).

    Every `Dogs|...` keyword, and the flat keyword of each breed it names, is removed first; all other
    tags stay. `breed` None leaves no breed (the photo is not a dog): no sidecar is created for that,
    nor with `create` False. Returns True when a sidecar was written, False when they were already so.
    Atomic, like `add_breed_keyword`; which sidecars: see `sidecar_paths`.
    """
    paths = [path for path in sidecar_paths(photo, shared_name, new_name)
             if (breed is not None and create) or path.exists()]
    return _update(paths, lambda text, source: replace_breed(text, breed, source))


def _update(paths: list[Path], edit: Callable[[str, str], str | None]) -> bool:
    """Apply `edit(text, name)` to each sidecar; every one is tried before an XmpError names the failures."""
    written, problems = False, []
    for path in paths:
        try:
            edited = edit(_read_sidecar(path), path.name)
            if edited is not None:
                _write_sidecar(path, edited)
                written = True
        except XmpError as error:
            problems.append(str(error))
    if problems:
        raise XmpError("; ".join(problems))
    return written


def existing_sidecars(photo: str | os.PathLike, shared_name: bool = False) -> list[Path]:
    """The sidecars `photo` has (see `sidecar_paths`); none when it has none."""
    return [path for path in sidecar_paths(photo, shared_name) if path.exists()]


def dogtag_breeds(photo: str | os.PathLike, shared_name: bool = False) -> list[str]:
    """The breeds Dogtag (or the review page) wrote into the photo's sidecars: their `Dogs|...` keywords,
    e.g. ["beagle"]; none for a photo without sidecars, or whose sidecar cannot be read."""
    breeds = []
    for path in existing_sidecars(photo, shared_name):
        try:
            _, hierarchical = read_keywords(path)
        except (OSError, ElementTree.ParseError):
            continue
        breeds += [item.rsplit("|", 1)[1] for item in hierarchical if item.startswith(f"{KEYWORD_ROOT}|")]
    return breeds


def replace_breed(text: str, breed: str | None, source: str = "sidecar") -> str | None:
    """The XMP document `text` with its Dogtag breed keywords replaced by `breed`'s; None when unchanged."""

    def change(root: ElementTree.Element) -> bool:
        subject, hierarchical, changed = _keyword_properties(root, source)
        wanted = [] if breed is None else [hierarchical_keyword(breed)]
        old = {item for item in _bag_items(hierarchical) if item.startswith(f"{KEYWORD_ROOT}|")}
        stale_breeds = {item.rsplit("|", 1)[1] for item in old - set(wanted)}
        changed = _remove_from_bag(hierarchical, old - set(wanted)) or changed
        changed = _remove_from_bag(subject, stale_breeds - {breed}) or changed
        if breed is not None:
            changed = _add_to_bag(subject, [breed]) or changed
            changed = _add_to_bag(hierarchical, wanted) or changed
        return changed

    return _edit(text, source, change)


def merge_keywords(text: str, keywords: list[str], hierarchical: list[str], source: str = "sidecar") -> str | None:
    """The XMP document `text` with the keywords added; None when it already has them all."""

    def change(root: ElementTree.Element) -> bool:
        subject_bag, hierarchical_bag, changed = _keyword_properties(root, source)
        changed = _add_to_bag(subject_bag, keywords) or changed
        return _add_to_bag(hierarchical_bag, hierarchical) or changed

    return _edit(text, source, change)


def _edit(text: str, source: str, change) -> str | None:
    """`text` parsed, changed in place by `change(root)` (which says whether it changed anything), and
    written back; None when nothing changed. What lies around the root element (exiftool's and Adobe's
    `<?xpacket ...?>` wrapper, an XML declaration) is kept as it was."""
    text = text.removeprefix("\ufeff")
    try:
        prefixes = [item for _, item in ElementTree.iterparse(io.StringIO(text), events=("start-ns",))]
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise XmpError(f"{source}: the existing sidecar is not valid XML ({error}); left unchanged") from error
    if not change(root):
        return None
    for description in root.iter(f"{_RDF}Description"):
        for tag in (_SUBJECT, _HIERARCHICAL):
            for prop in description.findall(tag):
                if not _bag_items(prop):  # an empty keyword list is no keyword list (no breed left, say)
                    description.remove(prop)
                    if len(description) == 0 and not (description.text or "").strip():
                        description.text = None
    for prefix, uri in [*NAMESPACES.items(), *prefixes]:
        with contextlib.suppress(ValueError):  # "ns0"-like prefixes are ElementTree's own; it picks one
            ElementTree.register_namespace(prefix, uri)
    if text == _EMPTY_SIDECAR:  # a new sidecar is laid out for people; an existing one keeps its layout
        ElementTree.indent(root, space=" ")
    before = _PROLOG.match(text).group(0).lstrip()
    after = _EPILOG.search(text).group(0).strip()
    return before + ElementTree.tostring(root, encoding="unicode") + "\n" + (after + "\n" if after else "")


def read_keywords(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """The dc:subject keywords and lr:hierarchicalSubject paths of a sidecar."""
    root = ElementTree.parse(path).getroot()
    subject, hierarchical = [], []
    for description in root.iter(f"{_RDF}Description"):
        subject += _bag_items(description.find(_SUBJECT))
        hierarchical += _bag_items(description.find(_HIERARCHICAL))
    return subject, hierarchical


def _keyword_properties(
    root: ElementTree.Element, source: str
) -> tuple[ElementTree.Element, ElementTree.Element, bool]:
    """The dc:subject and lr:hierarchicalSubject elements of the document (made when missing; `_edit` drops
    them again if they stay empty), and whether merging duplicates changed the document.

    Each property is looked for in every rdf:Description: exiftool writes one block per namespace, so the
    flat and the hierarchical keywords often sit in different blocks. A property found in several blocks
    (as sidecars written by Dogtag before 0.3 have it: readers then see only one) is merged into the first.
    A missing one goes into the block that holds the other, else the first block.
    """
    descriptions = list(root.iter(f"{_RDF}Description"))
    found = {tag: [(d, prop) for d in descriptions for prop in d.findall(tag)] for tag in (_SUBJECT, _HIERARCHICAL)}
    changed = False
    for places in found.values():
        for description, duplicate in places[1:]:
            _add_to_bag(places[0][1], _bag_items(duplicate))
            description.remove(duplicate)
            changed = True
    home = next((places[0][0] for places in found.values() if places), None)
    if home is None:
        home = descriptions[0] if descriptions else _new_description(root, source)
    properties = []
    for tag, places in found.items():
        if places:
            properties.append(places[0][1])
        else:
            properties.append(ElementTree.SubElement(home, tag))
    return properties[0], properties[1], changed


def _new_description(root: ElementTree.Element, source: str) -> ElementTree.Element:
    rdf = root if root.tag == f"{_RDF}RDF" else root.find(f"{_RDF}RDF")
    if rdf is None:
        raise XmpError(f"{source}: the existing sidecar has no rdf:RDF element; left unchanged")
    return ElementTree.SubElement(rdf, f"{_RDF}Description", {f"{_RDF}about": ""})


def _add_to_bag(prop: ElementTree.Element, items: list[str]) -> bool:
    """Add the items missing from the property's rdf:Bag (made when missing); True when one was added."""
    bag = next(iter(prop), None)
    if bag is None:
        bag = ElementTree.SubElement(prop, f"{_RDF}Bag")
    present = _bag_items(prop)
    missing = [item for item in dict.fromkeys(items) if item not in present]
    for item in missing:
        ElementTree.SubElement(bag, f"{_RDF}li").text = item
    return bool(missing)


def _bag_items(prop: ElementTree.Element | None) -> list[str]:
    if prop is None:
        return []
    return [(li.text or "").strip() for li in prop.iter(f"{_RDF}li")]


def _remove_from_bag(prop: ElementTree.Element, items: set[str]) -> bool:
    removed = False
    for bag in prop:
        for li in bag.findall(f"{_RDF}li"):
            if (li.text or "").strip() in items:
                bag.remove(li)
                removed = True
    return removed


def _read_sidecar(path: Path) -> str:
    """The sidecar's text, or an empty sidecar's when there is none yet."""
    try:
        return path.read_text(encoding="utf-8") if path.exists() else _EMPTY_SIDECAR
    except (OSError, UnicodeDecodeError) as error:
        raise XmpError(f"{path.name}: cannot read the existing sidecar ({error}); left unchanged") from error


def _write_sidecar(path: Path, text: str) -> None:
    """Write atomically: a temporary file beside it, then a rename."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise XmpError(f"{path.name}: cannot write the sidecar ({error.strerror or error})") from error
