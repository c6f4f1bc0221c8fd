"""MinHash signatures and LSH banding, the same numbers datasketch 2.x computes, without datasketch.

Why: `import datasketch` imports every sketch it has, and its LSH module imports
scipy.integrate for one integral: about 0.5 s and 55 MB of a run on these cores, for two
small computations. Both are done here with numpy alone, bit for bit as datasketch 2.0
does them for its default scheme "affine32" (tests/test_filters.py compares them with
datasketch where it is installed):

- a signature: each shingle's SHA-1 (first 4 bytes, little-endian), mixed once by the
  MurmurHash3 finalizer, then per permutation k `a_k * h + b_k mod 2**32` (a_k odd, from
  numpy's RandomState(seed)); the signature is the minimum over the shingles;
- the banding: the (b bands, r rows) with b * r <= num_perm that minimise the mean of the
  false-positive and false-negative probability masses around the threshold. The integrand
  is a polynomial of degree b * r, so a Gauss-Legendre rule of more than num_perm / 2 points
  integrates it exactly (datasketch's adaptive quadrature agrees to ~1e-14).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

_M1, _M2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)


@functools.lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 parameters (a odd, b) for `num_perm` permutations."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def signature(grams: list[bytes], num_perm: int, seed: int) -> np.ndarray:
    """The MinHash signature (uint32, one value per permutation) of a non-empty shingle set."""
    return signatures([grams], num_perm, seed)[0]


def signatures(shingle_sets: list[list[bytes]], num_perm: int, seed: int) -> np.ndarray:
    """The signatures of many non-empty shingle sets, one row each, in one pass of numpy: per
    row, the same numbers as `signature`. Why: numpy's cost per call, not the arithmetic, set the
    price of one row at a time (about 50 µs a row, a tenth of a 2000-row run's tail)."""
    if not shingle_sets:
        return np.zeros((0, num_perm), dtype=np.uint32)
    a, b = permutations(num_perm, seed)
    counts = [len(grams) for grams in shingle_sets]
    hv = np.fromiter(
        (int.from_bytes(hashlib.sha1(gram).digest()[:4], "little") for grams in shingle_sets for gram in grams),
        dtype=np.uint32,
        count=sum(counts),
    ).reshape(-1, 1)
    starts = np.concatenate(([0], np.cumsum(counts[:-1], dtype=np.int64)))
    with np.errstate(over="ignore"):  # wrap-around is the modulo 2**32
        hv = hv ^ (hv >> np.uint32(16))
        hv = hv * _M1
        hv = hv ^ (hv >> np.uint32(13))
        hv = hv * _M2
        hv = hv ^ (hv >> np.uint32(16))
        return np.minimum.reduceat(hv * a + b, starts, axis=0)


@functools.lru_cache(maxsize=64)
def banding(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) for `threshold`, as datasketch's MinHashLSH chooses them with
    equal weights; ValueError where that is fewer than 2 bands (datasketch refuses those too)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError("threshold must be in [0.0, 1.0]")
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 2)

    def mass(low: float, high: float, values) -> np.ndarray:
        half = (high - low) / 2
        s = low + half * (nodes + 1)
        return half * (values(s[None, :]) @ weights)

    pairs = [(b, r) for b in range(1, num_perm + 1) for r in range(1, num_perm // b + 1)]
    bs = np.array([p[0] for p in pairs], dtype=float)[:, None]
    rs = np.array([p[1] for p in pairs], dtype=float)[:, None]
    fp = mass(0.0, threshold, lambda s: 1 - (1 - s**rs) ** bs)
    fn = mass(threshold, 1.0, lambda s: (1 - s**rs) ** bs)
    error = fp * 0.5 + fn * 0.5
    best = min(range(len(pairs)), key=lambda i: (error[i], i))  # the first minimum, as datasketch's loop
    b, r = pairs[best]
    if b < 2:
        raise ValueError("The number of bands are too small (b < 2)")
    return b, r
