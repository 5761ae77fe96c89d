"""Secure aggregation (Bonawitz et al., ACM CCS 2017): exact sums, dropouts, hiding, Shamir."""

import itertools
from collections import Counter

import jax
import numpy as np
import pytest
from scipy import stats

import leakage_lab as ll
from leakage_lab import secagg as sa

N, T = 5, 3
SCALE = 2**16


def _updates(n, length, *, seed=0, spread=3.0):
    rng = np.random.default_rng(seed)
    return [{"w": rng.normal(0, spread, length).astype(np.float32)} for _ in range(n)]


def _plain_sum(encoded, clients):
    """Oracle: the sum of the chosen encodings mod 2**32, summed as Python-size ints."""
    total = sum(encoded[u].astype(np.int64) for u in clients)
    return (total % 2**32).astype(np.uint32)


def _round(updates, *, seed, dropped=(), offline=()):
    encoded = [sa.encode(x, scale=SCALE, max_clients=len(updates))[0] for x in updates]
    state = sa.setup(len(updates), T, seed=seed)
    masked = {u: sa.mask(x, u, state) for u, x in enumerate(encoded) if u not in dropped}
    return encoded, state, masked, sa.aggregate(masked, state, offline=offline)


# ----- encoding -----------------------------------------------------------------------


def test_encode_decode_round_trip_within_quantisation_error():
    x = _updates(1, 1000, spread=100.0)[0]
    vec, spec = sa.encode(x, scale=SCALE)
    assert vec.dtype == np.uint32 and vec.shape == (1000,)
    back = sa.decode(vec, spec, num_clients=1)
    assert np.max(np.abs(np.asarray(back["w"], np.float64) - x["w"])) <= 0.5 / SCALE


def test_decoded_sum_of_encodings_is_exact_sum_of_quantised_updates():
    updates = _updates(N, 2000, seed=1, spread=50.0)
    encoded = [sa.encode(x, scale=SCALE, max_clients=N) for x in updates]
    total = np.zeros(2000, np.uint32)
    for vec, _ in encoded:
        total += vec  # wraps mod 2**32
    quantised = sum(np.rint(x["w"].astype(np.float64) * SCALE).astype(np.int64) for x in updates)
    np.testing.assert_array_equal(total.view(np.int32).astype(np.int64), quantised)
    decoded = sa.decode(total, encoded[0][1], num_clients=N)
    np.testing.assert_allclose(np.asarray(decoded["w"], np.float64), quantised / SCALE, rtol=1e-6)


def test_negative_values_use_twos_complement():
    vec, _ = sa.encode({"w": np.array([-1.0, 0.0, 1.0])}, scale=1)
    np.testing.assert_array_equal(vec, [2**32 - 1, 0, 1])


def test_out_of_range_update_is_rejected_with_the_range():
    limit = 2**31 / SCALE  # 32768
    with pytest.raises(ValueError, match="wrap around"):
        sa.encode({"w": np.array([limit])}, scale=SCALE)
    with pytest.raises(ValueError, match="max_clients=4"):
        sa.encode({"w": np.array([limit / 2])}, scale=SCALE, max_clients=4)
    with pytest.raises(ValueError, match="NaN"):
        sa.encode({"w": np.array([np.nan])})
    vec, spec = sa.encode({"w": np.array([1.0])}, max_clients=2)
    with pytest.raises(ValueError, match="max_clients"):
        sa.decode(vec, spec, num_clients=3)


# ----- the protocol -------------------------------------------------------------------


def test_secure_aggregate_equals_plain_sum_exactly_without_dropouts():
    encoded, _, _, result = _round(_updates(N, 3000), seed=2)
    assert result.survivors == tuple(range(N)) and result.dropped == ()
    assert result.total.dtype == np.uint32
    np.testing.assert_array_equal(result.total, _plain_sum(encoded, range(N)))


@pytest.mark.parametrize("dropped", [{1}, {0, 4}, {2, 3}])
def test_secure_aggregate_is_exact_with_dropouts_after_masking(dropped):
    encoded, _, _, result = _round(_updates(N, 3000), seed=3, dropped=dropped)
    survivors = [u for u in range(N) if u not in dropped]
    assert result.survivors == tuple(survivors)
    assert result.dropped == tuple(sorted(dropped))
    np.testing.assert_array_equal(result.total, _plain_sum(encoded, survivors))


