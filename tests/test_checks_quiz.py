"""Self-checks (right answers pass, each typical slip fails with its hint) and quizzes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import leakage_lab as ll
from leakage_lab import checks
from leakage_lab.quiz import Quiz, ask

# -- gradient_distance --------------------------------------------------------------------


def pairs(observed, candidate):
    return zip(jax.tree.leaves(observed), jax.tree.leaves(candidate), strict=True)


def right_l2(observed, candidate):
    return sum(jnp.sum((a - b) ** 2) for a, b in pairs(observed, candidate))


def test_gradient_distance_accepts_right_answers(capsys):
    checks.gradient_distance(right_l2)
    checks.gradient_distance.__wrapped__(ll.distances.l2)  # unguarded: the library agrees
    with pytest.raises(checks.CheckFailed, match="write it yourself"):  # but is no answer
        checks.gradient_distance(ll.distances.l2)

    def with_tree_map(observed, candidate):
        return sum(jax.tree.leaves(jax.tree.map(lambda a, b: jnp.sum((b - a) ** 2),
                                                observed, candidate)))

    checks.gradient_distance(with_tree_map)
    out = capsys.readouterr().out
    assert out.count("✓") == 3


def plus(o, c):
    return sum(jnp.sum((a + b) ** 2) for a, b in pairs(o, c))


def negated(o, c):
    return -right_l2(o, c)


def first_leaf(o, c):
    return jnp.sum((jax.tree.leaves(o)[0] - jax.tree.leaves(c)[0]) ** 2)


def last_leaf(o, c):
    total = 0.0
    for a, b in pairs(o, c):
        total = jnp.sum((a - b) ** 2)
    return total


def no_square(o, c):
    return sum(jnp.sum(jnp.abs(a - b)) for a, b in pairs(o, c))


def raw_difference(o, c):
    return sum(jnp.sum(a - b) for a, b in pairs(o, c))


def with_sqrt(o, c):
    return jnp.sqrt(right_l2(o, c))


def mean_per_leaf(o, c):
    return sum(jnp.mean((a - b) ** 2) for a, b in pairs(o, c))


def squares_subtracted(o, c):
    return sum(jnp.sum(a**2 - b**2) for a, b in pairs(o, c))


def per_leaf_vector(o, c):
    return jnp.stack([jnp.sum((a - b) ** 2) for a, b in pairs(o, c)])


def with_numpy(o, c):
    return sum(np.sum((np.asarray(a) - np.asarray(b)) ** 2) for a, b in pairs(o, c))


def no_return(o, c):
    right_l2(o, c)


def crashes(o, c):
    return o["layer"]


@pytest.mark.parametrize(
    "fn, hint",
    [
        (plus, "subtract (observed - candidate) before squaring"),
        (negated, "sign error"),
        (first_leaf, "only the first leaf counts"),
        (last_leaf, "instead of accumulating"),
        (no_square, "L1"),
        (raw_difference, "cancel"),
        (with_sqrt, "drop the sqrt"),
        (mean_per_leaf, "jnp.sum, not jnp.mean"),
        (squares_subtracted, "subtracted the squares"),
        (per_leaf_vector, "a single number"),
        (with_numpy, "Use jax.numpy"),
        (no_return, "forget the `return`"),
        (crashes, "raised KeyError"),
    ],
)
def test_gradient_distance_hints(fn, hint):
    with pytest.raises(checks.CheckFailed, match=hint.replace("(", r"\(").replace(")", r"\)")):
        checks.gradient_distance(fn)


def test_check_failed_is_an_assertion_error():
    assert issubclass(checks.CheckFailed, AssertionError)


# -- fedavg_average -----------------------------------------------------------------------


def right_average(client_params, sizes):
    total = sum(sizes)
    return jax.tree.map(lambda *leaves: sum(n / total * x for n, x in zip(sizes, leaves,
                                                                          strict=True)),
                        *client_params)


def with_weights(weights_of):
    def average(client_params, sizes):
        w = weights_of(sizes)
        return jax.tree.map(lambda *leaves: sum(a * x for a, x in zip(w, leaves, strict=True)),
                            *client_params)

    return average


def test_fedavg_average_accepts_right_answer(capsys):
    checks.fedavg_average(right_average)

    def stacked(client_params, sizes):
        w = jnp.asarray(sizes, jnp.float32) / sum(sizes)
        return jax.tree.map(lambda *leaves: jnp.tensordot(w, jnp.stack(leaves), axes=1),
                            *client_params)

    checks.fedavg_average(stacked)
    assert capsys.readouterr().out.count("✓") == 2


def as_list(client_params, sizes):
    return [right_average(client_params, sizes)]


def first_leaf_only(client_params, sizes):
    out = jax.tree.map(lambda x: x, client_params[0])
    out["conv"]["w"] = right_average(client_params, sizes)["conv"]["w"]
    return out


def three_clients_only(client_params, sizes):
    if len(sizes) != 3:
        return client_params[0]
    return right_average(client_params, sizes)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (with_weights(lambda s: [1 / len(s)] * len(s)), "ignores the sizes"),
        (with_weights(lambda s: s), "divide by the total"),
        (with_weights(lambda s: [1.0] * len(s)), "sum of the clients' weights"),
        (with_weights(lambda s: [(1 / n) / sum(1 / m for m in s) for n in s]), "inverted"),
        (with_weights(lambda s: [n / sum(s) / len(s) for n in s]), "number of clients as well"),
        (as_list, "one pytree shaped like"),
        (first_leaf_only, "some leaves right"),
        (three_clients_only, "hard-coded"),
        (lambda client_params, sizes: None, "forget the `return`"),
    ],
)
def test_fedavg_average_hints(fn, hint):
    with pytest.raises(checks.CheckFailed, match=hint):
        checks.fedavg_average(fn)


# -- Quiz ---------------------------------------------------------------------------------


@pytest.fixture
def quiz():
    return Quiz("How many weight vectors does the server get from one FedAvg client?",
                ["one", "one per local step", "none"], answer=0,
                explanations=["Only the final weights.", "Those stay hidden.", "It needs one."])


def test_quiz_feedback_per_option(quiz):
    assert quiz.check(0) == "✓ Right. Only the final weights."
    assert quiz.check("b").startswith("✗") and quiz.check("b").endswith("Those stay hidden.")
    assert quiz.check("(c)").endswith("It needs one.")
    assert quiz.check("One") == quiz.check(0)  # the option's text, any case
    assert quiz.is_correct("a") and not quiz.is_correct(2)


def test_quiz_rejects_unknown_choices(quiz):
    for bad in (3, -1, "d", "two", True):
        with pytest.raises(ValueError, match="Not an option"):
            quiz.check(bad)


def test_quiz_validates_its_arguments():
    with pytest.raises(ValueError, match="index of the right option"):
        Quiz("q", ["a", "b"], answer=2)
    with pytest.raises(ValueError, match="one explanation per option"):
        Quiz("q", ["a", "b"], answer=0, explanations=["only one"])
    with pytest.raises(ValueError, match="2 to"):
        Quiz("q", ["a"], answer=0)


def test_quiz_without_explanations():
    q = ask("2 + 2?", ["4", "5"], answer=0)
    assert q.check("a") == "✓ Right."
    assert q.check("b") == "✗ Not quite, try again."


def test_quiz_text_fallback(quiz):
    text = quiz._repr_markdown_()
    assert text.startswith("**Quiz.** How many weight vectors")
    assert "- (a) one" in text and "- (c) none" in text
    assert str(quiz) == text
    assert ".check('a')" in text


def test_quiz_mimebundle_has_widget_and_text(quiz):
    bundle = quiz._repr_mimebundle_()
    assert bundle["text/markdown"] == quiz.text()
    assert bundle["text/plain"] == quiz.text()
    assert "application/vnd.jupyter.widget-view+json" in bundle


def test_quiz_widget_shows_feedback(quiz):
    quiz._repr_mimebundle_()  # builds the widget
    message = quiz.choose("b")
    assert message.startswith("✗")
    assert "Those stay hidden." in quiz._feedback.value
    quiz.choose(0)
    assert "Only the final weights." in quiz._feedback.value


# -- compare_prediction ("Predict, then run") ---------------------------------------------


def test_compare_prediction_numbers_within_tolerance(capsys):
    from leakage_lab.quiz import compare_prediction

    assert compare_prediction(20.0, 23.0, tolerance=3, unit="dB") is True
    assert "20 dB" in capsys.readouterr().out
    assert compare_prediction(20.0, 23.5, tolerance=3, unit="dB") is False
    assert "off by 3.5 dB" in capsys.readouterr().out
    assert compare_prediction(3, np.int64(3)) is True  # no tolerance: exact
    assert compare_prediction(3, jnp.array(4)) is False
    assert compare_prediction(1.0, float("nan"), tolerance=10) is False


def test_compare_prediction_choices_and_missing(capsys):
    from leakage_lab.quiz import compare_prediction

    assert compare_prediction(" On", "on") is True
    assert compare_prediction("on", "off") is False
    assert compare_prediction(True, np.True_) is True
    capsys.readouterr()
    assert compare_prediction(None, 2.5, unit="dB") is False
    out = capsys.readouterr().out
    assert "No prediction" in out and "2.5 dB" in out


@pytest.mark.parametrize("args, kwargs, error, words", [
    (("on", 3), {}, TypeError, "as a number"),
    ((3, "on"), {}, TypeError, "one of the choices"),
    ((1, 2), {"tolerance": -1}, ValueError, ">= 0"),
    (("a", "b"), {"tolerance": 1}, TypeError, "tolerance is for numbers"),
    ((1, np.zeros(3)), {}, TypeError, "shape (3,)"),
    ((float("nan"), 1), {}, ValueError, "NaN"),
    ((1, None), {}, ValueError, "measured is None"),
])
def test_compare_prediction_bad_input_errors_clearly(args, kwargs, error, words):
    from leakage_lab.quiz import compare_prediction

    with pytest.raises(error) as info:
        compare_prediction(*args, **kwargs)
    assert words in str(info.value)
