"""The leakage-lab command: demo, list, lab."""

import matplotlib.image as mpimg

from leakage_lab import cli


def test_list_shows_every_lab(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for number, path, _ in cli.labs():
        assert f"{number:02d}" in out and path.name in out


def test_lab_rejects_unknown_number(capsys):
    assert cli.main(["lab", "97"]) == 2
    assert "No lab 97" in capsys.readouterr().err


def test_demo_writes_picture_and_reports_psnr(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert cli.main(["demo", "--steps", "60", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PSNR" in text and "dB" in text
    picture = mpimg.imread(out)
    assert picture.ndim == 3 and picture.shape[0] > 100


def test_demo_rejects_bad_image_index(capsys):
    assert cli.main(["demo", "--image", "100000"]) == 2
    assert "--image must be between 0 and" in capsys.readouterr().err
