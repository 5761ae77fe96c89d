"""The ``leakage-lab`` command: a demo attack, the list of labs, and a way to open one.

    leakage-lab demo            # DLG on a bundled photo; writes demo.png, prints PSNR
    leakage-lab list            # the labs, in order
    leakage-lab lab 1           # opens JupyterLab at lab 01
    leakage-lab student OUT     # student copies of the labs (solutions stubbed) in OUT
    leakage-lab dashboard       # lab 09's classroom dashboard, under Voilà if installed
    leakage-lab workspace DIR   # the labs in a learner's folder (--student: stubbed)
    leakage-lab site OUT        # the executed labs as a static site (--quick: quick mode)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Where the labs are. A source checkout (editable install) has the masters, answers
# included, in the clone's notebooks/ (for instructors and self-study). An installed wheel
# has only the student copies that its build wrote into leakage_lab/labs/ (setup.py); the
# masters never ship. Where both exist, the masters win.
_CHECKOUT = Path(__file__).resolve().parent.parent
MASTERS = _CHECKOUT / "notebooks"
PACKAGED = Path(__file__).resolve().parent / "labs"
_LAB_GLOB = "[0-9][0-9]_*.ipynb"


def _lab_folder() -> Path:
    if (_CHECKOUT / "pyproject.toml").is_file() and any(MASTERS.glob(_LAB_GLOB)):
        return MASTERS
    return PACKAGED


NOTEBOOKS = _lab_folder()
FULL_LABS_ONLY_IN_A_CLONE = (
    "This leakage-lab install holds the student copies of the labs only (answers stubbed). "
    "The full labs, answers included, are only in a source clone of leakage-lab: clone the "
    "repository and `pip install -e .` there. Here, use `leakage-lab workspace DIR --student`.")


def student_copies_only() -> bool:
    """Whether the labs found are the packaged student copies (an installed wheel)."""
    return NOTEBOOKS.resolve() == PACKAGED.resolve()


def labs() -> list[tuple[int, Path, str]]:
    """The labs as ``(number, path, title)``, read from ``NOTEBOOKS/NN_name.ipynb``."""
    found = []
    for path in sorted(NOTEBOOKS.glob(_LAB_GLOB)):
        title = path.stem[3:].replace("_", " ")
        try:
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            for cell in cells:
                if cell["cell_type"] == "markdown":
                    first = "".join(cell["source"]).strip().splitlines()[0]
                    title = first.lstrip("# ").strip()
                    break
        except (OSError, ValueError, KeyError, IndexError):
            pass
        found.append((int(path.name[:2]), path, title))
    return found


def _progress(frame) -> None:
    width = 30
    done = int(width * frame.step / max(frame.total_steps, 1))
    loss = "" if frame.loss != frame.loss else f" loss {frame.loss:.3g}"
    sys.stderr.write(f"\r  [{'#' * done}{'.' * (width - done)}] step {frame.step}{loss}   ")
    sys.stderr.flush()


def demo(args: argparse.Namespace) -> int:
    """DLG on one bundled photo: the attacker sees only the gradient."""
    import jax
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import leakage_lab as ll

    ds = ll.data.load("tiny-images")
    if not 0 <= args.image < len(ds):
        print(f"--image must be between 0 and {len(ds) - 1}, got {args.image}", file=sys.stderr)
        return 2
    truth = ds.images[args.image]
    model = ll.models.lenet(num_classes=ds.num_classes, input_shape=truth.shape)
    params = model.init(jax.random.key(args.seed))
    grads = ll.fl.gradient(model, params, truth[None], ds.labels[args.image : args.image + 1])
    print(f"DLG on tiny-images #{args.image} ({ds.class_names[ds.labels[args.image]]}), "
          f"{model.name}, up to {args.steps} L-BFGS steps on {jax.devices()[0].platform}.")
    start = time.perf_counter()
    res = ll.attacks.dlg(model, params, grads, steps=args.steps, key=jax.random.key(args.seed),
                         callback=_progress)
    total = time.perf_counter() - start
    sys.stderr.write("\n")
    value = ll.metrics.psnr(res.images[0], truth)
    label = int(res.labels[0])

    fig, axes = plt.subplots(1, 2, figsize=(6, 3.4))
    for ax, img, title in ((axes[0], truth, "the client's image"),
                           (axes[1], res.images[0], f"rebuilt from its gradient: {value:.1f} dB")):
        ax.imshow(img.clip(0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(res.message)
    verdict = "recovered" if label == ds.labels[args.image] else "wrong"
    print(f"PSNR {value:.1f} dB   label {verdict}"
          f"   {res.steps} steps   {res.seconds:.1f} s attack + {res.compile_seconds:.1f} s "
          f"compile ({total:.1f} s in all)")
    print(f"Wrote {args.out}")
    return 0


def list_labs(args: argparse.Namespace) -> int:
    found = labs()
    if not found:
        print(f"No labs found in {NOTEBOOKS}", file=sys.stderr)
        return 1
    for number, path, title in found:
        print(f"{number:02d}  {title}  ({path.name})")
    if student_copies_only():
        print("(student copies; `leakage-lab workspace DIR --student` copies them into a "
              "folder of your own)")
    return 0


def open_lab(args: argparse.Namespace) -> int:
    found = {number: path for number, path, _ in labs()}
    if args.number not in found:
        print(f"No lab {args.number}; the labs are {sorted(found)} (see `leakage-lab list`).",
              file=sys.stderr)
        return 2
    lab, folder = found[args.number], NOTEBOOKS
    if student_copies_only():
        # The packaged copies sit inside the installed package: open a learner's copy
        # instead, in a workspace made at the first call and never overwritten later.
        from leakage_lab.student import write_workspace

        folder = Path(args.dir)
        if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
            write_workspace(NOTEBOOKS, folder, student=True)
            print(f"Wrote student copies of the labs to {folder}")
        elif not (folder / lab.name).exists():
            if not folder.is_dir():
                print(f"{folder} exists and is not a folder; choose another with --dir.",
                      file=sys.stderr)
                return 2
            shutil.copy2(lab, folder / lab.name)
        lab = folder / lab.name
    command = [sys.executable, "-m", "jupyterlab", str(lab)]
    print("Opening", lab.name, "in JupyterLab:", " ".join(command))
    return subprocess.call(command, cwd=folder)


def student(args: argparse.Namespace) -> int:
    from leakage_lab.student import write_student_copies

    out = Path(args.out)
    if out.resolve() == NOTEBOOKS.resolve() or NOTEBOOKS.resolve() in out.resolve().parents:
        print("Refusing to write into the master labs' folder; choose another folder.",
              file=sys.stderr)
        return 2
    try:
        written = write_student_copies(NOTEBOOKS, out)
    except ValueError as err:  # an unbalanced marker: better no copy than a leaked answer
        print(err, file=sys.stderr)
        return 2
    print(f"Wrote {len(written)} student labs to {out}")
    return 0


def workspace(args: argparse.Namespace) -> int:
    from leakage_lab.student import write_workspace

    if not args.student and student_copies_only():
        print(FULL_LABS_ONLY_IN_A_CLONE, file=sys.stderr)
        return 2
    try:
        written = write_workspace(NOTEBOOKS, Path(args.dir), student=args.student,
                                  force=args.force)
    except (FileExistsError, ValueError) as err:
        print(err, file=sys.stderr)
        return 2
    labs = [p for p in written if p.suffix == ".ipynb"]
    kind = "student copies of" if args.student else "full copies of"
    print(f"Wrote {kind} {len(labs)} labs to {args.dir}; start with: "
          f"jupyter lab {Path(args.dir) / labs[0].name}")
    return 0


def open_dashboard(args: argparse.Namespace) -> int:
    """Lab 09's classroom dashboard: under Voilà (code hidden) if installed, else JupyterLab."""
    import importlib.util

    lab = NOTEBOOKS / "09_classroom_dashboard.ipynb"
    if not lab.exists():
        print(f"Lab 09 is missing: {lab}", file=sys.stderr)
        return 2
    if not args.lab and importlib.util.find_spec("voila") is not None:
        command = [sys.executable, "-m", "voila", str(lab), f"--port={args.port}"]
        if args.no_browser:
            command.append("--no-browser")
    else:
        if not args.lab:
            print("Voilà is not installed (pip install 'leakage-lab[demo]'); opening "
                  "JupyterLab instead.", file=sys.stderr)
        command = [sys.executable, "-m", "jupyterlab", str(lab)]
        if args.no_browser:
            command.append("--no-browser")
    print("Opening the classroom dashboard:", " ".join(command))
    return subprocess.call(command, cwd=NOTEBOOKS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leakage-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run DLG on a bundled photo and write a PNG")
    p.add_argument("--image", type=int, default=5, help="index into tiny-images")
    p.add_argument("--seed", type=int, default=0, help="weights and start of the attack")
    p.add_argument("--steps", type=int, default=3000, help="L-BFGS step budget")
    p.add_argument("--out", default="demo.png", help="where to write the picture")
    p.set_defaults(run=demo)
    p = sub.add_parser("list", help="list the labs")
    p.set_defaults(run=list_labs)
    p = sub.add_parser("lab", help="open lab N in JupyterLab")
    p.add_argument("number", type=int, nargs="?", default=0)
    p.add_argument("--dir", default="leakage-lab-labs",
                   help="installed from a wheel: the learner's folder the lab is copied into "
                        "and opened from (made at the first call; default: %(default)s)")
    p.set_defaults(run=open_lab)
    p = sub.add_parser("student", help="write student copies of the labs (solutions stubbed)")
    p.add_argument("out", help="folder to write them to")
    p.set_defaults(run=student)
    p = sub.add_parser("workspace", help="copy the labs into a learner's folder")
    p.add_argument("dir", help="the learner's folder (new or empty)")
    p.add_argument("--student", action="store_true",
                   help="student copies: solutions stubbed, hidden tests removed")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that is not empty, replacing the labs there")
    p.set_defaults(run=workspace)
    p = sub.add_parser("dashboard", help="open lab 09's classroom dashboard (Voilà if installed)")
    p.add_argument("--lab", action="store_true", help="open it in JupyterLab, code visible")
    p.add_argument("--port", type=int, default=8866, help="Voilà's port")
    p.add_argument("--no-browser", action="store_true",
                   help="serve only; open the printed address yourself")
    p.set_defaults(run=open_dashboard)
    from leakage_lab.grading import add_parser as add_grade_parser  # leakage-lab grade

    add_grade_parser(sub)
    from leakage_lab.site import add_parser as add_site_parser  # leakage-lab site

    add_site_parser(sub)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
