"""Secure aggregation by pairwise masking (Bonawitz et al., ACM CCS 2017), simulated.

Plain FedAvg hands the server every client's update, and gradient inversion turns an
update back into data. Secure aggregation changes what the server sees: it receives
only *masked* updates ``y_u``, which look uniformly random one at a time, and learns
nothing beyond the sum ``Σ_u x_u``.

The protocol, one round, ``n`` clients, threshold ``t`` (the functions below, in order):

0. ``encode``: each update becomes a vector ``x_u`` of integers modulo ``R = 2**32``
   (fixed point, scale ``2**16`` by default). Sums are exact in ``Z_R``.
1. ``setup`` (Bonawitz's AdvertiseKeys): client ``u`` draws an X25519 key pair
   ``(s_u^SK, s_u^PK)`` and a self-mask seed ``b_u``; the public keys are broadcast.
   Any two clients agree on a seed ``s_uv = HKDF(X25519(s_u^SK, s_v^PK))`` that the
   server cannot compute (Diffie-Hellman).
2. ``setup`` (ShareKeys): client ``u`` splits ``s_u^SK`` and ``b_u`` into ``n`` Shamir
   shares with threshold ``t`` and gives one share of each to every client.
3. ``mask`` (MaskedInputCollection): client ``u`` sends

       y_u = x_u + PRG(b_u) + Σ_{v>u} PRG(s_uv) - Σ_{v<u} PRG(s_uv)   (mod R).

   The pairwise terms cancel in ``Σ_u y_u``: ``PRG(s_uv)`` is added by the smaller of
   ``u, v`` and subtracted by the larger.
4. ``aggregate`` (Unmasking): the server asks the clients still online for, per client,
   *either* a share of ``b_u`` (``u`` sent ``y_u``: remove ``PRG(b_u)``) *or* a share of
   ``s_u^SK`` (``u`` dropped before sending: rebuild its key, recompute and remove the
   pairwise masks it shared with the senders). With fewer than ``t`` clients left the
   protocol aborts. An honest client never reveals both shares of the same client:
   each client's ``ShareHolder`` records, per client, which kind it has released, and
   refuses the other kind (``ShareRefused``), across every request of the round.

Why the self mask ``b_u``: if ``u``'s ``y_u`` arrives late, after the server has already
rebuilt ``s_u^SK`` to clean up after its "dropout", the pairwise masks alone would come
off and ``x_u`` would be exposed. ``PRG(b_u)`` still hides it.

Why the rule and the threshold ``t > n / 2``: a server that first says "everyone
survived" (and collects the shares of ``b_0``) and then "client 0 dropped" (and collects
the shares of ``s_0^SK``) holds both secrets of client 0 and unmasks ``y_0`` alone; the
two aggregates it was handed differ by ``x_0``. Each helper refuses the second kind, so
the server would need ``t`` helpers for the seed and ``t`` *other* helpers for the key:
``2t > n`` makes that impossible, which is why ``setup`` refuses ``t <= n / 2`` unless
asked (``allow_minority_threshold=True``, for demonstrations).

What this simulation leaves out, on purpose: the separate encryption key pair per client
(shares travel through the server, encrypted to their recipient, in the paper; here
client ``v``'s shares sit in its ``ShareHolder``, ``state.holders[v]``, which hands them
out only through its ``answer`` check), the signatures of the actively secure version,
and the consistency-check round. Everything runs in one process; "the server" and
"client u" are just the functions that read the corresponding parts of the state.

Security level: the masks come from a PRG, so a single masked update is hidden
*computationally* (as good as ChaCha20 and X25519), not information-theoretically. The
Shamir sharing itself is information-theoretic: fewer than ``t`` shares say nothing.

Keys and seeds are for one round only. Reusing them would reuse the masks, and the
difference of two rounds' masked updates would be the difference of the plain updates.

Randomness: by default every secret comes from ``os.urandom``. Passing ``seed=`` makes
the secrets a deterministic function of that integer (a ChaCha20 keystream), which is
for teaching and tests only: anyone who knows the seed knows every key.

    >>> import numpy as np
    >>> import leakage_lab.secagg as sa
    >>> updates = [{"w": np.full(3, 0.25 * (u + 1), np.float32)} for u in range(5)]
    >>> result = sa.secure_sum(updates, threshold=3, dropped={4}, seed=0)
    >>> result.survivors, result.dropped
    ((0, 1, 2, 3), (4,))
    >>> np.asarray(result.total["w"])   # 0.25 + 0.5 + 0.75 + 1.0
    array([2.5, 2.5, 2.5], dtype=float32)
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "BITS",
    "PRIME",
    "Aggregate",
    "ClientSecrets",
    "EncodingSpec",
    "SecAggState",
    "SecureSum",
    "Share",
    "ShareHolder",
    "ShareRefused",
    "agree",
    "aggregate",
    "decode",
    "encode",
    "mask",
    "pairwise_mask",
    "prg",
    "random_bytes",
    "reconstruct",
    "secure_sum",
    "self_mask",
    "setup",
    "share",
    "shares_of_polynomial",
]

BITS = 32
"""Masked vectors live in ``Z_R`` with ``R = 2**BITS``; numpy's uint32 wraps mod ``R``."""

