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


def test_student_copies_have_no_solutions(tmp_path):
    assert cli.main(["student", str(tmp_path)]) == 0
    masters = {p.name: p for _, p, _ in cli.labs()}
    copies = sorted(tmp_path.glob("*.ipynb"))
    assert [p.name for p in copies] == sorted(masters)
    for copy in copies:
        text = copy.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
        master = masters[copy.name].read_text(encoding="utf-8")
        assert text.count("raise NotImplementedError()") == master.count("### BEGIN SOLUTION")


def test_student_source_keeps_indentation_and_drops_hidden_tests():
    from leakage_lab.student import student_source

    src = ("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
           "### BEGIN HIDDEN TESTS\nassert f(1) == 2\n### END HIDDEN TESTS\nprint(1)\n")
    assert student_source(src) == (
        "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\nprint(1)\n"
    )
