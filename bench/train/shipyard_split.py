"""Shipyard's held-out split (crates/train/src/split.rs), reproduced in Python.

`shipyard train` splits with `ChaCha8Rng::seed_from_u64(seed)` (rand 0.10 / chacha20 0.10) and,
per class in label order, `SliceRandom::shuffle` of the class's rows, the first `quota` of them
going to the test side. This module replays the same random stream, so scikit-learn and LightGBM
can be given exactly the rows Shipyard trains and evaluates on. bench.py checks the result against
the training profile Shipyard records (count, mean and M2 of a row-id column), so a drift in the
Rust side is caught rather than silently giving different rows.
"""
import math

MASK = 0xFFFFFFFF


def _pcg32(state):
    state = (state * 0x5851F42D4C957F2D + 0xA17654E46FBE17F3) & 0xFFFFFFFFFFFFFFFF
    xorshifted = (((state >> 18) ^ state) >> 27) & MASK
    rot = state >> 59
    return state, ((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & MASK


class ChaCha8:
    """rand's ChaCha8Rng: 64-bit block counter in words 12-13, stream 0, keystream words in order."""

    def __init__(self, seed):
        state, key = seed & 0xFFFFFFFFFFFFFFFF, []
        for _ in range(8):  # rand_core's seed_from_u64: the 32-byte seed from PCG32, little endian
            state, word = _pcg32(state)
            key.append(word)
        self.key = key
        self.counter = 0
        self.buf, self.pos = [], 0

    def _block(self):
        x = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *self.key,
             self.counter & MASK, self.counter >> 32, 0, 0]
        init = list(x)

        def qr(a, b, c, d):
            x[a] = (x[a] + x[b]) & MASK; t = x[d] ^ x[a]; x[d] = ((t << 16) | (t >> 16)) & MASK
            x[c] = (x[c] + x[d]) & MASK; t = x[b] ^ x[c]; x[b] = ((t << 12) | (t >> 20)) & MASK
            x[a] = (x[a] + x[b]) & MASK; t = x[d] ^ x[a]; x[d] = ((t << 8) | (t >> 24)) & MASK
            x[c] = (x[c] + x[d]) & MASK; t = x[b] ^ x[c]; x[b] = ((t << 7) | (t >> 25)) & MASK

        for _ in range(4):  # 8 rounds = 4 double rounds
            qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
            qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
        self.counter += 1
        return [(a + b) & MASK for a, b in zip(x, init)]

    def next_u32(self):
        if self.pos == len(self.buf):
            self.buf, self.pos = self._block(), 0
        v = self.buf[self.pos]
        self.pos += 1
        return v


def _below(rng, bound):
    """rand 0.10's `random_range(..bound)` for u32 (the default, biased-by-2^-32 Canon sampler)."""
    m = rng.next_u32() * bound
    result, lo = m >> 32, m & MASK
    if lo > ((-bound) & MASK):
        hi2 = (rng.next_u32() * bound) >> 32
        if lo + hi2 > MASK:
            result += 1
    return result


def shuffle(items, rng):
    """rand 0.10's `SliceRandom::shuffle` (Fisher-Yates driven by IncreasingUniform), in place."""
    if len(items) <= 1:
        return
    n, chunk, remaining = 0, 0, 1  # IncreasingUniform::new(rng, 0)
    for i in range(len(items)):
        next_n = n + 1
        if remaining == 0:
            bound, count, current = next_n, 1, next_n + 1
            while bound * current <= MASK:
                bound *= current
                current += 1
            count = current - next_n
            chunk = _below(rng, bound)
            remaining = count
        remaining -= 1
        if remaining == 0:
            index = chunk
        else:
            index = chunk % next_n
            chunk //= next_n
        n = next_n
        items[i], items[index] = items[index], items[i]


def proportional_quotas(sizes, total):
    n = sum(sizes)
    exact = [s * total / n for s in sizes]
    quotas = [math.floor(e) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - math.floor(exact[i])), -sizes[i], i))
    left = total - sum(quotas)
    for i in (order * 2):
        if left == 0:
            break
        if quotas[i] < sizes[i]:
            quotas[i] += 1
            left -= 1
    return quotas


def train_test_split(codes, n_classes, test_size=0.2, seed=42):
    """Train and test row indices (ascending) for class codes 0..n_classes-1 in Shipyard's label
    order (numeric order for integer targets)."""
    n = len(codes)
    n_test = math.ceil(test_size * n)
    groups = [[] for _ in range(n_classes)]
    for row, c in enumerate(codes):
        groups[c].append(row)
    quotas = proportional_quotas([len(g) for g in groups], n_test)
    rng = ChaCha8(seed)
    train, test = [], []
    for group, quota in zip(groups, quotas):
        shuffle(group, rng)
        test.extend(group[:quota])
        train.extend(group[quota:])
    return sorted(train), sorted(test)