PRIME = 2**521 - 1
"""The Shamir field GF(p): a Mersenne prime, larger than any 32-byte secret (2**256)."""

RandomBytes = Callable[[int], bytes]
"""A source of randomness: ``rng(n)`` returns ``n`` fresh random bytes."""

_SECRET_BYTES = 32


# --------------------------------------------------------------------------------------
# Randomness and the PRG
# --------------------------------------------------------------------------------------


def _chacha20_stream(key: bytes) -> RandomBytes:
    """Successive bytes of the ChaCha20 keystream under ``key`` (zero nonce)."""
    encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    return lambda n: encryptor.update(bytes(n))


def random_bytes(seed: int | None = None) -> RandomBytes:
    """A source of secret randomness: ``os.urandom``, or a deterministic stream from ``seed``.

    Args:
        seed: ``None`` (the default) for real use: the operating system's CSPRNG.
            An integer gives a reproducible ChaCha20 keystream keyed by
            ``SHA-256(seed)``; **for teaching and tests only**, since the seed then
            determines every secret.
    """
    if seed is None:
        return os.urandom
    if not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}.")
    key = hashlib.sha256(b"leakage-lab secagg seed " + str(int(seed)).encode()).digest()
    return _chacha20_stream(key)


def prg(seed: bytes, length: int) -> np.ndarray:
    """The PRG: expands a 32-byte seed into ``length`` uint32 words (ChaCha20 keystream).

    The keystream of ChaCha20 keyed by ``seed`` is indistinguishable from uniform bytes
    to anyone who does not know ``seed``; read as little-endian uint32 it is a uniform
    vector in ``Z_R^length``.
    """
    if len(seed) != _SECRET_BYTES:
        raise ValueError(f"prg expects a {_SECRET_BYTES}-byte seed, got {len(seed)} bytes.")
    stream = _chacha20_stream(seed)(4 * int(length))
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32)


def agree(private_key: X25519PrivateKey, public_key: X25519PublicKey) -> bytes:
    """Key agreement ``s_uv = HKDF-SHA256(X25519(s_u^SK, s_v^PK))``: 32 bytes.

    Symmetric: ``agree(sk_u, pk_v) == agree(sk_v, pk_u)``, and computing it takes one of
    the two private keys.
    """
    secret = private_key.exchange(public_key)
    return HKDF(
        algorithm=hashes.SHA256(), length=_SECRET_BYTES, salt=None,
        info=b"leakage-lab secagg pairwise mask seed",
    ).derive(secret)


# --------------------------------------------------------------------------------------
# Shamir secret sharing over GF(PRIME)
# --------------------------------------------------------------------------------------


class Share(NamedTuple):
    """One Shamir share: the point ``(x, f(x))`` of the secret polynomial ``f``."""

    x: int
    y: int


