"""Photos as the shelter's cameras and phones make them become the pixels a model takes, and bad files
are refused with a reason a volunteer can act on. No model and no TensorFlow needed."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dogtag.edge_app.images import PhotoError, load_photo, pillow_pixel_limit, prepare_image
from dogtag.edge_app.walk import find_photos, printable_path
from tests.edge_fixtures import BAD_FILES, mean_colour
from tests.fakes import make_photo

RED, BLUE = (220, 30, 30), (30, 30, 220)


def uniform(mode: str, colour, size=(8, 8)) -> Image.Image:
    return Image.new(mode, size, colour)


@pytest.mark.parametrize("name", ["a.jpg", "a.png", "a.webp", "a.bmp", "a.gif", "a.tiff"])
def test_every_common_photo_format_becomes_model_input_of_the_model_size(tmp_path, name):
    uniform("RGB", RED, (48, 36)).save(tmp_path / name)

    pixels = load_photo(tmp_path / name, (32, 24))

    assert pixels.shape == (32, 24, 3) and pixels.dtype == np.uint8
    assert np.abs(mean_colour(pixels) - RED).max() < 8, "the colour survives decoding"


def test_phone_heic_photos_are_read_when_pillow_heif_is_installed(tmp_path):
    pytest.importorskip("pillow_heif")
    try:
        uniform("RGB", RED, (60, 40)).save(tmp_path / "phone.heic", quality=95)
    except (KeyError, OSError, ValueError) as error:
        pytest.skip(f"this pillow-heif cannot encode HEIC ({error})")

    pixels = load_photo(tmp_path / "phone.heic", (16, 16))

    assert np.abs(mean_colour(pixels) - RED).max() < 12


def test_without_pillow_heif_a_heic_photo_says_which_extra_to_install(tmp_path):
    photo = tmp_path / "phone.heic"
    photo.write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64)
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, *args):\n"
        "        if name.split('.')[0] == 'pillow_heif': raise ImportError('blocked by the test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from dogtag.edge_app.images import PhotoError, load_photo\n"
        "try:\n"
        f"    load_photo({str(photo)!r}, (8, 8))\n"
        "except PhotoError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    assert "HEIC/HEIF photo, which needs pillow-heif: pip install 'dogtag[heif]'" in result.stdout, result.stderr


def test_exif_orientation_is_applied_so_a_phone_photo_is_seen_upright(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20], stored[:, 20:] = RED, BLUE  # stored sideways: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "sideways.jpg", exif=exif, quality=95)

    pixels = load_photo(tmp_path / "sideways.jpg", (32, 32))

    assert np.abs(mean_colour(pixels[:12]) - RED).max() < 20, "red is on top once upright"
    assert np.abs(mean_colour(pixels[-12:]) - BLUE).max() < 20, "blue is at the bottom"


@pytest.mark.parametrize(
    "image, suffix, expected",
    [
        (uniform("L", 100), ".png", (100, 100, 100)),
        (uniform("1", 1), ".png", (255, 255, 255)),
        (uniform("RGB", RED).convert("P", palette=Image.Palette.ADAPTIVE), ".png", RED),
        (uniform("CMYK", (255, 0, 0, 0)), ".jpg", (0, 255, 255)),
        (uniform("CMYK", (0, 0, 0, 0)), ".tiff", (255, 255, 255)),
        (Image.fromarray(np.full((8, 8), 32896, np.uint16)), ".png", (128, 128, 128)),
        (uniform("RGBA", (255, 0, 0, 128)), ".png", (255, 127, 127)),
        (uniform("RGBA", (0, 0, 0, 0)), ".webp", (255, 255, 255)),
        (uniform("LA", (0, 0)), ".png", (255, 255, 255)),
    ],
    ids=["grayscale", "black-and-white", "palette", "cmyk-jpeg", "cmyk-tiff", "16-bit-gray",
         "half-transparent", "transparent", "transparent-gray"],
)
def test_every_colour_mode_becomes_the_rgb_a_viewer_shows_with_alpha_on_white(tmp_path, image, suffix, expected):
    image.save(tmp_path / f"photo{suffix}", **({"lossless": True} if suffix == ".webp" else {}))

    pixels = load_photo(tmp_path / f"photo{suffix}", (4, 4))

    assert np.abs(mean_colour(pixels) - expected).max() <= 3, f"{image.mode} -> {mean_colour(pixels)}"


def test_a_transparent_gif_is_composited_on_white_and_only_its_first_frame_is_used(tmp_path):
    first = uniform("P", 0)
    first.putpalette([0, 0, 0] + list(RED) + [0] * 762)
    second = uniform("RGB", BLUE).convert("P")
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second], transparency=0)

    pixels = load_photo(tmp_path / "anim.gif", (4, 4))

    assert np.abs(mean_colour(pixels) - (255, 255, 255)).max() <= 1, "transparent first frame: white, not blue"


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_not_in_full(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    path = make_photo(tmp_path / "12mp.jpg", (2400, 1800), quality=80)
    decoded_sizes = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)

    pixels = load_photo(path, (224, 224))

    assert pixels.shape == (224, 224, 3)
    assert decoded_sizes == [(300, 225)], "decoded at 1/8 scale, still at least 224 px each way"


def test_squash_stretches_the_whole_photo_and_crop_keeps_the_centre(tmp_path):
    pixels = np.zeros((40, 80, 3), np.uint8)
    pixels[:, :10] = 255  # a white band on the left eighth
    Image.fromarray(pixels).save(tmp_path / "wide.png")

    squashed = load_photo(tmp_path / "wide.png", (20, 20), "squash")
    cropped = load_photo(tmp_path / "wide.png", (20, 20), "crop")

    assert squashed[:, :2].min() == 255, "squash keeps the band, narrowed"
    assert cropped.max() == 0, "crop keeps the centre square, where the band is not"


def test_in_memory_arrays_and_pil_images_are_prepared_like_files(tmp_path):
    image = uniform("RGB", RED, (48, 36))
    image.save(tmp_path / "a.png")

    assert np.array_equal(prepare_image(image, (16, 16)), load_photo(tmp_path / "a.png", (16, 16)))


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_file_is_refused_with_a_message_that_names_the_problem(tmp_path, name):
    make, message = BAD_FILES[name]
    make(tmp_path / name)

    with pillow_pixel_limit(89_478_485), pytest.raises(PhotoError, match=message):
        load_photo(tmp_path / name, (32, 32))


def test_the_pixel_limit_is_configurable(tmp_path):
    make_photo(tmp_path / "rex.jpg", (64, 48))

    with pytest.raises(PhotoError, match=r"too large: 64 x 48 = 3,072 pixels, above the limit of 1,000"):
        load_photo(tmp_path / "rex.jpg", (32, 32), max_pixels=1000)
    assert load_photo(tmp_path / "rex.jpg", (32, 32), max_pixels=3072).shape == (32, 32, 3)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_is_refused_with_a_permission_message(tmp_path):
    photo = make_photo(tmp_path / "locked.jpg", (16, 16))
    photo.chmod(0)
    try:
        with pytest.raises(PhotoError, match="permission denied"):
            load_photo(photo, (8, 8))
    finally:
        photo.chmod(0o644)


def test_a_photo_the_system_refuses_to_open_is_refused_with_a_permission_message(tmp_path, monkeypatch):
    """The same case as above where tests run as root (chmod does not stop root): the OS error is simulated."""
    import dogtag.edge_app.images

    photo = make_photo(tmp_path / "locked.jpg", (16, 16))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(photo))

    monkeypatch.setattr(dogtag.edge_app.images.Image, "open", refuse)
    with pytest.raises(PhotoError, match="permission denied"):
        load_photo(photo, (8, 8))


def test_the_walk_finds_photos_in_sub_folders_sorted_and_skips_hidden_files_and_link_loops(tmp_path):
    for name in ["b.jpg", "a.PNG", "sub/c.webp", "sub/deeper/d.tif", ".hidden/e.jpg", "._f.jpg", "notes.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub" / "back-to-top").symlink_to(tmp_path)  # a folder link loop

    found = [os.path.relpath(path, tmp_path) for path in find_photos(tmp_path)]
    shallow = [os.path.relpath(path, tmp_path) for path in find_photos(tmp_path, recursive=False)]

    assert found == ["a.PNG", "b.jpg", "sub/c.webp", "sub/deeper/d.tif"]
    assert shallow == ["a.PNG", "b.jpg"]


def test_file_names_that_are_not_utf8_are_written_readably_and_stay_distinct():
    name = os.fsdecode(b"caf\xe9 \\x e9\n.jpg")

    assert printable_path(name) == "caf\\xe9 \\\\x e9\\n.jpg"
    assert printable_path(os.fsdecode(b"caf\xe9.jpg")) != printable_path("caf\\xe9.jpg")
    assert printable_path("kennel 2/Müller.jpg") == "kennel 2/Müller.jpg"
