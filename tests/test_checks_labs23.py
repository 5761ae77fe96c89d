"""The self-checks of labs 02 and 03 accept right answers and explain wrong ones."""

import jax.numpy as jnp
import numpy as np
import pytest

import leakage_lab as ll
from leakage_lab.checks import CheckFailed


def test_idlg_label_accepts_argmin(capsys):
    ll.checks.idlg_label(lambda b: int(jnp.argmin(b)))
    assert capsys.readouterr().out.startswith("✓")


def test_idlg_label_accepts_numpy_and_negative_entry_search():
    ll.checks.idlg_label(lambda b: int(np.flatnonzero(np.asarray(b) < 0)[0]))


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda b: int(jnp.argmax(b)), "only NEGATIVE entry"),
    (lambda b: int(jnp.argmax(jnp.abs(b))), "LARGEST MAGNITUDE"),
    (lambda b: int(jnp.argmin(b)) + 1, "off by one"),
    (lambda b: None, "return"),
    (lambda b: b, "one class index"),
    (lambda b: float(jnp.min(b)), "position"),
    (lambda b: 3, "true class"),
])
def test_idlg_label_hints(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.idlg_label(fn)


def test_idlg_label_reports_errors_in_learner_code():
    def broken(b):
        raise RuntimeError("oops")

    with pytest.raises(CheckFailed, match="RuntimeError: oops"):
        ll.checks.idlg_label(broken)


def test_total_variation_accepts_the_library_and_a_rewrite(capsys):
    ll.checks.total_variation.__wrapped__(ll.priors.total_variation)  # unguarded: agrees
    with pytest.raises(CheckFailed, match="write it yourself"):  # but it is no answer
        ll.checks.total_variation(ll.priors.total_variation)

    def tv(images):
        vertical = jnp.abs(images[:, 1:, :, :] - images[:, :-1, :, :])
        horizontal = jnp.abs(images[:, :, 1:, :] - images[:, :, :-1, :])
        return jnp.mean(vertical) + jnp.mean(horizontal)

    ll.checks.total_variation(tv)
    assert "✓" in capsys.readouterr().out


def _dy(x):
    return x[:, 1:] - x[:, :-1]


def _dx(x):
    return x[:, :, 1:] - x[:, :, :-1]


@pytest.mark.parametrize(("fn", "hint"), [
    (lambda x: jnp.sum(jnp.abs(_dy(x))) + jnp.sum(jnp.abs(_dx(x))), "MEAN"),
    (lambda x: jnp.mean(jnp.abs(_dy(x))), "along the width too"),
    (lambda x: jnp.mean(jnp.abs(_dx(x))), "along the height too"),
    (lambda x: jnp.mean(_dy(x) ** 2) + jnp.mean(_dx(x) ** 2), "squared"),
    (ll.priors.total_variation_isotropic, "isotropic"),
    (lambda x: jnp.mean(_dy(x)) + jnp.mean(_dx(x)), "jnp.abs"),
    (lambda x: jnp.mean(jnp.abs(x[1:] - x[:-1])) + jnp.mean(jnp.abs(_dx(x))), "batch"),
    (lambda x: jnp.mean(jnp.abs(_dy(x))) + jnp.mean(jnp.abs(x[..., 1:] - x[..., :-1])),
     "channels"),
    (lambda x: jnp.mean(x), "constant images"),
    (lambda x: None, "return"),
    (lambda x: jnp.abs(_dy(x)), "single number"),
    (lambda x: float(jnp.mean(jnp.abs(jnp.diff(x, axis=1)))
                     + jnp.mean(jnp.abs(jnp.diff(x, axis=2)))), "differentiate"),
])
def test_total_variation_hints(fn, hint):
    with pytest.raises(CheckFailed, match=hint):
        ll.checks.total_variation(fn)
