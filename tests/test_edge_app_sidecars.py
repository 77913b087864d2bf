"""XMP sidecars as the programs a shelter uses read them back (exiftool, Lightroom, digiKam, darktable).

Each test writes sidecars the way `dogtag tag --xmp` does and reads them back with Dogtag's own reader;
where exiftool is installed (`apt-get install libimage-exiftool-perl`; `.ci/run` installs it), also with
exiftool, which must see the breed and report no warning (`exiftool -validate -warning`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from dogtag.cli import main
from dogtag.edge_app.breeds import hierarchical_keyword
from dogtag.edge_app.results import read_results
from dogtag.edge_app.xmp import PHOTO_EXT_XMP, add_breed_keyword, read_keywords, set_breed_keyword
from tests.review_fixtures import draw_dog

EXIFTOOL = shutil.which("exiftool")
# The bundled fast model with no thresholds: every drawn dog is a `dog` with a breed (which one does not matter).
EVERY_PHOTO_A_DOG = ["--model", "fast", "--min-dog", "0", "--min-confidence", "0"]


def tag(*args) -> object:
    return CliRunner().invoke(main, ["tag", *map(str, args)])


def breeds(results: Path) -> dict[str, str]:
    rows, _ = read_results(results, "csv")
    return {row.path: row.breed for row in rows}

# As `exiftool -XMP-dc:Subject=Adopted -XMP-dc:Subject="Kennel 4" -XMP-lr:HierarchicalSubject="Status|Adopted"
# -XMP-dc:Description=Friendly -XMP-xmp:Rating=4 max.xmp` writes it (exiftool 12.57): one block per namespace.
EXIFTOOL_SIDECAR = """<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/' x:xmptk='Image::ExifTool 12.57'>
<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>

 <rdf:Description rdf:about=''
  xmlns:dc='http://purl.org/dc/elements/1.1/'>
  <dc:description>
   <rdf:Alt>
    <rdf:li xml:lang='x-default'>Friendly</rdf:li>
   </rdf:Alt>
  </dc:description>
  <dc:subject>
   <rdf:Bag>
    <rdf:li>Adopted</rdf:li>
    <rdf:li>Kennel 4</rdf:li>
   </rdf:Bag>
  </dc:subject>
 </rdf:Description>

 <rdf:Description rdf:about=''
  xmlns:lr='http://ns.adobe.com/lightroom/1.0/'>
  <lr:hierarchicalSubject>
   <rdf:Bag>
    <rdf:li>Status|Adopted</rdf:li>
   </rdf:Bag>
  </lr:hierarchicalSubject>
 </rdf:Description>

 <rdf:Description rdf:about=''
  xmlns:xmp='http://ns.adobe.com/xap/1.0/'>
  <xmp:Rating>4</xmp:Rating>
 </rdf:Description>