def test_survivor_offline_in_unmasking_round_is_still_counted():
    encoded, _, _, result = _round(_updates(N, 500), seed=4, dropped={0}, offline={3})
    np.testing.assert_array_equal(result.total, _plain_sum(encoded, [1, 2, 3, 4]))


def test_too_many_dropouts_abort():
    with pytest.raises(ValueError, match="aborts"):
        _round(_updates(N, 100), seed=5, dropped={0, 1, 2})
    with pytest.raises(ValueError, match="aborts"):
        _round(_updates(N, 100), seed=5, dropped={0, 1}, offline={2})


def test_pairwise_masks_cancel():
    state = sa.setup(N, T, seed=6)
    masks = [sa.pairwise_mask(u, state, 4000) for u in range(N)]
    assert all(np.any(m != 0) for m in masks)
    total = np.zeros(4000, np.uint32)
    for m in masks:
        total += m
    np.testing.assert_array_equal(total, 0)


def test_key_agreement_is_symmetric():
    state = sa.setup(3, 2, seed=7)
    s01 = sa.agree(state.secrets[0].mask_key, state.public_keys[1])
    s10 = sa.agree(state.secrets[1].mask_key, state.public_keys[0])
    assert s01 == s10 and len(s01) == 32
    assert s01 != sa.agree(state.secrets[0].mask_key, state.public_keys[2])


def test_masked_update_looks_uniform_and_uncorrelated_with_the_update():
    length = 50_000
    # Structured, far-from-uniform inputs: a ramp and its negative.
    ramp = np.linspace(-1.0, 1.0, length)
    x_a, x_b = {"w": ramp}, {"w": -ramp}
    enc_a, _ = sa.encode(x_a, max_clients=N)
    enc_b, _ = sa.encode(x_b, max_clients=N)
    y_a = sa.mask(enc_a, 0, sa.setup(N, T, seed=8))
    y_b = sa.mask(enc_b, 0, sa.setup(N, T, seed=9))
    for y in (y_a, y_b):
        counts = np.bincount(y >> 28, minlength=16)  # top 4 bits
        assert stats.chisquare(counts).pvalue > 1e-3
    # The plain encodings are anything but uniform.
    assert stats.chisquare(np.bincount(enc_a >> 28, minlength=16)).pvalue < 1e-10
    # Neither masked vector correlates with either input: the server cannot tell which is which.
    for y in (y_a, y_b):
        for x in (ramp, -ramp):
            assert abs(np.corrcoef(y.astype(np.float64), x)[0, 1]) < 0.03


def test_reusing_masks_across_rounds_leaks_the_difference():
    """Why keys are per round: the same masks twice reveal x_a - x_b."""
    state = sa.setup(N, T, seed=10)
    enc_a, _ = sa.encode({"w": np.arange(10.0)})
    enc_b, _ = sa.encode({"w": np.zeros(10)})
    leak = sa.mask(enc_a, 2, state) - sa.mask(enc_b, 2, state)
    np.testing.assert_array_equal(leak, enc_a - enc_b)


def test_seed_is_reproducible_and_default_is_fresh():
    a, b = sa.setup(3, 2, seed=11), sa.setup(3, 2, seed=11)
    assert a.secrets[0].self_seed == b.secrets[0].self_seed
    c, d = sa.setup(3, 2), sa.setup(3, 2)
    assert c.secrets[0].self_seed != d.secrets[0].self_seed


def test_setup_validates_threshold():
    with pytest.raises(ValueError, match="threshold"):
        sa.setup(5, 6)
    with pytest.raises(ValueError, match="at least 2"):
        sa.setup(1, 1)


def test_pytree_update_from_fl_round_trips_through_secure_sum():
    model = ll.models.mlp(num_classes=10, input_shape=(8, 8, 1), hidden=(16,))
    params = model.init(jax.random.PRNGKey(0))
    updates = [jax.tree.map(lambda p, k=k: 0.01 * (k + 1) * p, params) for k in range(N)]
    result = sa.secure_sum(updates, threshold=T, dropped={1}, seed=12)
    assert jax.tree.structure(result.total) == jax.tree.structure(params)
    expected = jax.tree.map(lambda *xs: sum(np.asarray(x, np.float64) for x in xs),
                            *[u for k, u in enumerate(updates) if k != 1])
    for got, want, p in zip(jax.tree.leaves(result.total), jax.tree.leaves(expected),
                            jax.tree.leaves(params), strict=True):
        assert got.shape == p.shape and got.dtype == p.dtype
        # each of the 4 summands is off by at most half a quantisation step
        np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=4 * 0.5 / SCALE + 1e-6)


