"""The guard: every master's answer passes its check, and an answer that hands the
exercise to the library fails with the hint "you called `ll.…`; write it yourself" —
also through an alias bound before the check, a closure, a partial or a jitted function.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import jax
import pytest

import leakage_lab as ll
from leakage_lab import grading
from leakage_lab.checks import _guard
from leakage_lab.checks._common import CheckFailed

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def _labs() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8"))
            for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}


def _master_exercises():
    for name, nb in _labs().items():
        for exercise in grading.exercises(nb):
            yield pytest.param(name, exercise, id=f"{name[:2]}-{exercise.check}")


def _namespace(nb: dict) -> dict:
    """The master's imports and answer cells, run in a fresh namespace."""
    namespace: dict = {}
    exec(grading.preamble(nb), namespace)  # noqa: S102
    for cell in grading.answer_cells(nb):
        exec(grading._source(cell), namespace)  # noqa: S102
    return namespace


@pytest.mark.parametrize(("lab", "exercise"), list(_master_exercises()))
def test_master_answer_passes_under_the_guard(lab, exercise, capsys):
    fn = _namespace(_labs()[lab])[exercise.function]
    getattr(ll.checks, exercise.check)(fn)
    assert capsys.readouterr().out.startswith("✓")


def test_every_check_declares_its_exercise():
    assert set(_guard.EXERCISES) == set(ll.checks.__all__) - {"CheckFailed"}
    checked = {e.check for _, nb in _labs().items() for e in grading.exercises(nb)}
    assert checked == set(_guard.EXERCISES)
    for spec in _guard.EXERCISES.values():
        assert spec.forbidden and not set(spec.forbidden) & set(spec.allowed)
        for dotted in spec.forbidden + spec.allowed:
            _guard._resolve(dotted)  # every declared name exists


# One answer per exercise that hands the work to the library: each would pass without
# the guard (checked below), so each failing under the guard is the guard's doing.
DELEGATING = {
    "fedavg_average": """
        def answer(client_params, sizes):
            return ll.fl.average(client_params, sizes)
    """,
    "gradient_distance": """
        from leakage_lab.distances import l2 as answer   # an alias bound before the check
    """,
    "dlg_loss": """
        def answer(model, params, observed, dummy_images, dummy_logits):
            return ll.dlg.dlg_objective(model, params, observed, dummy_images,
                                        jax.nn.softmax(dummy_logits))
    """,
    "dlg_step": """
        def answer(model, params, observed, dummy_images, dummy_logits, lr):
            def objective(x, u):   # the candidate's gradient from the library
                g = ll.objective.candidate_gradient(model, params, x, jax.nn.softmax(u))
                return ll.distances.l2(observed, g)
            gx, gu = jax.grad(objective, argnums=(0, 1))(dummy_images, dummy_logits)
            return dummy_images - lr * gx, dummy_logits - lr * gu
    """,
    "geng_counts": """
        def answer(weight_grad, p_mean, o_mean, num_samples):
            raw = ll.labels.geng_estimate(jnp.sum(weight_grad, axis=0), p_mean, o_mean,
                                          num_samples)
            return ll.labels.round_counts(raw, num_samples)
    """,
    "idlg_label": """
        def answer(bias_grad):
            model = ll.models.mlp(num_classes=len(bias_grad), input_shape=(1, 1, 1),
                                  hidden=(2,))
            params = model.init(jax.random.key(0))
            grads = jax.tree.map(jnp.zeros_like, params)
            grads[ll.labels.last_layer(model, params)]["b"] = jnp.asarray(bias_grad)
            return int(ll.labels.idlg(model, params, grads)[0])
    """,
    "total_variation": """
        answer = jax.jit(ll.priors.total_variation)   # jitted, and compiled already
        answer(jnp.zeros((2, 4, 4, 1)))
    """,
    "gaussian_neg_log_likelihood": """
        def answer(observed, candidate, sigma):   # a partial made by a factory
            return -ll.defenses.gaussian(sigma).log_prob(observed, candidate)
    """,
    "prune_laplace_log_prob": """
        def answer(observed, clean, p, scale):
            return ll.defenses.prune_laplace(p, scale).log_prob(observed, clean)
    """,
    "dp_clip_and_noise": """
        def answer(per_example, clip_norm, noise_multiplier, key):
            m = jax.tree.leaves(per_example)[0].shape[0]
            return ll.privacy.clip_and_noise(per_example, jnp.ones(m),
                                             ll.privacy.dp_sgd(clip_norm, noise_multiplier),
                                             key=key)
    """,
    "pair_masks": """
        def answer(seed, u, v, length):
            return ll.secagg._pair_mask(seed, u, v, length)
    """,
    "client_update_loop": """
        def answer(model, params, images, labels, batches, lr):
            theta = params
            for epoch in batches:
                for idx in epoch:
                    theta = ll.objective.sgd_step(model, theta, images[idx], labels[idx],
                                                  jnp.ones(len(idx)), lr)
            return theta
    """,
    "fedavg_label_counts": """
        def answer(column_sums, server, client, num_samples, epochs, batch_size):
            p, o = ll.labels.interpolate(server, client, epochs * (num_samples // batch_size))
            m = batch_size
            return (m * p - m * jnp.asarray(column_sums)[None] / o[:, None]).sum(0) / epochs
    """,
    "match_epochs": """
        def answer(epoch_images):
            return ll.matching.match_epochs(epoch_images)
    """,
    "inverting_objective": """
        def answer(model, params, update, images, labels, tv_weight):
            return ll.inverting.inverting_objective(model, params, update, images, labels,
                                                    prior_weight=tv_weight)
    """,
    "ig_step": """
        def answer(images, grad, m, v, t, lr):   # optax's state rebuilt from m, v and t
            opt = ll.optimizers.signed_adam(lr, 10_000)
            treedef = jax.tree.structure(opt.init(images))
            state = jax.tree.unflatten(treedef, [t - 1, m, v, t - 1])
            updates, state = opt.update(grad, state, images)
            _, m, v, _ = jax.tree.leaves(state)
            return ll.optimizers.unit_box(images + updates), m, v
    """,
    "sim_update": """
        def answer(model, theta_s, images, labels, lr):
            e, b = images.shape[:2]
            final = ll.fedavg.simulate(model, theta_s, images, labels, jnp.ones(labels.shape),
                                       lr=lr, layout=ll.fedavg.per_batch(e, b))
            return jax.tree.map(lambda s, c: (s - c) / (lr * e * b), theta_s, final)
    """,
    "capstone_defense": """
        def answer(update, key):
            return ll.compression.top_k(0.1).apply(update, key=key)
    """,
    "capstone_attack_distance": """
        answer = ll.capstone.unsigned_leaf_cosine
    """,
}


