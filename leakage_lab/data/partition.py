"""Client splits for federated learning: IID, Dirichlet label skew, one client per writer.

Every split is driven by an explicit JAX PRNG key (or an int seed): the same key
always gives the same split.

    >>> from leakage_lab import data
    >>> ds = data.load("digits")
    >>> clients = data.split_dirichlet(
    ...     ds, num_clients=4, samples_per_client=64, alpha=0.5, key=0)
    >>> [len(c) for c in clients]
    [64, 64, 64, 64]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from leakage_lab.data.dataset import DataError, Dataset, subset

__all__ = [
    "dirichlet_indices",
    "iid_indices",
    "split_dirichlet",
    "split_iid",
    "split_writers",
    "train_test_split",
]


def _rng(key: Any) -> np.random.Generator:
    """A numpy Generator seeded from a JAX PRNG key (typed or raw uint32[2]) or an int.

    The randomness is drawn with ``jax.random`` from ``key``, so one key always gives
    one split; an int ``s`` is shorthand for ``jax.random.key(s)``.
    """
    import jax  # here, so that reading files never needs JAX

    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.key(int(key))
    if key is None:
        raise DataError("a PRNG key is required, e.g. key=jax.random.key(0)")
    bits = jax.random.bits(key, (4,), dtype=np.uint32)
    return np.random.default_rng(np.asarray(bits, dtype=np.uint32))


def _check_sizes(n: int, num_clients: int, samples_per_client: int) -> None:
    if num_clients < 1 or samples_per_client < 1:
        raise DataError(
            f"num_clients and samples_per_client must be >= 1, got {num_clients} "
            f"and {samples_per_client}"
        )
    if num_clients * samples_per_client > n:
        raise DataError(
            f"cannot give {num_clients} clients {samples_per_client} disjoint samples each: "
            f"that needs {num_clients * samples_per_client} samples but the data set has {n}"
        )


def iid_indices(n: int, *, num_clients: int, samples_per_client: int, key: Any) -> list[np.ndarray]:
    """Disjoint, uniformly random index sets of equal size (sorted within each client)."""
    _check_sizes(n, num_clients, samples_per_client)
    perm = _rng(key).permutation(n)[: num_clients * samples_per_client]
    return [np.sort(p) for p in perm.reshape(num_clients, samples_per_client)]


def split_iid(ds: Dataset, *, num_clients: int, samples_per_client: int, key: Any) -> list[Dataset]:
    """Split ``ds`` into ``num_clients`` disjoint IID clients of ``samples_per_client`` each.

    Args:
        ds: The data set.
        num_clients: Number of clients.
        samples_per_client: Samples per client; ``num_clients * samples_per_client``
            must not exceed ``len(ds)``.
        key: JAX PRNG key (or int seed); the same key gives the same split.

    Returns:
        One :class:`Dataset` per client (use :func:`iid_indices` for the indices).
    """
    idx = iid_indices(
        len(ds), num_clients=num_clients, samples_per_client=samples_per_client, key=key
    )
    return [subset(ds, i) for i in idx]


def dirichlet_indices(
    labels: np.ndarray,
    num_classes: int,
    *,
    num_clients: int,
    samples_per_client: int,
    alpha: float,
    key: Any,
) -> list[np.ndarray]:
    """Disjoint label-skewed index sets; see :func:`split_dirichlet`."""
    labels = np.asarray(labels)
    _check_sizes(len(labels), num_clients, samples_per_client)
    if not alpha > 0:
        raise DataError(f"alpha must be > 0, got {alpha}")
    rng = _rng(key)
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in range(num_classes)]
    present = np.array([len(p) > 0 for p in pools])
    out = []
    for _ in range(num_clients):
        p = np.zeros(num_classes)
        p[present] = rng.dirichlet(np.full(int(present.sum()), float(alpha)))
        if not np.isfinite(p).all() or p.sum() <= 0:  # guard against underflow
            p = np.zeros(num_classes)
            p[rng.choice(np.flatnonzero(present))] = 1.0
        want = rng.multinomial(samples_per_client, p / p.sum())
        take: list[int] = []
        for c in range(num_classes):
            k = min(int(want[c]), len(pools[c]))
            take.extend(pools[c][:k])
            del pools[c][:k]
        # Classes that ran out: fill from the remaining classes, most-preferred first.
        for c in np.argsort(-p, kind="stable"):
            short = samples_per_client - len(take)
            if short == 0:
                break
            k = min(short, len(pools[c]))
            take.extend(pools[c][:k])
            del pools[c][:k]
        out.append(np.sort(np.asarray(take, dtype=np.intp)))
    return out


def split_dirichlet(
    ds: Dataset, *, num_clients: int, samples_per_client: int, alpha: float, key: Any
) -> list[Dataset]:
    """Split ``ds`` into disjoint label-skewed clients (Dirichlet class proportions).

    Each client draws class proportions ``p ~ Dirichlet(alpha * 1)`` and then
    ``samples_per_client`` labels from ``Multinomial(p)``; samples are taken without
    replacement from what is left of each class, so clients never share a sample.
    When a class runs out, the shortfall is filled from the client's other classes
    in decreasing order of ``p`` (so very late clients can be less skewed than
    asked). Small ``alpha`` (e.g. 0.1) gives a few classes per client; large
    ``alpha`` (e.g. 100) gives near-uniform classes.

    Args:
        ds: The data set.
        num_clients: Number of clients.
        samples_per_client: Samples per client (``num_clients * samples_per_client <= len(ds)``).
        alpha: Dirichlet concentration, > 0.
        key: JAX PRNG key (or int seed); the same key gives the same split.

    Returns:
        One :class:`Dataset` per client (use :func:`dirichlet_indices` for the indices).
    """
    idx = dirichlet_indices(
        ds.labels,
        ds.num_classes,
        num_clients=num_clients,
        samples_per_client=samples_per_client,
        alpha=alpha,
        key=key,
    )
    return [subset(ds, i) for i in idx]


def split_writers(ds: Dataset) -> list[Dataset]:
    """One client per writer (FEMNIST), in increasing writer id.

    Raises:
        DataError: If ``ds.writers`` is ``None``.
    """
    if ds.writers is None:
        raise DataError(
            f"{ds.name} has no writer ids (Dataset.writers is None); "
            "split_writers needs FEMNIST (load('femnist', root=...))"
        )
    return [subset(ds, np.flatnonzero(ds.writers == w)) for w in np.unique(ds.writers)]


def train_test_split(ds: Dataset, *, test_fraction: float, key: Any) -> tuple[Dataset, Dataset]:
    """Randomly split ``ds`` into disjoint train and test sets.

    Args:
        ds: The data set.
        test_fraction: Fraction of samples (rounded) for the test set, in (0, 1).
        key: JAX PRNG key (or int seed).

    Returns:
        ``(train, test)``, each keeping the original sample order.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    n = len(ds)
    n_test = round(n * test_fraction)
    if n_test < 1 or n_test >= n:
        raise DataError(
            f"test_fraction={test_fraction} of {n} samples leaves an empty train or test set"
        )
    perm = _rng(key).permutation(n)
    return subset(ds, np.sort(perm[n_test:])), subset(ds, np.sort(perm[:n_test]))