</rdf:RDF>
</x:xmpmeta>
<?xpacket end='w'?>"""

# What Dogtag before this fix made of EXIFTOOL_SIDECAR: a second lr:hierarchicalSubject, which readers ignore.
SIDECAR_WITH_A_DUPLICATE = EXIFTOOL_SIDECAR.replace(
    "    <rdf:li>Kennel 4</rdf:li>\n   </rdf:Bag>\n  </dc:subject>\n",
    "    <rdf:li>Kennel 4</rdf:li>\n    <rdf:li>bloodhound</rdf:li>\n   </rdf:Bag>\n  </dc:subject>\n"
    "  <lr:hierarchicalSubject xmlns:lr='http://ns.adobe.com/lightroom/1.0/'><rdf:Bag><rdf:li>Dogs|bloodhound"
    "</rdf:li></rdf:Bag></lr:hierarchicalSubject>\n",
)


def exiftool_tags(sidecar: Path) -> dict:
    """What exiftool reads in a sidecar: its tags, its validation verdict and warnings (a list)."""
    if EXIFTOOL is None:
        pytest.skip("exiftool is not installed (apt-get install libimage-exiftool-perl): sidecars checked by "
                    "Dogtag's reader only")
    output = subprocess.run(
        [EXIFTOOL, "-json", "-a", "-validate", "-warning", "-XMP:all", "-struct", str(sidecar)],
        capture_output=True, text=True, check=True,
    ).stdout
    (tags,) = json.loads(output)
    warnings = tags.get("Warning", [])
    tags["Warning"] = warnings if isinstance(warnings, list) else [warnings]
    return tags


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def assert_exiftool_reads(sidecar: Path, subject: list[str], hierarchical: list[str]) -> dict:
    """exiftool sees exactly these keywords, and validates the sidecar without a warning."""
    tags = exiftool_tags(sidecar)
    assert tags["Warning"] == [] and tags["Validate"] == "OK", tags
    assert as_list(tags.get("Subject", [])) == subject
    assert as_list(tags.get("HierarchicalSubject", [])) == hierarchical
    return tags


def test_the_breed_merged_into_an_exiftool_sidecar_is_seen_by_exiftool_and_every_tag_stays(tmp_path):
    (tmp_path / "max.xmp").write_text(EXIFTOOL_SIDECAR, encoding="utf-8")

    assert add_breed_keyword(tmp_path / "max.jpg", "bloodhound") is True

    sidecar = tmp_path / "max.xmp"
    assert read_keywords(sidecar) == (["Adopted", "Kennel 4", "bloodhound"], ["Status|Adopted", hierarchical_keyword("bloodhound")])
    text = sidecar.read_text(encoding="utf-8")
    assert text.count("<lr:hierarchicalSubject>") == 1, "one hierarchical keyword list, not two"
    assert text.startswith("<?xpacket begin=") and text.rstrip().endswith("<?xpacket end='w'?>")
    tags = assert_exiftool_reads(sidecar, ["Adopted", "Kennel 4", "bloodhound"], ["Status|Adopted", hierarchical_keyword("bloodhound")])
    assert (tags["Rating"], tags["Description"]) == (4, "Friendly")


def test_a_sidecar_with_a_duplicated_keyword_list_is_repaired_at_the_next_run(tmp_path):
    (tmp_path / "max.xmp").write_text(SIDECAR_WITH_A_DUPLICATE, encoding="utf-8")

    assert add_breed_keyword(tmp_path / "max.jpg", "bloodhound") is True, "the duplicate is merged away"
    assert add_breed_keyword(tmp_path / "max.jpg", "bloodhound") is False, "then there is nothing to do"

    sidecar = tmp_path / "max.xmp"
    assert sidecar.read_text(encoding="utf-8").count("hierarchicalSubject>") == 2, "one opening, one closing tag"
    assert read_keywords(sidecar) == (["Adopted", "Kennel 4", "bloodhound"], ["Status|Adopted", hierarchical_keyword("bloodhound")])
    assert_exiftool_reads(sidecar, ["Adopted", "Kennel 4", "bloodhound"], ["Status|Adopted", hierarchical_keyword("bloodhound")])


def test_a_corrected_breed_replaces_dogtags_keywords_in_the_block_that_holds_them(tmp_path):
    (tmp_path / "max.xmp").write_text(EXIFTOOL_SIDECAR, encoding="utf-8")
    add_breed_keyword(tmp_path / "max.jpg", "bloodhound")

    set_breed_keyword(tmp_path / "max.jpg", "redbone")

    sidecar = tmp_path / "max.xmp"
    assert read_keywords(sidecar) == (["Adopted", "Kennel 4", "redbone"], ["Status|Adopted", hierarchical_keyword("redbone")])
    assert_exiftool_reads(sidecar, ["Adopted", "Kennel 4", "redbone"], ["Status|Adopted", hierarchical_keyword("redbone")])
    set_breed_keyword(tmp_path / "max.jpg", None)
    assert read_keywords(sidecar) == (["Adopted", "Kennel 4"], ["Status|Adopted"])
    assert_exiftool_reads(sidecar, ["Adopted", "Kennel 4"], ["Status|Adopted"])


def test_a_new_sidecar_is_valid_for_exiftool_and_holds_no_empty_keyword_list(tmp_path):
    add_breed_keyword(tmp_path / "rex.jpg", "beagle")
    assert_exiftool_reads(tmp_path / "rex.xmp", ["beagle"], [hierarchical_keyword("beagle")])

    set_breed_keyword(tmp_path / "rex.jpg", None)

    text = (tmp_path / "rex.xmp").read_text(encoding="utf-8")
    assert "subject" not in text.lower(), "no breed left: no empty keyword lists either"
    assert_exiftool_reads(tmp_path / "rex.xmp", [], [])


# A sidecar in the way digiKam lays them out (lucky.jpg.xmp, through Exiv2), for a photo tagged "Vaccinated".
DIGIKAM_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/">
   <digiKam:TagsList>
    <rdf:Seq>
     <rdf:li>Vaccinated</rdf:li>
    </rdf:Seq>
   </digiKam:TagsList>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Vaccinated</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>Vaccinated</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_the_sidecar_a_photo_already_has_is_used_whichever_way_it_is_named(tmp_path):
    (tmp_path / "lucky.jpg.xmp").write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    (tmp_path / "max.xmp").write_text(EXIFTOOL_SIDECAR, encoding="utf-8")

    add_breed_keyword(tmp_path / "lucky.jpg", "vizsla")
    add_breed_keyword(tmp_path / "max.jpg", "bloodhound", new_name=PHOTO_EXT_XMP)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["lucky.jpg.xmp", "max.xmp"], "no second sidecar"
    assert read_keywords(tmp_path / "lucky.jpg.xmp") == (["Vaccinated", "vizsla"], ["Vaccinated", hierarchical_keyword("vizsla")])
    assert "<digiKam:TagsList>" in (tmp_path / "lucky.jpg.xmp").read_text(encoding="utf-8")
    assert_exiftool_reads(tmp_path / "lucky.jpg.xmp", ["Vaccinated", "vizsla"], ["Vaccinated", hierarchical_keyword("vizsla")])


def test_a_photo_with_sidecars_of_both_names_gets_the_breed_in_both(tmp_path):
    (tmp_path / "lucky.jpg.xmp").write_text(DIGIKAM_SIDECAR, encoding="utf-8")
    (tmp_path / "lucky.xmp").write_text(EXIFTOOL_SIDECAR, encoding="utf-8")

    add_breed_keyword(tmp_path / "lucky.jpg", "vizsla")
    set_breed_keyword(tmp_path / "lucky.jpg", "redbone")

    assert read_keywords(tmp_path / "lucky.jpg.xmp") == (["Vaccinated", "redbone"], ["Vaccinated", hierarchical_keyword("redbone")])
    assert read_keywords(tmp_path / "lucky.xmp") == (["Adopted", "Kennel 4", "redbone"], ["Status|Adopted", hierarchical_keyword("redbone")])


def test_new_sidecars_are_named_photo_xmp_unless_photo_jpg_xmp_is_asked_for_or_the_name_is_shared(tmp_path):
    add_breed_keyword(tmp_path / "rex.jpg", "beagle")
    add_breed_keyword(tmp_path / "lucky.jpg", "vizsla", new_name=PHOTO_EXT_XMP)
    add_breed_keyword(tmp_path / "max.jpg", "pug", shared_name=True)  # max.png is there too
    (tmp_path / "bella.xmp").write_text(EXIFTOOL_SIDECAR, encoding="utf-8")  # whose: bella.jpg's or bella.png's?
    add_breed_keyword(tmp_path / "bella.jpg", "basset", shared_name=True)

    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "bella.jpg.xmp", "bella.xmp", "lucky.jpg.xmp", "max.jpg.xmp", "rex.xmp"]
    assert (tmp_path / "bella.xmp").read_text(encoding="utf-8") == EXIFTOOL_SIDECAR, "a shared name's is left alone"
    assert read_keywords(tmp_path / "lucky.jpg.xmp") == (["vizsla"], [hierarchical_keyword("vizsla")])


def test_dogtag_tag_xmp_adds_the_breed_to_the_sidecars_other_programs_made(tmp_path):
    folder = tmp_path / "photos"
    draw_dog(folder / "max.jpg", 1)
    draw_dog(folder / "lucky.jpg", 2)
    (folder / "max.xmp").write_text(EXIFTOOL_SIDECAR, encoding="utf-8")
    (folder / "lucky.jpg.xmp").write_text(DIGIKAM_SIDECAR, encoding="utf-8")

    result = tag(folder, *EVERY_PHOTO_A_DOG, "--xmp")

    assert result.exit_code == 0, result.output
    breed = breeds(folder / "dogtag-results.csv")
    assert sorted(path.name for path in folder.glob("*.xmp")) == ["lucky.jpg.xmp", "max.xmp"]
    assert read_keywords(folder / "max.xmp") == (
        ["Adopted", "Kennel 4", breed["max.jpg"]], ["Status|Adopted", hierarchical_keyword(breed['max.jpg'])])
    assert read_keywords(folder / "lucky.jpg.xmp") == (
        ["Vaccinated", breed["lucky.jpg"]], ["Vaccinated", hierarchical_keyword(breed['lucky.jpg'])])
    assert_exiftool_reads(folder / "max.xmp", ["Adopted", "Kennel 4", breed["max.jpg"]],
                          ["Status|Adopted", hierarchical_keyword(breed['max.jpg'])])
    assert_exiftool_reads(folder / "lucky.jpg.xmp", ["Vaccinated", breed["lucky.jpg"]],
                          ["Vaccinated", hierarchical_keyword(breed['lucky.jpg'])])


def test_xmp_name_photo_jpg_xmp_names_new_sidecars_as_digikam_and_darktable_read_them(tmp_path):
    folder = tmp_path / "photos"
    draw_dog(folder / "rex.jpg", 1)
    draw_dog(folder / "max.jpg", 2)
    (folder / "max.xmp").write_text(EXIFTOOL_SIDECAR, encoding="utf-8")  # Lightroom's, made before

    result = tag(folder, *EVERY_PHOTO_A_DOG, "--xmp", "--xmp-name", "photo.jpg.xmp")

    assert result.exit_code == 0, result.output
    breed = breeds(folder / "dogtag-results.csv")
    assert sorted(path.name for path in folder.glob("*.xmp")) == ["max.xmp", "rex.jpg.xmp"], "max keeps its own"
    assert_exiftool_reads(folder / "rex.jpg.xmp", [breed["rex.jpg"]], [hierarchical_keyword(breed['rex.jpg'])])
    assert "--xmp-name [photo.xmp|photo.jpg.xmp]" in CliRunner().invoke(main, ["tag", "--help"]).output
