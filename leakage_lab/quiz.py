"""Multiple-choice questions for the end of each lab.

A :class:`Quiz` shows as a widget in Jupyter (radio buttons, a Check button and
feedback for the chosen option, in large type) and as plain Markdown wherever no
widget frontend runs (GitHub, an exported page, a terminal). ``quiz.check(choice)``
returns the same feedback as text, so an answer can also be given, and tested, in code::

    from leakage_lab.quiz import Quiz

    q = Quiz("What does a FedSGD client send?",
             ["its data", "one gradient", "nothing"], answer=1,
             explanations=["No: the data stays put.", "Yes.", "Then nothing is learned."])
    q                  # the widget (or its Markdown fallback)
    q.check("b")       # '✓ Right. Yes.'

"Predict, then run" cells record a guess before an experiment and compare it with the
measurement afterwards: :func:`compare_prediction`.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Sequence

__all__ = ["Quiz", "ask", "compare_prediction"]

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_FONT = "font-size: 18px; line-height: 1.5;"


class Quiz:
    """One multiple-choice question with feedback for every option.

    Args:
        question: the question (plain text; Markdown in the text fallback).
        options: the possible answers, shown as (a), (b), (c)...
        answer: index (0-based) of the right option.
        explanations: optional, one per option: why it is right or wrong. Shown after
            the learner checks that option.

    Attributes:
        widget: the ipywidgets view, built on first use (``None`` until then).
    """

    def __init__(self, question: str, options: Sequence[str], answer: int,
                 explanations: Sequence[str] | None = None):
        options = [str(o) for o in options]
        if not 2 <= len(options) <= len(_LETTERS):
            raise ValueError(f"A quiz needs 2 to {len(_LETTERS)} options, got {len(options)}.")
        if not isinstance(answer, int) or not 0 <= answer < len(options):
            raise ValueError(
                f"answer must be the index of the right option, 0 to {len(options) - 1}, "
                f"got {answer!r}."
            )
        if explanations is not None and len(explanations) != len(options):
            raise ValueError(
                f"Give one explanation per option: {len(options)} options but "
                f"{len(explanations)} explanations."
            )
        self.question = str(question)
        self.options = options
        self.answer = answer
        self.explanations = None if explanations is None else [str(e) for e in explanations]
        self.widget = None
        self._feedback = None

    # -- answering ----------------------------------------------------------------------

    def index(self, choice: int | str) -> int:
        """The 0-based index of ``choice``: an index, a letter ('b', '(b)') or the option's text."""
        if isinstance(choice, bool):
            raise ValueError(f"Not an option: {choice!r}.")
        if isinstance(choice, int):
            if 0 <= choice < len(self.options):
                return choice
        elif isinstance(choice, str):
            text = choice.strip()
            letter = text.strip("()").lower()
            if len(letter) == 1 and letter in _LETTERS[: len(self.options)]:
                return _LETTERS.index(letter)
            for i, option in enumerate(self.options):
                if text.lower() == option.lower():
                    return i
        letters = ", ".join(_LETTERS[: len(self.options)])
        raise ValueError(
            f"Not an option: {choice!r}. Answer with an index 0 to {len(self.options) - 1}, "
            f"a letter ({letters}) or an option's exact text."
        )

    def is_correct(self, choice: int | str) -> bool:
        """True when ``choice`` (index, letter or text) is the right option."""
        return self.index(choice) == self.answer

    def check(self, choice: int | str) -> str:
        """Feedback for ``choice``: '✓ Right. ...' or '✗ Not quite. ...' with its explanation."""
        i = self.index(choice)
        verdict = "✓ Right." if i == self.answer else "✗ Not quite, try again."
        note = self.explanations[i] if self.explanations else ""
        return f"{verdict} {note}".strip()

    # -- display ------------------------------------------------------------------------

    def text(self) -> str:
        """The question and its lettered options as Markdown (the fallback view)."""
        lines = [f"**Quiz.** {self.question}", ""]
        lines += [f"- ({_LETTERS[i]}) {option}" for i, option in enumerate(self.options)]
        lines += ["", "_Answer with the buttons in Jupyter, or in code: `.check('a')` on this "
                  "quiz, with the letter you choose._"]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"Quiz({self.question!r}, {len(self.options)} options)"

    def _repr_markdown_(self) -> str:
        return self.text()

    def _build(self):
        import ipywidgets as widgets

        labels = [f"({_LETTERS[i]}) {option}" for i, option in enumerate(self.options)]
        question = widgets.HTML(
            f'<div style="{_FONT} font-weight: bold;">{html.escape(self.question)}</div>')
        buttons = widgets.RadioButtons(options=labels, value=None,
                                       layout=widgets.Layout(width="max-content"))
        check = widgets.Button(description="Check", button_style="primary")
        self._feedback = widgets.HTML()

        def on_check(_):
            if buttons.value is None:
                self._show("Pick an option first.", None)
                return
            i = labels.index(buttons.value)
            self._show(self.check(i), i == self.answer)

        check.on_click(on_check)
        self._buttons = buttons
        self.widget = widgets.VBox(
            [question, buttons, check, self._feedback],
            layout=widgets.Layout(padding="8px", border="1px solid #ccc"),
        )
        # Large type for the options too (RadioButtons has no font setting of its own).
        buttons.add_class("leakage-lab-quiz")
        style = widgets.HTML(
            "<style>.leakage-lab-quiz label { font-size: 18px !important; "
            "line-height: 1.6 !important; }</style>")
        self.widget.children = (style, *self.widget.children)
        return self.widget

    def _show(self, message: str, right: bool | None) -> None:
        colour = {True: "#1a7f37", False: "#b35900", None: "#555"}[right]
        self._feedback.value = (f'<div style="{_FONT} color: {colour};">'
                                f"{html.escape(message)}</div>")

    def choose(self, choice: int | str) -> str:
        """Selects ``choice`` in the widget (if built), shows and returns its feedback."""
        i = self.index(choice)
        message = self.check(i)
        if self.widget is not None:
            self._buttons.value = self._buttons.options[i]
            self._show(message, i == self.answer)
        return message

    def _repr_mimebundle_(self, include=None, exclude=None):
        """The widget for Jupyter, with the Markdown text for frontends without widgets."""
        bundle = {"text/plain": self.text(), "text/markdown": self.text()}
        try:
            widget = self.widget if self.widget is not None else self._build()
            view = widget._repr_mimebundle_(include=include, exclude=exclude)
        except Exception:  # noqa: BLE001 - no ipywidgets or no kernel: text only
            return bundle
        if isinstance(view, tuple):  # (data, metadata)
            view = view[0]
        if view:
            bundle.update({k: v for k, v in view.items() if k != "text/plain"})
        return bundle