def _field_element(rng: RandomBytes, prime: int) -> int:
    """A uniform element of GF(prime) by rejection sampling (no modulo bias)."""
    nbytes = (prime.bit_length() + 7) // 8
    excess = 8 * nbytes - prime.bit_length()
    while True:
        r = int.from_bytes(rng(nbytes), "big") >> excess
        if r < prime:
            return r


def shares_of_polynomial(coefficients: Iterable[int], num_shares: int, *,
                         prime: int = PRIME) -> list[Share]:
    """Evaluates ``f(x) = Σ_k c_k x^k`` (mod ``prime``) at ``x = 1, ..., num_shares``."""
    coefficients = list(coefficients)

    def f(x: int) -> int:
        y = 0
        for c in reversed(coefficients):  # Horner
            y = (y * x + c) % prime
        return y

    return [Share(x, f(x)) for x in range(1, num_shares + 1)]


def share(secret: int, *, threshold: int, num_shares: int, rng: RandomBytes,
          prime: int = PRIME) -> list[Share]:
    """Shamir's t-of-n secret sharing (Shamir, CACM 1979).

    Draws a random polynomial of degree ``t - 1`` with ``f(0) = secret``,

        f(x) = secret + a_1 x + ... + a_{t-1} x^{t-1}   over GF(p),

    and hands out ``(x, f(x))`` for ``x = 1, ..., n``. Any ``t`` shares determine ``f``
    (a degree ``t - 1`` polynomial is fixed by ``t`` points), hence the secret. Any
    ``t - 1`` shares reveal *nothing*: for every candidate secret ``s'`` there is exactly
    one polynomial of degree ``≤ t - 1`` through ``(0, s')`` and those ``t - 1`` points,
    and the uniform ``a_k`` make all of them equally likely. This secrecy is
    information-theoretic; it holds against unbounded computation.

    Args:
        secret: an integer in ``[0, prime)``.
        threshold: ``t``, the number of shares needed; ``1 <= t <= num_shares``.
        num_shares: ``n``.
        rng: the source of the random coefficients (``random_bytes()``).
        prime: the field size.
    """
    if not 1 <= threshold <= num_shares:
        raise ValueError(
            f"share needs 1 <= threshold <= num_shares, got threshold={threshold}, "
            f"num_shares={num_shares}."
        )
    if num_shares >= prime:
        raise ValueError(f"At most prime - 1 = {prime - 1} shares exist, asked for {num_shares}.")
    if not 0 <= secret < prime:
        raise ValueError(f"The secret must lie in [0, prime), got {secret}.")
    coefficients = [secret] + [_field_element(rng, prime) for _ in range(threshold - 1)]
    return shares_of_polynomial(coefficients, num_shares, prime=prime)


def reconstruct(shares: Iterable[Share], *, prime: int = PRIME) -> int:
    """The secret ``f(0)`` by Lagrange interpolation at 0 from ``t`` (or more) shares.

        f(0) = Σ_i y_i Π_{j≠i} x_j / (x_j - x_i)   (mod p)

    With fewer than ``t`` shares the result is a field element unrelated to the secret.
    """
    shares = [Share(int(x), int(y)) for x, y in shares]
    xs = [s.x for s in shares]
    if not shares:
        raise ValueError("reconstruct needs at least one share.")
    if len(set(x % prime for x in xs)) != len(xs) or any(x % prime == 0 for x in xs):
        raise ValueError(f"Shares need distinct, non-zero x coordinates, got {xs}.")
    secret = 0
    for i, (xi, yi) in enumerate(shares):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % prime
                den = den * (xj - xi) % prime
        secret = (secret + yi * num * pow(den, -1, prime)) % prime
    return secret


# --------------------------------------------------------------------------------------
# Fixed-point encoding into Z_R
# --------------------------------------------------------------------------------------


class EncodingSpec(NamedTuple):
    """How to turn a uint32 vector back into the update's pytree.

    Attributes:
        treedef: the pytree structure.
        shapes, dtypes: per leaf.
        scale: fixed-point scale; a value ``v`` is stored as ``round(v * scale)``.
        max_clients: the range was checked so that sums of up to this many
            updates cannot wrap around.
    """

    treedef: jax.tree_util.PyTreeDef
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]
    scale: float
    max_clients: int