# ----- Shamir secret sharing ----------------------------------------------------------


def test_any_t_of_n_shares_reconstruct():
    rng = sa.random_bytes(13)
    secret = int.from_bytes(rng(32), "big")
    shares = sa.share(secret, threshold=T, num_shares=N, rng=rng)
    for subset in itertools.combinations(shares, T):
        assert sa.reconstruct(subset) == secret
    assert sa.reconstruct(shares) == secret  # more than t is fine too


def test_fewer_than_t_shares_give_a_wrong_value():
    rng = sa.random_bytes(14)
    for _ in range(20):
        secret = int.from_bytes(rng(32), "big")
        shares = sa.share(secret, threshold=T, num_shares=N, rng=rng)
        assert sa.reconstruct(shares[: T - 1]) != secret


def test_t_minus_1_shares_are_consistent_with_every_secret():
    """For t-1 shares and any candidate s' there is a sharing of s' giving those same shares."""
    rng = sa.random_bytes(15)
    shares = sa.share(123456789, threshold=T, num_shares=N, rng=rng)[: T - 1]
    for candidate in (0, 1, 123456789, sa.PRIME - 1):
        coeffs = _interpolating_coefficients([sa.Share(0, candidate), *shares])
        assert len(coeffs) == T and coeffs[0] == candidate  # degree <= t-1, f(0) = s'
        assert sa.shares_of_polynomial(coeffs, T - 1) == shares


def _interpolating_coefficients(points, prime=sa.PRIME):
    """Coefficients c_0..c_{k-1} of the degree < k polynomial through k points (Lagrange)."""
    coeffs = [0] * len(points)
    for i, (xi, yi) in enumerate(points):
        basis, den = [1], 1  # basis polynomial prod_{j != i} (x - x_j), lowest degree first
        for j, (xj, _) in enumerate(points):
            if j != i:
                shifted = zip([0, *basis], [*basis, 0], strict=True)  # x * basis, basis
                basis = [(a - xj * b) % prime for a, b in shifted]
                den = den * (xi - xj) % prime
        w = yi * pow(den, -1, prime) % prime
        coeffs = [(c + w * b) % prime for c, b in zip(coeffs, basis, strict=True)]
    return coeffs


def test_t_minus_1_shares_are_independent_of_the_secret_exhaustively():
    """Perfect secrecy in a tiny field: every secret gives every (t-1)-share view equally often."""
    p, t, n = 7, 3, 4
    views = {s: Counter() for s in range(p)}
    for coeffs in itertools.product(range(p), repeat=t):
        shares = sa.shares_of_polynomial(coeffs, n, prime=p)
        views[coeffs[0]][tuple(s.y for s in shares[: t - 1])] += 1
    for s in range(p):
        assert len(views[s]) == p ** (t - 1) and set(views[s].values()) == {1}


def test_share_validates():
    rng = sa.random_bytes(16)
    with pytest.raises(ValueError, match="threshold"):
        sa.share(5, threshold=4, num_shares=3, rng=rng)
    with pytest.raises(ValueError, match="secret"):
        sa.share(sa.PRIME, threshold=2, num_shares=3, rng=rng)
    with pytest.raises(ValueError, match="distinct"):
        sa.reconstruct([sa.Share(1, 2), sa.Share(1, 3)])


def test_refusals_say_why():
    with pytest.raises(ValueError, match=r"1 <= t <= num_clients = 5, got t=6"):
        sa.setup(5, 6)
    with pytest.raises(ValueError, match=r"2 masked updates arrived .* threshold is t=3"):
        sa.secure_sum(_updates(N, 10), threshold=T, dropped={0, 1, 2}, seed=1)


# ----- the protocol's safety rule: never both shares of one client ----------------------


