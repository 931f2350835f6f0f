"""Counter-based random numbers (Philox4x32-10) in torch, bit-identical to the CUDA kernels.

LocalZO draws fresh noise on every forward pass. On the GPU the noise is generated inside the
kernel from a counter-based generator: a pure function of ``(key, counter)``, so no generator
state lives on the device and every element can be drawn by its own thread. This module is the
torch twin of ``philox4x32_10`` in ``cupy_neurons/sparse/philox.cuh`` (the same algorithm, the
same counter layout), so that ``rng: philox`` on the torch path draws exactly the numbers the
kernels draw. It is slow on the CPU (about 200 integer tensor ops per block of four words); the
default torch path uses ``torch.rand`` with a ``torch.Generator`` instead.

Philox4x32-10 (Salmon et al., SC 2011): a 128-bit counter ``(c0, c1, c2, c3)`` and a 64-bit key
``(k0, k1)``; ten rounds of::

    (hi0, lo0) = M0 * c0            (full 64-bit product of two 32-bit words)
    (hi1, lo1) = M1 * c2
    c = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
    k = (k0 + W0, k1 + W1)          (mod 2^32; the key is bumped after every round but the last)

with ``M0 = 0xD2511F53``, ``M1 = 0xCD9E8D57``, ``W0 = 0x9E3779B9``, ``W1 = 0xBB67AE85``.

Words live in int64 tensors holding values in ``[0, 2^32)``; products are split into 16-bit
halves so no intermediate exceeds 2^49 (no reliance on integer overflow).

Counter layout used by sjframe (element ``n`` of a flat tensor, noise stream ``s``):
``counter = (n >> 2 low 32 bits, n >> 34, s, 0)``, and the element takes word ``n & 3``.
"""

from __future__ import annotations

import torch

__all__ = ["MASK32", "philox4x32_10", "philox_uniform", "philox_words", "split_key"]

MASK32 = 0xFFFFFFFF
_M0 = 0xD2511F53
_M1 = 0xCD9E8D57
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit words of ``a * m`` (``a`` int64 in ``[0, 2^32)``, ``m`` a 32-bit constant)."""
    m_lo, m_hi = m & 0xFFFF, m >> 16
    x = a * m_lo  # < 2^48
    y = a * m_hi  # < 2^48; the product is x + y * 2^16
    s = (x & MASK32) + ((y & 0xFFFF) << 16)  # < 2^33
    lo = s & MASK32
    hi = (x >> 32) + (y >> 16) + (s >> 32)
    return hi, lo


def philox4x32_10(
    c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, k0: int, k1: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32-10 of the counter words ``c0..c3`` (int64 tensors in ``[0, 2^32)``) under key ``(k0, k1)``."""
    for name, key in (("k0", k0), ("k1", k1)):
        if not (isinstance(key, int) and 0 <= key <= MASK32):
            raise ValueError(f"philox key word {name} must be an int in [0, 2^32), got {key!r}")
    for rnd in range(10):
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if rnd < 9:
            k0 = (k0 + _W0) & MASK32
            k1 = (k1 + _W1) & MASK32
    return c0, c1, c2, c3


def split_key(key: int) -> tuple[int, int]:
    """A 64-bit key as the two 32-bit words ``(low, high)``."""
    if not (isinstance(key, int) and 0 <= key < 2**64):
        raise ValueError(f"philox key must be an int in [0, 2^64), got {key!r}")
    return key & MASK32, key >> 32


def philox_words(numel: int, key: int, stream: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """One 32-bit word (int64 tensor ``[numel]``) per element ``n`` of a flat tensor, stream ``stream``.

    Element ``n`` takes word ``n & 3`` of ``philox(counter=(n >> 2 (low 32), n >> 34, stream, 0), key)``.
    Only ``ceil(numel / 4)`` Philox blocks are computed.
    """
    if numel < 0:
        raise ValueError(f"numel must be >= 0, got {numel}")
    if not (isinstance(stream, int) and 0 <= stream <= MASK32):
        raise ValueError(f"stream must be an int in [0, 2^32), got {stream!r}")
    k0, k1 = split_key(key)
    blocks = (numel + 3) // 4
    ctr = torch.arange(blocks, dtype=torch.int64, device=device)
    zeros = torch.zeros_like(ctr)
    words = philox4x32_10(ctr & MASK32, ctr >> 32, torch.full_like(ctr, stream), zeros, k0, k1)
    return torch.stack(words, dim=1).reshape(-1)[:numel]


def philox_uniform(numel: int, key: int, stream: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform float32 in ``(0, 1)``: ``((word >> 9) + 0.5) * 2^-23`` (exact in float32; never 0 or 1)."""
    words = philox_words(numel, key, stream, device)
    return ((words >> 9).to(torch.float32) + 0.5) * (2.0**-23)