def _delegating(check: str):
    namespace = {"jax": jax, "jnp": jax.numpy, "ll": ll}
    exec(textwrap.dedent(DELEGATING[check]), namespace)  # noqa: S102
    return namespace["answer"]


@pytest.mark.parametrize("check", sorted(DELEGATING))
def test_a_library_call_fails_with_the_hint(check, capsys):
    assert set(DELEGATING) == set(_guard.EXERCISES)
    answer = _delegating(check)
    run = getattr(ll.checks, check)
    run.__wrapped__(answer)  # without the guard, the delegating answer passes
    assert capsys.readouterr().out.startswith("✓")
    with pytest.raises(CheckFailed, match=r"you called `ll\..*`.*write it yourself"):
        run(answer)
    run.__wrapped__(answer)  # the library works again afterwards
    assert capsys.readouterr().out.startswith("✓")


def test_an_answer_that_catches_the_error_still_fails():
    def sneaky(observed, candidate):
        try:
            return ll.distances.l2(observed, candidate)
        except Exception:  # noqa: BLE001
            return ll.distances.l2(observed, candidate)

    with pytest.raises(_guard.LibraryCallForbidden, match="distances.l2"):
        ll.checks.gradient_distance(sneaky)


def test_allowed_helpers_do_not_reach_forbidden_code():
    """An allowed helper called under its exercise's guard does not fail."""
    spec = _guard.EXERCISES["client_update_loop"]
    model = ll.models.mlp(num_classes=3, input_shape=(2, 2, 1), hidden=(4,))
    params = model.init(jax.random.key(0))
    x, y = jax.numpy.zeros((2, 2, 2, 1)), jax.numpy.array([0, 1])
    _guard.guarded(lambda: ll.fl.gradient(model, params, x, y), spec)()
    seed = ll.secagg.random_bytes(1)(32)
    _guard.guarded(lambda: ll.secagg.prg(seed, 4), _guard.EXERCISES["pair_masks"])()
    epochs = jax.random.uniform(jax.random.key(1), (2, 3, 2, 2, 1))
    _guard.guarded(lambda: ll.matching.psnr_table(epochs[0], epochs[1]),
                   _guard.EXERCISES["match_epochs"])()
