"""Tests for leakage_lab.trees and leakage_lab.distances: known values on small pytrees
and the properties an attack relies on (zero at equality, scale invariance of cosine)."""

from __future__ import annotations

import numpy as np
import pytest

from leakage_lab import distances, trees

A = {"conv": {"w": np.array([[1.0, 2.0], [3.0, 4.0]]), "b": np.array([1.0])},
     "fc": {"w": np.array([0.0, -2.0])}}
B = {"conv": {"w": np.array([[0.0, 2.0], [1.0, 4.0]]), "b": np.array([-1.0])},
     "fc": {"w": np.array([1.0, -2.0])}}


def scaled(tree, s):
    return {k: {n: s * v for n, v in layer.items()} for k, layer in tree.items()}


def test_l2_and_l1_known_values():
    # differences: 1, 0, 2, 0 | 2 | -1, 0
    assert float(distances.l2(A, B)) == pytest.approx(1 + 4 + 4 + 1)
    assert float(distances.l1(A, B)) == pytest.approx(1 + 2 + 2 + 1)
    zero = scaled(A, 0.0)
    assert float(distances.l2(A, zero)) == pytest.approx(1 + 4 + 9 + 16 + 1 + 4)
    assert float(distances.l1(A, zero)) == pytest.approx(1 + 2 + 3 + 4 + 1 + 2)


def test_cosine_known_values():
    x = {"a": np.array([1.0, 0.0]), "b": np.array([0.0])}
    y = {"a": np.array([0.0, 0.0]), "b": np.array([3.0])}
    z = {"a": np.array([1.0, 1.0]), "b": np.array([0.0])}
    assert float(distances.cosine(x, y)) == pytest.approx(1.0)  # orthogonal
    assert float(distances.cosine(x, z)) == pytest.approx(1 - 1 / np.sqrt(2), rel=1e-6)
    dot = 1 * 0 + 2 * 2 + 3 * 1 + 4 * 4 + 1 * -1 + 0 * 1 + 4
    na, nb = np.sqrt(1 + 4 + 9 + 16 + 1 + 4), np.sqrt(4 + 1 + 16 + 1 + 1 + 4)
    assert float(distances.cosine(A, B)) == pytest.approx(1 - dot / (na * nb), rel=1e-6)


def test_cosine_ignores_scale_and_sees_sign():
    assert float(distances.cosine(A, scaled(A, 7.5))) == pytest.approx(0.0, abs=1e-6)
    assert float(distances.cosine(A, scaled(A, -0.3))) == pytest.approx(2.0, abs=1e-6)


def test_zero_at_equality_and_symmetry():
    for d in (distances.l2, distances.l1):
        assert float(d(A, A)) == 0.0
        assert float(d(A, B)) == pytest.approx(float(d(B, A)))
    assert float(distances.cosine(A, A)) == pytest.approx(0.0, abs=1e-6)


def test_tree_arithmetic():
    assert float(trees.tree_vdot(A, B)) == pytest.approx(0 + 4 + 3 + 16 - 1 + 0 + 4)
    assert float(trees.tree_sum(A)) == pytest.approx(10 + 1 - 2)
    total = trees.tree_add(A, trees.tree_scale(B, 2.0))
    np.testing.assert_allclose(total["conv"]["w"], [[1, 6], [5, 12]])
    diff = trees.tree_sub(A, B)
    np.testing.assert_allclose(diff["conv"]["b"], [2.0])
    np.testing.assert_allclose(diff["fc"]["w"], [-1.0, 0.0])


def test_check_matching():
    trees.check_matching(B, A)
    with pytest.raises(ValueError, match=r"missing leaves \[\"\['fc'\]\['w'\]\"\]"):
        trees.check_matching({"conv": A["conv"]}, A)
    bad = {**A, "fc": {"w": np.zeros(3)}}
    with pytest.raises(ValueError, match=r"\['fc'\]\['w'\]: expected \(2,\), got \(3,\)"):
        trees.check_matching(bad, A, name="update", reference_name="weights")
    with pytest.raises(ValueError, match="The update tree does not match the weights tree"):
        trees.check_matching(bad, A, name="update", reference_name="weights")