def _int_range(max_clients: int) -> tuple[int, int]:
    """Quantised values allowed per update so that any sum of ``max_clients`` stays in int32."""
    return -(2 ** (BITS - 1)) // max_clients, (2 ** (BITS - 1) - 1) // max_clients


def encode(update, *, scale: float = 2**16,
           max_clients: int = 1) -> tuple[np.ndarray, EncodingSpec]:
    """Fixed-point encoding of a pytree into ``Z_R``, ``R = 2**32`` (two's complement).

    Each value ``v`` becomes ``q = round(v * scale)``, stored as ``q mod R`` in a uint32.
    Addition of uint32 vectors is addition mod ``R``, so the sum of encodings is the
    encoding of the sum of the ``q``s, exactly, while that sum stays in
    ``[-2**31, 2**31)``, i.e. in ``[-2**31 / scale, 2**31 / scale)`` as real numbers
    (±32768 for the default scale). To guarantee it, every update must lie within
    ``1 / max_clients`` of that range; otherwise a ValueError says by how much it misses.
    The rounding error is at most ``0.5 / scale`` per coordinate.

    Returns:
        ``(vector, spec)``: the flat uint32 vector and the ``EncodingSpec`` for ``decode``.
    """
    if not scale > 0:
        raise ValueError(f"encode needs a positive scale, got {scale}.")
    if int(max_clients) < 1:
        raise ValueError(f"max_clients must be >= 1, got {max_clients}.")
    leaves, treedef = jax.tree_util.tree_flatten(update)
    arrays = [np.asarray(leaf) for leaf in leaves]
    flat = np.concatenate([a.astype(np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)
    if not np.all(np.isfinite(flat)):
        raise ValueError("encode: the update contains NaN or infinite values.")
    q = np.rint(flat * scale).astype(np.int64)
    low, high = _int_range(int(max_clients))
    if q.size and (q.min() < low or q.max() > high):
        worst = float(np.max(np.abs(flat)))
        raise ValueError(
            f"encode: the update has |values| up to {worst:.4g}, but with scale={scale} and "
            f"max_clients={max_clients} they must lie in [{low / scale:.4g}, {high / scale:.4g}] "
            "so that the sum cannot wrap around mod 2**32. Lower the scale, or clip the update."
        )
    vector = (q % 2**BITS).astype(np.uint32)  # two's complement: -1 -> 2**32 - 1
    spec = EncodingSpec(treedef, tuple(a.shape for a in arrays), tuple(a.dtype for a in arrays),
                        float(scale), int(max_clients))
    return vector, spec


def decode(total: np.ndarray, spec: EncodingSpec, *, num_clients: int):
    """Decodes a (sum of ``num_clients``) encoded vector(s) back into the update pytree.

    Reads each uint32 as a signed int32 (two's complement) and divides by the scale.
    ``num_clients`` is how many encodings were summed; it may not exceed
    ``spec.max_clients``, the count the range check in ``encode`` was made for.
    """
    total = np.asarray(total)
    if total.dtype != np.uint32:
        raise TypeError(f"decode expects a uint32 vector, got dtype {total.dtype}.")
    if not 1 <= int(num_clients) <= spec.max_clients:
        raise ValueError(
            f"decode: the encodings were range-checked for sums of up to {spec.max_clients} "
            f"clients, got num_clients={num_clients}; encode with max_clients >= num_clients."
        )
    sizes = [int(np.prod(s)) for s in spec.shapes]
    if total.shape != (sum(sizes),):
        raise ValueError(f"decode expects a vector of shape ({sum(sizes)},), got {total.shape}.")
    values = total.view(np.int32).astype(np.float64) / spec.scale
    parts = np.split(values, np.cumsum(sizes)[:-1]) if sizes else []
    leaves = [jnp.asarray(p.reshape(s).astype(d))
              for p, s, d in zip(parts, spec.shapes, spec.dtypes, strict=True)]
    return jax.tree_util.tree_unflatten(spec.treedef, leaves)


# --------------------------------------------------------------------------------------
# Rounds 1 and 2: keys and shares
# --------------------------------------------------------------------------------------


class ClientSecrets(NamedTuple):
    """What client ``u`` keeps to itself: its mask key ``s_u^SK`` and self-mask seed ``b_u``."""

    mask_key: X25519PrivateKey
    self_seed: bytes


SEED = "seed"
"""The kind of share that rebuilds a survivor's self-mask seed ``b_u``."""

KEY = "key"
"""The kind of share that rebuilds a dropped client's mask key ``s_u^SK``."""

_KIND_WORDS = {SEED: "self-mask seed b_{u}", KEY: "mask key s_{u}^SK"}


class ShareRefused(ValueError):
    """A client refused to release a share: it already released the other kind for that
    client, and both together would unmask that client's update."""


class ShareHolder:
    """Client ``v`` as a helper in the unmasking round: its shares of every client's two
    secrets, and, per client, which kind of share it has already released.

    The server gets shares only through :meth:`answer`, which enforces Bonawitz et al.'s
    rule: for each client ``u``, release *either* a share of ``b_u`` (``u`` survived)
    *or* a share of ``s_u^SK`` (``u`` dropped), never both, across every request.

    Attributes:
        index: ``v``.
        released: ``{u: SEED or KEY}``, what ``v`` has released so far (read-only view).
    """

    def __init__(self, index: int, seed_shares: Iterable[Share], key_shares: Iterable[Share]):
        self.index = int(index)
        self._shares = {SEED: tuple(seed_shares), KEY: tuple(key_shares)}
        self._released: dict[int, str] = {}

    @property
    def released(self) -> Mapping[int, str]:
        return MappingProxyType(self._released)

    def answer(self, *, seeds: Iterable[int] = (), keys: Iterable[int] = ()
               ) -> dict[str, dict[int, Share]]:
        """One unmasking request: a share of ``b_u`` for each ``u`` in ``seeds`` (the
        survivors), a share of ``s_u^SK`` for each ``u`` in ``keys`` (the dropped).

        The whole request is checked before anything is released: a client named in both
        lists, or one whose *other* kind of share this helper released in an earlier
        request, makes it refuse everything.

        Returns:
            ``{SEED: {u: share}, KEY: {u: share}}``.

        Raises:
            ShareRefused: naming the client and the share released before.
        """
        wanted = {SEED: sorted({int(u) for u in seeds}), KEY: sorted({int(u) for u in keys})}
        n = len(self._shares[SEED])
        for u in wanted[SEED] + wanted[KEY]:
            if not 0 <= u < n:
                raise ValueError(f"client must be in [0, {n}), got {u}.")
        both = set(wanted[SEED]) & set(wanted[KEY])
        if both:
            u = min(both)
            raise ShareRefused(
                f"Client {self.index} refuses: the request asks for shares of both client "
                f"{u}'s self-mask seed and its mask key; together they unmask client {u}'s "
                "update."
            )
        for kind, other in ((SEED, KEY), (KEY, SEED)):
            for u in wanted[kind]:
                if self._released.get(u, kind) != kind:
                    raise ShareRefused(
                        f"Client {self.index} refuses to release a share of client {u}'s "
                        f"{_KIND_WORDS[kind].format(u=u)}: it already released a share of its "
                        f"{_KIND_WORDS[other].format(u=u)} in an earlier request. Both "
                        f"together would unmask client {u}'s update alone (Bonawitz et "
                        "al., CCS 2017): a server that asks for both is lying about who "
                        "dropped."
                    )
        out: dict[str, dict[int, Share]] = {SEED: {}, KEY: {}}
        for kind in (SEED, KEY):
            for u in wanted[kind]:
                self._released[u] = kind
                out[kind][u] = self._shares[kind][u]
        return out

    def __repr__(self) -> str:
        return f"ShareHolder(index={self.index}, released={self._released})"


class SecAggState(NamedTuple):
    """Everything after rounds 1-2, split by who holds it.

    Attributes:
        num_clients, threshold: ``n`` and ``t``.
        public_keys: ``s_u^PK`` for every client, broadcast (the server knows them).
        secrets: ``secrets[u]``, held by client ``u`` only.
        holders: ``holders[v]``, client ``v``'s :class:`ShareHolder`: its share of every
            client's ``s_u^SK`` and ``b_u``, released only through ``answer``.
    """

    num_clients: int
    threshold: int
    public_keys: tuple[X25519PublicKey, ...]
    secrets: tuple[ClientSecrets, ...]
    holders: tuple[ShareHolder, ...]


def _to_int(secret: bytes) -> int:
    return int.from_bytes(secret, "big")


def _to_bytes(value: int) -> bytes:
    return value.to_bytes(_SECRET_BYTES, "big")


def _key_bytes(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def setup(num_clients: int, threshold: int, *, seed: int | None = None,
          allow_minority_threshold: bool = False) -> SecAggState:
    """Rounds 1-2 for one aggregation round: key pairs, broadcast, Shamir shares.

    Client ``u`` draws its X25519 mask key ``s_u^SK`` (32 random bytes) and its
    self-mask seed ``b_u`` (32 random bytes), publishes ``s_u^PK``, and gives every
    client ``v`` (itself included) one ``t``-of-``n`` share of each secret, read as an
    integer in GF(``PRIME``).

    Args:
        num_clients: ``n >= 2``.
        threshold: ``t`` with ``n / 2 < t <= n``: any ``t`` clients can rebuild a
            secret, fewer learn nothing. Against a server that lies about who dropped,
            the paper takes ``t > n / 2``, so that two disjoint groups of ``t`` clients
            (one giving key shares, one seed shares of the same client) cannot exist.
        seed: ``None`` for real use (``os.urandom``); an int for reproducible teaching
            runs and tests only (see ``random_bytes``).
        allow_minority_threshold: accept ``t <= n / 2`` (to demonstrate the attack it
            permits). At ``t = 1`` the polynomial is the constant ``f(x) = secret``:
            every share *is* the secret, so any one client can unmask any other.

    Raises:
        ValueError: for ``n < 2``, ``t`` outside ``[1, n]``, or ``t <= n / 2`` without
            ``allow_minority_threshold=True``.

        >>> setup(5, 3, seed=0).threshold
        3
        >>> setup(5, 1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: setup refuses the threshold t=1 for n=5 clients: ... (t >= 3)...
    """
    n, t = int(num_clients), int(threshold)
    if n < 2:
        raise ValueError(f"Secure aggregation needs at least 2 clients, got {n}.")
    if not 1 <= t <= n:
        raise ValueError(f"setup needs a threshold 1 <= t <= num_clients = {n}, got t={t}.")
    if 2 * t <= n and not allow_minority_threshold:
        one = (" At t = 1 it is worse: the sharing polynomial is the constant f(x) = secret, "
               "so every share IS the secret and any one client can unmask any other."
               if t == 1 else "")
        raise ValueError(
            f"setup refuses the threshold t={t} for n={n} clients: it must exceed n/2 "
            f"(t >= {n // 2 + 1}). With t <= n/2 two disjoint groups of t clients exist, so a "
            "server that lies about who dropped can collect client u's self-mask seed from "
            "one group and its mask key from the other, and unmask u's update." + one +
            " Pass allow_minority_threshold=True to run it anyway (for a demonstration)."
        )
    rng = random_bytes(seed)
    secrets = tuple(
        ClientSecrets(X25519PrivateKey.from_private_bytes(rng(_SECRET_BYTES)), rng(_SECRET_BYTES))
        for _ in range(n)
    )
    public_keys = tuple(s.mask_key.public_key() for s in secrets)
    # key_shares[u][v] is client v's share of s_u^SK; seed_shares[u][v] its share of b_u.
    key_shares = [share(_to_int(_key_bytes(s.mask_key)), threshold=t, num_shares=n, rng=rng)
                  for s in secrets]
    seed_shares = [share(_to_int(s.self_seed), threshold=t, num_shares=n, rng=rng)
                   for s in secrets]
    holders = tuple(ShareHolder(v, (seed_shares[u][v] for u in range(n)),
                                (key_shares[u][v] for u in range(n))) for v in range(n))
    return SecAggState(n, t, public_keys, secrets, holders)


# --------------------------------------------------------------------------------------
# Round 3: masking (client side)
# --------------------------------------------------------------------------------------


def _check_client(client: int, state: SecAggState) -> int:
    if not 0 <= int(client) < state.num_clients:
        raise ValueError(f"client must be in [0, {state.num_clients}), got {client}.")
    return int(client)


def self_mask(client: int, state: SecAggState, length: int) -> np.ndarray:
    """``PRG(b_u)``: client ``u``'s own mask."""
    u = _check_client(client, state)
    return prg(state.secrets[u].self_seed, length)


def _pair_mask(s_uv: bytes, u: int, v: int, length: int) -> np.ndarray:
    """Client ``u``'s term for the pair ``(u, v)``: ``+PRG(s_uv)`` if ``v > u``, else ``-``."""
    term = prg(s_uv, length)
    return term if v > u else np.negative(term)  # negation mod 2**32


def pairwise_mask(client: int, state: SecAggState, length: int) -> np.ndarray:
    """``Σ_{v>u} PRG(s_uv) - Σ_{v<u} PRG(s_uv)`` (mod 2**32): client ``u``'s pairwise masks.

    Summed over all clients these are 0: each ``PRG(s_uv)`` appears once with each sign.
    """
    u = _check_client(client, state)
    total = np.zeros(length, np.uint32)
    for v in range(state.num_clients):
        if v != u:
            s_uv = agree(state.secrets[u].mask_key, state.public_keys[v])
            total += _pair_mask(s_uv, u, v, length)
    return total


def mask(encoded: np.ndarray, client: int, state: SecAggState) -> np.ndarray:
    """Client ``u``'s message: ``y_u = x_u + PRG(b_u) + pairwise_mask(u)`` (mod 2**32).

    Args:
        encoded: ``x_u``, the uint32 vector from ``encode``.
    """
    x = np.asarray(encoded)
    if x.dtype != np.uint32 or x.ndim != 1:
        raise TypeError(
            f"mask expects the flat uint32 vector from secagg.encode, got dtype {x.dtype} "
            f"and shape {x.shape}."
        )
    return x + self_mask(client, state, x.size) + pairwise_mask(client, state, x.size)


# --------------------------------------------------------------------------------------
# Round 4: unmasking (server side)
# --------------------------------------------------------------------------------------


class Aggregate(NamedTuple):
    """What the server obtains.

    Attributes:
        total: ``Σ_{u in survivors} x_u`` (mod 2**32), a uint32 vector.
        survivors: the clients whose masked update was received, in order.
        dropped: the clients whose masked update never arrived.
    """

    total: np.ndarray
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]


def _collect(state: SecAggState, helpers: tuple[int, ...], survivors: tuple[int, ...],
             dropped: tuple[int, ...]) -> dict[str, dict[int, list[Share]]]:
    """The server's request: ``t`` helpers each answer for every survivor (a share of
    ``b_u``) and every dropped client (a share of ``s_u^SK``), through
    :meth:`ShareHolder.answer`, which refuses a kind it has not released before for
    that client (:class:`ShareRefused`)."""
    out: dict[str, dict[int, list[Share]]] = {SEED: {u: [] for u in survivors},
                                              KEY: {u: [] for u in dropped}}
    for v in helpers[:state.threshold]:
        answer = state.holders[v].answer(seeds=survivors, keys=dropped)
        for kind in (SEED, KEY):
            for u, s in answer[kind].items():
                out[kind][u].append(s)
    return out


def aggregate(masked: Mapping[int, np.ndarray], state: SecAggState, *,
              offline: Iterable[int] = ()) -> Aggregate:
    """The server's unmasking round: the exact sum of the survivors' encoded updates.

    Survivors ``U`` are the clients in ``masked``; every other client dropped before
    sending. The server asks the clients still online (``U`` minus ``offline``) for

    * a share of ``b_u`` for each survivor ``u``: it rebuilds ``b_u``, removes ``PRG(b_u)``;
    * a share of ``s_u^SK`` for each dropped ``u``: it rebuilds the key and removes, from
      every survivor ``v``, the term ``±PRG(s_uv)`` that ``v`` added for the pair.

    What remains is ``Σ_{u in U} x_u``; the pairwise masks among survivors cancelled.

    Args:
        masked: ``{u: y_u}`` for the masked updates that arrived.
        state: from ``setup``.
        offline: survivors that went offline after sending ``y_u``; their update is
            still counted, but they answer no requests for shares.

    The state remembers what each helper released: calling ``aggregate`` again on the
    same state with another survivor set (e.g. "client 0 dropped" after "everyone
    survived") asks helpers for the other kind of share of some client, and they refuse.

    Raises:
        ValueError: if fewer than ``t`` masked updates arrived, or fewer than ``t``
            clients are left to answer: the protocol aborts.
        ShareRefused: a helper was asked for a share of a client whose other kind of
            share it released before (in an earlier ``aggregate`` on this state).
    """
    n, t = state.num_clients, state.threshold
    survivors = tuple(sorted(int(u) for u in masked))
    for u in survivors:
        _check_client(u, state)
    dropped = tuple(u for u in range(n) if u not in masked)
    offline = {int(u) for u in offline}
    if not offline <= set(survivors):
        raise ValueError(f"offline clients must be survivors (clients in masked), got {offline}.")
    helpers = tuple(u for u in survivors if u not in offline)
    if len(survivors) < t or len(helpers) < t:
        raise ValueError(
            f"Secure aggregation aborts: {len(survivors)} masked updates arrived and "
            f"{len(helpers)} clients answer the unmasking round, but the threshold is t={t}. "
            "Fewer than t shares cannot rebuild any secret."
        )
    vectors = [np.asarray(masked[u]) for u in survivors]
    length = vectors[0].size
    if any(y.dtype != np.uint32 or y.shape != (length,) for y in vectors):
        raise ValueError("aggregate expects uint32 vectors of one common length from mask().")

    total = np.zeros(length, np.uint32)
    for y in vectors:
        total += y
    shares = _collect(state, helpers, survivors, dropped)
    for u in survivors:  # remove the self masks
        b_u = _to_bytes(reconstruct(shares[SEED][u]))
        total -= prg(b_u, length)
    for u in dropped:  # remove the pairwise masks the survivors shared with u
        key = X25519PrivateKey.from_private_bytes(_to_bytes(reconstruct(shares[KEY][u])))
        for v in survivors:
            total -= _pair_mask(agree(key, state.public_keys[v]), v, u, length)
    return Aggregate(total, survivors, dropped)


# --------------------------------------------------------------------------------------
# The whole round
# --------------------------------------------------------------------------------------


class SecureSum(NamedTuple):
    """``secure_sum``'s result: the decoded sum and who took part."""

    total: object
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]


def secure_sum(updates, *, threshold: int, dropped: Iterable[int] = (),
               offline: Iterable[int] = (), scale: float = 2**16,
               seed: int | None = None, allow_minority_threshold: bool = False) -> SecureSum:
    """One full round: encode, set up, mask, drop, aggregate, decode.

    Args:
        updates: a list of pytrees of one structure, one per client.
        threshold: ``t``.
        dropped: clients whose masked update never reaches the server.
        offline: clients that send it and then go offline (see ``aggregate``).
        scale: fixed-point scale of ``encode``.
        seed: ``None`` for ``os.urandom``; an int for teaching and tests only.
        allow_minority_threshold: accept ``t <= n / 2`` (see ``setup``).

    Returns:
        ``SecureSum(total, survivors, dropped)`` with ``total`` the sum of the survivors'
        quantised updates, as a pytree like each update.
    """
    n = len(updates)
    encoded = [encode(x, scale=scale, max_clients=n) for x in updates]
    state = setup(n, threshold, seed=seed, allow_minority_threshold=allow_minority_threshold)
    gone = {int(u) for u in dropped}
    masked = {u: mask(x, u, state) for u, (x, _) in enumerate(encoded) if u not in gone}
    result = aggregate(masked, state, offline=offline)
    total = decode(result.total, encoded[0][1], num_clients=max(len(result.survivors), 1))
    return SecureSum(total, result.survivors, result.dropped)