def ask(question: str, options: Sequence[str], answer: int,
        explanations: Sequence[str] | None = None) -> Quiz:
    """Builds a :class:`Quiz`; end a notebook cell with it to show it."""
    return Quiz(question, options, answer, explanations)


# -- "Predict, then run" ----------------------------------------------------------------


def _as_number(value, name: str):
    """``value`` as a Python int/float if it is a real number (or a 0-d array), else None."""
    if isinstance(value, bool | str) or value is None:
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        if tuple(shape) != ():
            raise TypeError(
                f"{name} must be one number or one choice, got an array of shape "
                f"{tuple(shape)}. Reduce it to one value first (e.g. its mean or one entry)."
            )
        kind = getattr(value.dtype, "kind", "")
        if kind in "iu":
            return int(value)
        if kind == "f":
            return float(value)
        if kind == "b":
            return None
    return None


def _as_choice(value):
    """A 0-d array (a numpy bool, a numpy string) as the plain Python value."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        return value.item()
    return value


def _fmt(x, unit: str) -> str:
    text = f"{x:.4g}" if isinstance(x, float) else (repr(x) if isinstance(x, str) else str(x))
    if not unit:
        return text
    return f"{text}{unit}" if unit.startswith(("%", "°")) else f"{text} {unit}"


def compare_prediction(predicted, measured, *, tolerance=None, unit: str = "") -> bool:
    """Prints a prediction beside the measurement and whether it was right; returns that.

    For a "Predict, then run" cell: the learner writes ``predicted_...`` before an
    experiment runs; afterwards this shows both on one line.

    * Numbers are right when ``|predicted - measured| <= tolerance`` (with no
      ``tolerance``, only an exact match counts, which suits counts such as steps).
    * Anything else (a word such as ``"on"``, a bool) is a choice, right when equal;
      text is compared without case or surrounding spaces.
    * ``None`` (or ``...``) means no prediction was written: that is said and
      ``False`` returned, with the measurement still shown.

    Args:
        predicted: the learner's guess: a number, a word/choice, or None.
        measured: what the experiment gave (a number, 0-d array, or a choice).
        tolerance: for numbers, the largest distance still counted as right (>= 0).
        unit: appended to the numbers when printed, e.g. ``"dB"`` or ``"%"``.

    Returns:
        True when the prediction was right.

    Raises:
        TypeError: a number compared with a choice (or the reverse), an array that is
            not a single value, or a tolerance given for a choice.
        ValueError: a tolerance that is negative or not a finite number, or a NaN
            prediction.

    >>> compare_prediction(20.0, 23.4, tolerance=5, unit="dB")
    Your prediction: 20 dB · measured: 23.4 dB (tolerance ± 5 dB) → ✓ right
    True
    >>> compare_prediction("on", "off")
    Your prediction: 'on' · measured: 'off' → ✗ not this time
    False
    >>> compare_prediction(None, 3)
    No prediction written (the predicted_... variable is None) · measured: 3
    False
    """
    if not isinstance(unit, str):
        raise TypeError(f"unit must be text such as 'dB' or '%', got {type(unit).__name__}.")
    if tolerance is not None:
        if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real):
            raise TypeError(
                f"tolerance must be a number >= 0 (or None), got {tolerance!r}.")
        if not math.isfinite(tolerance) or tolerance < 0:
            raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}.")
    if measured is None:
        raise ValueError("measured is None: pass the experiment's result (a number or a choice).")
    measured_number = _as_number(measured, "measured")
    if predicted is None or predicted is Ellipsis:
        shown = _fmt(measured_number if measured_number is not None else measured, unit)
        print(f"No prediction written (the predicted_... variable is None) · measured: {shown}")
        return False
    predicted_number = _as_number(predicted, "predicted")

    if predicted_number is not None or measured_number is not None:
        if predicted_number is None or measured_number is None:
            if predicted_number is None:
                raise TypeError(
                    f"measured is a number ({measured_number!r}) but predicted is "
                    f"{predicted!r} ({type(predicted).__name__}): write the prediction as a "
                    "number (no quotes), e.g. 3 or 20.5."
                )
            raise TypeError(
                f"measured is the choice {measured!r} but predicted is the number "
                f"{predicted!r}: write the prediction as one of the choices the cell names "
                "(in quotes)."
            )
        if math.isnan(predicted_number):
            raise ValueError("predicted is NaN: write a number as the prediction.")
        if math.isnan(measured_number):
            right = False
        elif tolerance is None:
            right = predicted_number == measured_number
        else:
            right = abs(predicted_number - measured_number) <= tolerance
        how = ("tolerance ± " + _fmt(tolerance, unit)) if tolerance is not None else "exact match"
        verdict = "✓ right" if right else (
            "✗ not this time" if math.isnan(measured_number) else
            f"✗ off by {_fmt(abs(predicted_number - measured_number), unit)}")
        print(f"Your prediction: {_fmt(predicted_number, unit)} · measured: "
              f"{_fmt(measured_number, unit)} ({how}) → {verdict}")
        return right

    predicted, measured = _as_choice(predicted), _as_choice(measured)
    if tolerance is not None:
        raise TypeError(
            f"tolerance is for numbers; {predicted!r} and {measured!r} are choices, "
            "compared by equality. Drop tolerance=."
        )
    if isinstance(predicted, str) and isinstance(measured, str):
        right = predicted.strip().casefold() == measured.strip().casefold()
    else:
        right = bool(predicted == measured) if type(predicted) is type(measured) else False
        if not right and isinstance(predicted, str) != isinstance(measured, str):
            raise TypeError(
                f"predicted is {predicted!r} ({type(predicted).__name__}) but measured is "
                f"{measured!r} ({type(measured).__name__}): write the prediction as one of "
                "the choices the cell names."
            )
    verdict = "✓ right" if right else "✗ not this time"
    print(f"Your prediction: {_fmt(predicted, '')} · measured: {_fmt(measured, '')} → {verdict}")
    return right