def test_two_request_attack_is_refused():
    """'Everyone survived', then 'client 0 dropped' on the same state: the helpers already
    released shares of b_0, so they refuse shares of s_0^SK (else y_0 is unmasked alone)."""
    encoded, state, masked, everyone = _round(_updates(N, 200), seed=20)
    np.testing.assert_array_equal(everyone.total, _plain_sum(encoded, range(N)))
    without_0 = {u: y for u, y in masked.items() if u != 0}
    with pytest.raises(sa.ShareRefused, match=r"refuses to release a share of client 0's "
                                              r"mask key .* already released .* self-mask seed"):
        sa.aggregate(without_0, state)
    # Whichever helpers the server asks, at least one of any t = 3 of the 4 survivors
    # already released a share of b_0 (2t > n): refused, or too few helpers to go on.
    for offline in itertools.chain.from_iterable(
            itertools.combinations(range(1, N), k) for k in range(N - 1)):
        with pytest.raises(ValueError, match="refuses|aborts"):
            sa.aggregate(without_0, state, offline=offline)


def test_two_request_attack_is_refused_the_other_way_round():
    _, state, masked, _ = _round(_updates(N, 100), seed=21, dropped={2})
    masked[2] = sa.mask(sa.encode(_updates(1, 100)[0], max_clients=N)[0], 2, state)  # "late"
    with pytest.raises(sa.ShareRefused, match=r"client 2's self-mask seed .* mask key"):
        sa.aggregate(masked, state)


def test_helpers_record_what_they_released_and_repeat_it_freely():
    encoded, state, masked, result = _round(_updates(N, 100), seed=22, dropped={1})
    helpers = [0, 2, 3]  # the first t survivors answer
    for v in range(N):
        want = {0: "seed", 1: "key", 2: "seed", 3: "seed", 4: "seed"} if v in helpers else {}
        assert dict(state.holders[v].released) == want
    again = sa.aggregate(masked, state)  # the same request again: the same kinds, allowed
    np.testing.assert_array_equal(again.total, result.total)
    with pytest.raises(TypeError):
        state.holders[0].released[1] = "seed"  # a read-only view
    # The server has no way to the shares but through the holders' check.
    assert not hasattr(state, "key_shares") and not hasattr(state, "seed_shares")


def test_a_request_for_both_shares_of_one_client_is_refused_whole():
    state = sa.setup(N, T, seed=23)
    with pytest.raises(sa.ShareRefused, match="both client 1's"):
        state.holders[0].answer(seeds=[0, 1], keys=[1])
    assert dict(state.holders[0].released) == {}  # nothing was released


def test_minority_threshold_is_refused_unless_opted_in():
    for n, t in ((5, 2), (4, 2), (2, 1), (5, 1)):
        with pytest.raises(ValueError, match=rf"t={t} .* must exceed n/2 \(t >= {n // 2 + 1}\)"):
            sa.setup(n, t)
    with pytest.raises(ValueError, match="every share IS the secret"):
        sa.setup(5, 1)
    with pytest.raises(ValueError, match="allow_minority_threshold=True"):
        sa.secure_sum(_updates(N, 10), threshold=1, seed=1)
    for n, t in ((5, 3), (4, 3), (2, 2), (3, 2)):
        assert sa.setup(n, t, seed=0).threshold == t
    # Opted in, t = 1 runs (one share each is the whole secret).
    result = sa.secure_sum(_updates(N, 10), threshold=1, dropped={0}, seed=1,
                           allow_minority_threshold=True)
    assert result.survivors == (1, 2, 3, 4)
    state = sa.setup(N, 1, seed=2, allow_minority_threshold=True)
    holder = state.holders[3]
    b_0 = sa.reconstruct([holder.answer(seeds=[0])["seed"][0]])
    assert b_0.to_bytes(32, "big") == state.secrets[0].self_seed


def test_minority_threshold_lets_two_disjoint_groups_unmask_one_client():
    """Why setup refuses t <= n/2: with t = 2 of 5, helpers {0, 1} give b_0 and helpers
    {2, 3} give s_0^SK, none of them breaks the rule, and the server learns x_0."""
    updates = _updates(N, 300, seed=24)
    encoded = [sa.encode(x, scale=SCALE, max_clients=N)[0] for x in updates]
    state = sa.setup(N, 2, seed=24, allow_minority_threshold=True)
    masked = {u: sa.mask(x, u, state) for u, x in enumerate(encoded)}
    everyone = sa.aggregate(masked, state)
    others = sa.aggregate({u: y for u, y in masked.items() if u != 0}, state, offline={1})
    np.testing.assert_array_equal(everyone.total - others.total, encoded[0])
