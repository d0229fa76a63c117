"""A soft matte or probability map saved as a grayscale image, given to --labels: it was refused as
"not a .npy file" with no word on what to do. The message now names the image and gives the line that
makes labels of it; that line, run as written, gives labels that propagate."""

from __future__ import annotations

import re

import numpy as np
import PIL.Image
import pytest
from cli_helpers import FAST
from PIL import ImageFilter

from vidcorr.cli import main
from vidcorr.errors import InputError
from vidcorr.soft_labels import read_labels_file


def _smoothed_mask(data_dir, path, bits: int) -> np.ndarray:
    """blackswan's first mask blurred into a soft matte, saved as a grayscale PNG of 8 or 16 bits;
    -> values in [0, 1]."""
    mask = PIL.Image.open(data_dir / "davis2016" / "Annotations" / "480p" / "blackswan" / "00000.png").convert("L")
    soft = np.asarray(mask.filter(ImageFilter.GaussianBlur(8)), np.float64) / 255
    if bits == 8:
        PIL.Image.fromarray(np.round(soft * 255).astype(np.uint8)).save(path)
        return np.round(soft * 255) / 255
    PIL.Image.fromarray(np.round(soft * 65535).astype(np.uint16)).save(path)  # mode I;16
    return np.round(soft * 65535) / 65535


@pytest.mark.parametrize("bits", [8, 16])
def test_a_grayscale_image_is_named_and_the_advice_works(tmp_path, data_dir, capsys, monkeypatch, bits):
    frames = data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan"
    path = tmp_path / "matte.png"
    expected = _smoothed_mask(data_dir, path, bits)
    out = tmp_path / "out"
    assert main(["propagate", str(frames), "--labels", str(path), "--out", str(out), *FAST, "--max-frames", "2",
                 "--no-video"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: is not a .npy file (no NumPy header); save the labels with np.save; it is a PNG image: object " \
           "ids go to --mask" in err and not out.exists()
    advice = re.search(r"(np\.save\(.*\)) \(/ 65535", err).group(1)
    if bits == 16:
        advice = advice.replace("/ 255)", "/ 65535)")  # as the message says for a 16-bit image
    monkeypatch.chdir(tmp_path)
    eval(advice, {"np": np, "PIL": PIL, "path": str(path)})  # the line as the message gives it
    np.testing.assert_allclose(np.load("first.npy"), expected, atol=1e-6)
    assert main(["propagate", str(frames), "--labels", "first.npy", "--out", str(out), *FAST, "--max-frames", "2",
                 "--no-video"]) == 0
    assert np.load(out / "labels" / "00001.npy").shape == (1, 480, 854)


def test_only_images_get_the_image_advice(tmp_path, data_dir):
    jpeg = data_dir / "davis2016" / "JPEGImages" / "480p" / "blackswan" / "00000.jpg"
    with pytest.raises(InputError, match="it is a JPEG image: object ids go to --mask"):
        read_labels_file(jpeg)
    text = tmp_path / "first.npy"
    text.write_text("0.5 0.5\n")
    with pytest.raises(InputError) as error:
        read_labels_file(text)
    assert str(error.value).endswith("is not a .npy file (no NumPy header); save the labels with np.save")
