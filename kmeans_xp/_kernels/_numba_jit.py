"""numba kernels of the fused CPU path (see ``numba.py``): importing this
module imports numba, so only ``numba.py`` does, on first use.

Centres come prepared: ``Ct`` of shape (n_features, k_pad), ``-2 C^T``
padded with zero columns to a multiple of 8, and ``csq`` of shape
(k_pad,), ``||c||^2`` padded with +inf (padded centres never win). Scores
are ``csq[j] + x.Ct[:, j]``: the ``||c||^2 - 2 x.c`` of ``Kernels.assign``.
Products are summed feature by feature in X's dtype, the same order for
every row (tiles and leftover rows alike), so a row's label does not
depend on where it sits. Cluster sums, weights and inertia are float64.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Rows and centres per register tile (``_tile``; ``_tile16`` has twice
#: the centres, for more than 8 centres).
TILE_ROWS = 4
TILE_CENTERS = 8
#: Rows labelled at a time by the fused Lloyd step before they are summed.
SUB_ROWS = 256


# Written out (by a script, not by hand), one scalar per (row, centre):
# with SLP vectorisation (see ``_fused._compiled``) LLVM packs each row's
# accumulators into vector registers and keeps the whole tile in registers
# for the loop over features; numba's loop vectorizer alone keeps them in
# memory (a load and a store per multiply-add, 5x slower on (200k, 32, 64)).
# 4 x 16 tiles keep 8 independent multiply-add chains, enough to hide the
# FMA latency, and ran 1.4x faster than 4 x 8 on (200k, 32, 64), one core;
# 4 x 8 stays for k <= 8 (no padding to 16).

@njit(inline="always", boundscheck=False, fastmath={"contract"})
def _tile(X, i, Ct, j0, csq, d):
    """Rows ``i:i+4`` against centres ``j0:j0+8``: each row's lowest
    ``csq[j] + x.Ct[:, j]`` and its ``j`` (the first on ties), as
    ``(b0, l0, b1, l1, b2, l2, b3, l3)``."""
    # Indices as unsigned integers: numba then emits no negative-index
    # wraparound, and the eight loads of a row of Ct are seen as one vector.
    u = np.uint64(j0)
    ui = np.uint64(i)
    x0 = X[ui + np.uint64(0), 0]
    x1 = X[ui + np.uint64(1), 0]
    x2 = X[ui + np.uint64(2), 0]
    x3 = X[ui + np.uint64(3), 0]
    c0 = Ct[0, u + np.uint64(0)]
    c1 = Ct[0, u + np.uint64(1)]
    c2 = Ct[0, u + np.uint64(2)]
    c3 = Ct[0, u + np.uint64(3)]
    c4 = Ct[0, u + np.uint64(4)]
    c5 = Ct[0, u + np.uint64(5)]
    c6 = Ct[0, u + np.uint64(6)]
    c7 = Ct[0, u + np.uint64(7)]
    a00 = x0 * c0
    a01 = x0 * c1
    a02 = x0 * c2
    a03 = x0 * c3
    a04 = x0 * c4
    a05 = x0 * c5
    a06 = x0 * c6
    a07 = x0 * c7
    a10 = x1 * c0
    a11 = x1 * c1
    a12 = x1 * c2
    a13 = x1 * c3
    a14 = x1 * c4
    a15 = x1 * c5
    a16 = x1 * c6
    a17 = x1 * c7
    a20 = x2 * c0
    a21 = x2 * c1
    a22 = x2 * c2
    a23 = x2 * c3
    a24 = x2 * c4
    a25 = x2 * c5
    a26 = x2 * c6
    a27 = x2 * c7
    a30 = x3 * c0
    a31 = x3 * c1
    a32 = x3 * c2
    a33 = x3 * c3
    a34 = x3 * c4
    a35 = x3 * c5
    a36 = x3 * c6
    a37 = x3 * c7
    for f in range(1, d):
        x0 = X[ui + np.uint64(0), f]
        x1 = X[ui + np.uint64(1), f]
        x2 = X[ui + np.uint64(2), f]
        x3 = X[ui + np.uint64(3), f]
        c0 = Ct[f, u + np.uint64(0)]
        c1 = Ct[f, u + np.uint64(1)]
        c2 = Ct[f, u + np.uint64(2)]
        c3 = Ct[f, u + np.uint64(3)]
        c4 = Ct[f, u + np.uint64(4)]
        c5 = Ct[f, u + np.uint64(5)]
        c6 = Ct[f, u + np.uint64(6)]
        c7 = Ct[f, u + np.uint64(7)]
        a00 += x0 * c0
        a01 += x0 * c1
        a02 += x0 * c2
        a03 += x0 * c3
        a04 += x0 * c4
        a05 += x0 * c5
        a06 += x0 * c6
        a07 += x0 * c7
        a10 += x1 * c0
        a11 += x1 * c1
        a12 += x1 * c2
        a13 += x1 * c3
        a14 += x1 * c4
        a15 += x1 * c5
        a16 += x1 * c6
        a17 += x1 * c7
        a20 += x2 * c0
        a21 += x2 * c1
        a22 += x2 * c2
        a23 += x2 * c3
        a24 += x2 * c4
        a25 += x2 * c5
        a26 += x2 * c6
        a27 += x2 * c7
        a30 += x3 * c0
        a31 += x3 * c1
        a32 += x3 * c2
        a33 += x3 * c3
        a34 += x3 * c4
        a35 += x3 * c5
        a36 += x3 * c6
        a37 += x3 * c7
    b0 = a00 + csq[j0]
    l0 = j0
    v = a01 + csq[j0 + 1]
    if v < b0:
        b0, l0 = v, j0 + 1
    v = a02 + csq[j0 + 2]
    if v < b0:
        b0, l0 = v, j0 + 2
    v = a03 + csq[j0 + 3]
    if v < b0:
        b0, l0 = v, j0 + 3
    v = a04 + csq[j0 + 4]
    if v < b0:
        b0, l0 = v, j0 + 4
    v = a05 + csq[j0 + 5]
    if v < b0:
        b0, l0 = v, j0 + 5
    v = a06 + csq[j0 + 6]
    if v < b0:
        b0, l0 = v, j0 + 6
    v = a07 + csq[j0 + 7]
    if v < b0:
        b0, l0 = v, j0 + 7
    b1 = a10 + csq[j0]
    l1 = j0
    v = a11 + csq[j0 + 1]
    if v < b1:
        b1, l1 = v, j0 + 1
    v = a12 + csq[j0 + 2]
    if v < b1:
        b1, l1 = v, j0 + 2
    v = a13 + csq[j0 + 3]
    if v < b1:
        b1, l1 = v, j0 + 3
    v = a14 + csq[j0 + 4]
    if v < b1:
        b1, l1 = v, j0 + 4
    v = a15 + csq[j0 + 5]
    if v < b1:
        b1, l1 = v, j0 + 5
    v = a16 + csq[j0 + 6]
    if v < b1:
        b1, l1 = v, j0 + 6
    v = a17 + csq[j0 + 7]
    if v < b1:
        b1, l1 = v, j0 + 7
    b2 = a20 + csq[j0]
    l2 = j0
    v = a21 + csq[j0 + 1]
    if v < b2:
        b2, l2 = v, j0 + 1
    v = a22 + csq[j0 + 2]
    if v < b2:
        b2, l2 = v, j0 + 2
    v = a23 + csq[j0 + 3]
    if v < b2:
        b2, l2 = v, j0 + 3
    v = a24 + csq[j0 + 4]
    if v < b2:
        b2, l2 = v, j0 + 4
    v = a25 + csq[j0 + 5]
    if v < b2:
        b2, l2 = v, j0 + 5
    v = a26 + csq[j0 + 6]
    if v < b2:
        b2, l2 = v, j0 + 6
    v = a27 + csq[j0 + 7]
    if v < b2:
        b2, l2 = v, j0 + 7
    b3 = a30 + csq[j0]
    l3 = j0
    v = a31 + csq[j0 + 1]
    if v < b3:
        b3, l3 = v, j0 + 1
    v = a32 + csq[j0 + 2]
    if v < b3:
        b3, l3 = v, j0 + 2
    v = a33 + csq[j0 + 3]
    if v < b3:
        b3, l3 = v, j0 + 3
    v = a34 + csq[j0 + 4]
    if v < b3:
        b3, l3 = v, j0 + 4
    v = a35 + csq[j0 + 5]
    if v < b3:
        b3, l3 = v, j0 + 5
    v = a36 + csq[j0 + 6]
    if v < b3:
        b3, l3 = v, j0 + 6
    v = a37 + csq[j0 + 7]
    if v < b3:
        b3, l3 = v, j0 + 7
    return b0, l0, b1, l1, b2, l2, b3, l3


@njit(inline="always", boundscheck=False, fastmath={"contract"})
def _tile16(X, i, Ct, j0, csq, d):
    """Rows ``i:i+4`` against centres ``j0:j0+16``: each row's lowest
    ``csq[j] + x.Ct[:, j]`` and its ``j`` (the first on ties), as
    ``(b0, l0, b1, l1, b2, l2, b3, l3)`` (``_tile`` with 16 centres)."""
    u = np.uint64(j0)
    ui = np.uint64(i)
    x0 = X[ui + np.uint64(0), 0]
    x1 = X[ui + np.uint64(1), 0]
    x2 = X[ui + np.uint64(2), 0]
    x3 = X[ui + np.uint64(3), 0]
    c0 = Ct[0, u + np.uint64(0)]
    c1 = Ct[0, u + np.uint64(1)]
    c2 = Ct[0, u + np.uint64(2)]
    c3 = Ct[0, u + np.uint64(3)]
    c4 = Ct[0, u + np.uint64(4)]
    c5 = Ct[0, u + np.uint64(5)]
    c6 = Ct[0, u + np.uint64(6)]
    c7 = Ct[0, u + np.uint64(7)]
    c8 = Ct[0, u + np.uint64(8)]
    c9 = Ct[0, u + np.uint64(9)]
    c10 = Ct[0, u + np.uint64(10)]
    c11 = Ct[0, u + np.uint64(11)]
    c12 = Ct[0, u + np.uint64(12)]
    c13 = Ct[0, u + np.uint64(13)]
    c14 = Ct[0, u + np.uint64(14)]
    c15 = Ct[0, u + np.uint64(15)]
    a0_0 = x0 * c0
    a0_1 = x0 * c1
    a0_2 = x0 * c2
    a0_3 = x0 * c3
    a0_4 = x0 * c4
    a0_5 = x0 * c5
    a0_6 = x0 * c6
    a0_7 = x0 * c7
    a0_8 = x0 * c8
    a0_9 = x0 * c9
    a0_10 = x0 * c10
    a0_11 = x0 * c11
    a0_12 = x0 * c12
    a0_13 = x0 * c13
    a0_14 = x0 * c14
    a0_15 = x0 * c15
    a1_0 = x1 * c0
    a1_1 = x1 * c1
    a1_2 = x1 * c2
    a1_3 = x1 * c3
    a1_4 = x1 * c4
    a1_5 = x1 * c5
    a1_6 = x1 * c6
    a1_7 = x1 * c7
    a1_8 = x1 * c8
    a1_9 = x1 * c9
    a1_10 = x1 * c10
    a1_11 = x1 * c11
    a1_12 = x1 * c12
    a1_13 = x1 * c13
    a1_14 = x1 * c14
    a1_15 = x1 * c15
    a2_0 = x2 * c0
    a2_1 = x2 * c1
    a2_2 = x2 * c2
    a2_3 = x2 * c3
    a2_4 = x2 * c4
    a2_5 = x2 * c5
    a2_6 = x2 * c6
    a2_7 = x2 * c7
    a2_8 = x2 * c8
    a2_9 = x2 * c9
    a2_10 = x2 * c10
    a2_11 = x2 * c11
    a2_12 = x2 * c12
    a2_13 = x2 * c13
    a2_14 = x2 * c14
    a2_15 = x2 * c15
    a3_0 = x3 * c0
    a3_1 = x3 * c1
    a3_2 = x3 * c2
    a3_3 = x3 * c3
    a3_4 = x3 * c4
    a3_5 = x3 * c5
    a3_6 = x3 * c6
    a3_7 = x3 * c7
    a3_8 = x3 * c8
    a3_9 = x3 * c9
    a3_10 = x3 * c10
    a3_11 = x3 * c11
    a3_12 = x3 * c12
    a3_13 = x3 * c13
    a3_14 = x3 * c14
    a3_15 = x3 * c15
    for f in range(1, d):
        x0 = X[ui + np.uint64(0), f]
        x1 = X[ui + np.uint64(1), f]
        x2 = X[ui + np.uint64(2), f]
        x3 = X[ui + np.uint64(3), f]
        c0 = Ct[f, u + np.uint64(0)]
        c1 = Ct[f, u + np.uint64(1)]
        c2 = Ct[f, u + np.uint64(2)]
        c3 = Ct[f, u + np.uint64(3)]
        c4 = Ct[f, u + np.uint64(4)]
        c5 = Ct[f, u + np.uint64(5)]
        c6 = Ct[f, u + np.uint64(6)]
        c7 = Ct[f, u + np.uint64(7)]
        c8 = Ct[f, u + np.uint64(8)]
        c9 = Ct[f, u + np.uint64(9)]
        c10 = Ct[f, u + np.uint64(10)]
        c11 = Ct[f, u + np.uint64(11)]
        c12 = Ct[f, u + np.uint64(12)]
        c13 = Ct[f, u + np.uint64(13)]
        c14 = Ct[f, u + np.uint64(14)]
        c15 = Ct[f, u + np.uint64(15)]
        a0_0 += x0 * c0
        a0_1 += x0 * c1
        a0_2 += x0 * c2
        a0_3 += x0 * c3
        a0_4 += x0 * c4
        a0_5 += x0 * c5
        a0_6 += x0 * c6
        a0_7 += x0 * c7
        a0_8 += x0 * c8
        a0_9 += x0 * c9
        a0_10 += x0 * c10
        a0_11 += x0 * c11
        a0_12 += x0 * c12
        a0_13 += x0 * c13
        a0_14 += x0 * c14
        a0_15 += x0 * c15
        a1_0 += x1 * c0
        a1_1 += x1 * c1
        a1_2 += x1 * c2
        a1_3 += x1 * c3
        a1_4 += x1 * c4
        a1_5 += x1 * c5
        a1_6 += x1 * c6
        a1_7 += x1 * c7
        a1_8 += x1 * c8
        a1_9 += x1 * c9
        a1_10 += x1 * c10
        a1_11 += x1 * c11
        a1_12 += x1 * c12
        a1_13 += x1 * c13
        a1_14 += x1 * c14
        a1_15 += x1 * c15
        a2_0 += x2 * c0
        a2_1 += x2 * c1
        a2_2 += x2 * c2
        a2_3 += x2 * c3
        a2_4 += x2 * c4
        a2_5 += x2 * c5
        a2_6 += x2 * c6
        a2_7 += x2 * c7
        a2_8 += x2 * c8
        a2_9 += x2 * c9
        a2_10 += x2 * c10
        a2_11 += x2 * c11
        a2_12 += x2 * c12
        a2_13 += x2 * c13
        a2_14 += x2 * c14
        a2_15 += x2 * c15
        a3_0 += x3 * c0
        a3_1 += x3 * c1
        a3_2 += x3 * c2
        a3_3 += x3 * c3
        a3_4 += x3 * c4
        a3_5 += x3 * c5
        a3_6 += x3 * c6
        a3_7 += x3 * c7
        a3_8 += x3 * c8
        a3_9 += x3 * c9
        a3_10 += x3 * c10
        a3_11 += x3 * c11
        a3_12 += x3 * c12
        a3_13 += x3 * c13
        a3_14 += x3 * c14
        a3_15 += x3 * c15
    b0 = a0_0 + csq[j0]
    l0 = j0
    v = a0_1 + csq[j0 + 1]
    if v < b0:
        b0, l0 = v, j0 + 1
    v = a0_2 + csq[j0 + 2]
    if v < b0:
        b0, l0 = v, j0 + 2
    v = a0_3 + csq[j0 + 3]
    if v < b0:
        b0, l0 = v, j0 + 3
    v = a0_4 + csq[j0 + 4]
    if v < b0:
        b0, l0 = v, j0 + 4
    v = a0_5 + csq[j0 + 5]
    if v < b0:
        b0, l0 = v, j0 + 5
    v = a0_6 + csq[j0 + 6]
    if v < b0:
        b0, l0 = v, j0 + 6
    v = a0_7 + csq[j0 + 7]
    if v < b0:
        b0, l0 = v, j0 + 7
    v = a0_8 + csq[j0 + 8]
    if v < b0:
        b0, l0 = v, j0 + 8
    v = a0_9 + csq[j0 + 9]
    if v < b0:
        b0, l0 = v, j0 + 9
    v = a0_10 + csq[j0 + 10]
    if v < b0:
        b0, l0 = v, j0 + 10
    v = a0_11 + csq[j0 + 11]
    if v < b0:
        b0, l0 = v, j0 + 11
    v = a0_12 + csq[j0 + 12]
    if v < b0:
        b0, l0 = v, j0 + 12
    v = a0_13 + csq[j0 + 13]
    if v < b0:
        b0, l0 = v, j0 + 13
    v = a0_14 + csq[j0 + 14]
    if v < b0:
        b0, l0 = v, j0 + 14
    v = a0_15 + csq[j0 + 15]
    if v < b0:
        b0, l0 = v, j0 + 15
    b1 = a1_0 + csq[j0]
    l1 = j0
    v = a1_1 + csq[j0 + 1]
    if v < b1:
        b1, l1 = v, j0 + 1
    v = a1_2 + csq[j0 + 2]
    if v < b1:
        b1, l1 = v, j0 + 2
    v = a1_3 + csq[j0 + 3]
    if v < b1:
        b1, l1 = v, j0 + 3
    v = a1_4 + csq[j0 + 4]
    if v < b1:
        b1, l1 = v, j0 + 4
    v = a1_5 + csq[j0 + 5]
    if v < b1:
        b1, l1 = v, j0 + 5
    v = a1_6 + csq[j0 + 6]
    if v < b1:
        b1, l1 = v, j0 + 6
    v = a1_7 + csq[j0 + 7]
    if v < b1:
        b1, l1 = v, j0 + 7
    v = a1_8 + csq[j0 + 8]
    if v < b1:
        b1, l1 = v, j0 + 8
    v = a1_9 + csq[j0 + 9]
    if v < b1:
        b1, l1 = v, j0 + 9
    v = a1_10 + csq[j0 + 10]
    if v < b1:
        b1, l1 = v, j0 + 10
    v = a1_11 + csq[j0 + 11]
    if v < b1:
        b1, l1 = v, j0 + 11
    v = a1_12 + csq[j0 + 12]
    if v < b1:
        b1, l1 = v, j0 + 12
    v = a1_13 + csq[j0 + 13]
    if v < b1:
        b1, l1 = v, j0 + 13
    v = a1_14 + csq[j0 + 14]
    if v < b1:
        b1, l1 = v, j0 + 14
    v = a1_15 + csq[j0 + 15]
    if v < b1:
        b1, l1 = v, j0 + 15
    b2 = a2_0 + csq[j0]
    l2 = j0
    v = a2_1 + csq[j0 + 1]
    if v < b2:
        b2, l2 = v, j0 + 1
    v = a2_2 + csq[j0 + 2]
    if v < b2:
        b2, l2 = v, j0 + 2
    v = a2_3 + csq[j0 + 3]
    if v < b2:
        b2, l2 = v, j0 + 3
    v = a2_4 + csq[j0 + 4]
    if v < b2:
        b2, l2 = v, j0 + 4
    v = a2_5 + csq[j0 + 5]
    if v < b2:
        b2, l2 = v, j0 + 5
    v = a2_6 + csq[j0 + 6]
    if v < b2:
        b2, l2 = v, j0 + 6
    v = a2_7 + csq[j0 + 7]
    if v < b2:
        b2, l2 = v, j0 + 7
    v = a2_8 + csq[j0 + 8]
    if v < b2:
        b2, l2 = v, j0 + 8
    v = a2_9 + csq[j0 + 9]
    if v < b2:
        b2, l2 = v, j0 + 9
    v = a2_10 + csq[j0 + 10]
    if v < b2:
        b2, l2 = v, j0 + 10
    v = a2_11 + csq[j0 + 11]
    if v < b2:
        b2, l2 = v, j0 + 11
    v = a2_12 + csq[j0 + 12]
    if v < b2:
        b2, l2 = v, j0 + 12
    v = a2_13 + csq[j0 + 13]
    if v < b2:
        b2, l2 = v, j0 + 13
    v = a2_14 + csq[j0 + 14]
    if v < b2:
        b2, l2 = v, j0 + 14
    v = a2_15 + csq[j0 + 15]
    if v < b2:
        b2, l2 = v, j0 + 15
    b3 = a3_0 + csq[j0]
    l3 = j0
    v = a3_1 + csq[j0 + 1]
    if v < b3:
        b3, l3 = v, j0 + 1
    v = a3_2 + csq[j0 + 2]
    if v < b3:
        b3, l3 = v, j0 + 2
    v = a3_3 + csq[j0 + 3]
    if v < b3:
        b3, l3 = v, j0 + 3
    v = a3_4 + csq[j0 + 4]
    if v < b3:
        b3, l3 = v, j0 + 4
    v = a3_5 + csq[j0 + 5]
    if v < b3:
        b3, l3 = v, j0 + 5
    v = a3_6 + csq[j0 + 6]
    if v < b3:
        b3, l3 = v, j0 + 6
    v = a3_7 + csq[j0 + 7]
    if v < b3:
        b3, l3 = v, j0 + 7
    v = a3_8 + csq[j0 + 8]
    if v < b3:
        b3, l3 = v, j0 + 8
    v = a3_9 + csq[j0 + 9]
    if v < b3:
        b3, l3 = v, j0 + 9
    v = a3_10 + csq[j0 + 10]
    if v < b3:
        b3, l3 = v, j0 + 10
    v = a3_11 + csq[j0 + 11]
    if v < b3:
        b3, l3 = v, j0 + 11
    v = a3_12 + csq[j0 + 12]
    if v < b3:
        b3, l3 = v, j0 + 12
    v = a3_13 + csq[j0 + 13]
    if v < b3:
        b3, l3 = v, j0 + 13
    v = a3_14 + csq[j0 + 14]
    if v < b3:
        b3, l3 = v, j0 + 14
    v = a3_15 + csq[j0 + 15]
    if v < b3:
        b3, l3 = v, j0 + 15
    return b0, l0, b1, l1, b2, l2, b3, l3



@njit(inline="always", boundscheck=False, fastmath={"contract"})
def _row_best(X, i, Ct, csq, k, d):
    """One row's lowest score and its centre, in ``_tile``'s order of sums."""
    best = np.inf
    label = 0
    for j in range(k):
        acc = X[i, 0] * Ct[0, j]
        for f in range(1, d):
            acc += X[i, f] * Ct[f, j]
        v = acc + csq[j]
        if v < best or j == 0:
            best, label = v, j
    return best, label


@njit(inline="always", boundscheck=False, fastmath={"contract"})
def _tile_best(X, i, Ct, csq, k_pad, d):
    """``_tile`` over every centre tile: rows ``i:i+4``' lowest scores and
    their centres."""
    # One call site of the inlined tile: peeling the first tile off the
    # loop (two copies) ran 5x slower on (200k, 32, 64).
    b0 = b1 = b2 = b3 = np.inf
    l0 = l1 = l2 = l3 = 0
    for j0 in range(0, k_pad, TILE_CENTERS):
        v0, m0, v1, m1, v2, m2, v3, m3 = _tile(X, i, Ct, j0, csq, d)
        if v0 < b0:
            b0, l0 = v0, m0
        if v1 < b1:
            b1, l1 = v1, m1
        if v2 < b2:
            b2, l2 = v2, m2
        if v3 < b3:
            b3, l3 = v3, m3
    return b0, l0, b1, l1, b2, l2, b3, l3


@njit(inline="always", boundscheck=False, fastmath={"contract"})
def _tile_best16(X, i, Ct, csq, k_pad, d):
    """``_tile_best`` with tiles of 16 centres (``k_pad`` a multiple of 16)."""
    b0 = b1 = b2 = b3 = np.inf
    l0 = l1 = l2 = l3 = 0
    for j0 in range(0, k_pad, 2 * TILE_CENTERS):
        v0, m0, v1, m1, v2, m2, v3, m3 = _tile16(X, i, Ct, j0, csq, d)
        if v0 < b0:
            b0, l0 = v0, m0
        if v1 < b1:
            b1, l1 = v1, m1
        if v2 < b2:
            b2, l2 = v2, m2
        if v3 < b3:
            b3, l3 = v3, m3
    return b0, l0, b1, l1, b2, l2, b3, l3


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def assign_range(X, Ct, csq, k, start, stop, labels, partial, offset):
    """Labels and lowest scores of rows ``start:stop`` of X, written at
    rows ``start - offset:stop - offset`` of ``labels`` and ``partial``."""
    # Each tiles' loop alone in its function, the leftover rows in another:
    # with them inlined together the loop ran 4x slower on (200k, 32, 64).
    end = start + (stop - start) // TILE_ROWS * TILE_ROWS
    if Ct.shape[1] % (2 * TILE_CENTERS) == 0:
        _assign_tiles16(X, Ct, csq, start, end, labels, partial, offset)
    else:
        _assign_tiles8(X, Ct, csq, start, end, labels, partial, offset)
    _assign_rows(X, Ct, csq, k, end, stop, labels, partial, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _assign_tiles8(X, Ct, csq, start, end, labels, partial, offset):
    """``assign_range`` over whole tiles of rows, 8 centres at a time."""
    d = X.shape[1]
    k_pad = Ct.shape[1]
    for i in range(start, end, TILE_ROWS):
        b0, l0, b1, l1, b2, l2, b3, l3 = _tile_best(X, i, Ct, csq, k_pad, d)
        o = i - offset
        labels[o] = l0
        labels[o + 1] = l1
        labels[o + 2] = l2
        labels[o + 3] = l3
        partial[o] = b0
        partial[o + 1] = b1
        partial[o + 2] = b2
        partial[o + 3] = b3


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _assign_tiles16(X, Ct, csq, start, end, labels, partial, offset):
    """``assign_range`` over whole tiles of rows, 16 centres at a time."""
    d = X.shape[1]
    k_pad = Ct.shape[1]
    for i in range(start, end, TILE_ROWS):
        b0, l0, b1, l1, b2, l2, b3, l3 = _tile_best16(X, i, Ct, csq, k_pad, d)
        o = i - offset
        labels[o] = l0
        labels[o + 1] = l1
        labels[o + 2] = l2
        labels[o + 3] = l3
        partial[o] = b0
        partial[o + 1] = b1
        partial[o + 2] = b2
        partial[o + 3] = b3


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _assign_rows(X, Ct, csq, k, start, stop, labels, partial, offset):
    """``assign_range`` one row at a time (the rows short of a tile)."""
    d = X.shape[1]
    for i in range(start, stop):
        b, lab = _row_best(X, i, Ct, csq, k, d)
        labels[i - offset] = lab
        partial[i - offset] = b


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract", "reassoc"})
def _add_rows(X, start, stop, new_labels, best, weights, labels, sums, counts, want_inertia):
    """Rows ``start:stop`` of X (times their weights) added to the sums and
    counts of ``new_labels`` (indexed from 0), which replace ``labels``.
    Returns ``(inertia, n_changed)`` of these rows (inertia 0.0 unless
    ``want_inertia``; ``best`` are their lowest scores)."""
    d = X.shape[1]
    unit = weights.shape[0] == 0
    inertia = 0.0
    changed = 0
    for i in range(start, stop):
        label = new_labels[i - start]
        w = 1.0 if unit else np.float64(weights[i])
        for f in range(d):
            sums[label, f] += w * np.float64(X[i, f])
        counts[label] += w
        if labels[i] != label:
            changed += 1
            labels[i] = label
        if want_inertia:
            # Reassociated (vectorised): the sum of squares is the one
            # reduction here, and a sequential one cost 4x the step at d=16.
            sq = 0.0
            for f in range(d):
                x = np.float64(X[i, f])
                sq += x * x
            inertia += w * max(sq + np.float64(best[i - start]), 0.0)
    return inertia, changed


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def lloyd_range(X, Ct, csq, k, weights, start, stop, labels, sums, counts, want_inertia):
    """One fused Lloyd step over rows ``start:stop``: nearest centre, the
    row added (times its weight, unit weights when ``weights`` is empty)
    to its cluster's ``sums`` and ``counts`` (float64, in place), the label
    compared with ``labels`` and written there. Returns ``(inertia,
    n_changed)`` of these rows (inertia 0.0 unless ``want_inertia``)."""
    # Rows go in groups of SUB_ROWS: labelled by ``assign_range`` (the
    # tiles' loop vectorises only alone in its function), then added to the
    # sums while still in the L1 cache. One read of X from memory.
    new_labels = np.empty(SUB_ROWS, dtype=labels.dtype)
    best = np.empty(SUB_ROWS, dtype=X.dtype)
    inertia = 0.0
    changed = 0
    for s0 in range(start, stop, SUB_ROWS):
        s1 = min(stop, s0 + SUB_ROWS)
        assign_range(X, Ct, csq, k, s0, s1, new_labels, best, s0)
        e, c = _add_rows(X, s0, s1, new_labels, best, weights, labels, sums, counts,
                         want_inertia)
        inertia += e
        changed += c
    return inertia, changed


@njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def lloyd_chunks(X, Ct, csq, k, weights, labels, n_chunks, want_inertia):
    """``lloyd_range`` over ``n_chunks`` equal ranges of rows in parallel,
    each with its own float64 accumulators. Returns ``(sums, counts,
    inertia, changed)`` of shapes (n_chunks, k, d), (n_chunks, k),
    (n_chunks,) and (n_chunks,): fixed ranges, so the same result for any
    number of threads."""
    n, d = X.shape
    sums = np.zeros((n_chunks, k, d), dtype=np.float64)
    counts = np.zeros((n_chunks, k), dtype=np.float64)
    inertia = np.zeros(n_chunks, dtype=np.float64)
    changed = np.zeros(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        start = n * c // n_chunks
        stop = n * (c + 1) // n_chunks
        e, m = lloyd_range(
            X, Ct, csq, k, weights, start, stop, labels, sums[c], counts[c], want_inertia
        )
        inertia[c] = e
        changed[c] = m
    return sums, counts, inertia, changed


@njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def assign_chunks(X, Ct, csq, k, labels, partial, n_chunks):
    """``assign_range`` over ``n_chunks`` equal ranges of rows in parallel."""
    n = X.shape[0]
    for c in prange(n_chunks):
        assign_range(X, Ct, csq, k, n * c // n_chunks, n * (c + 1) // n_chunks, labels, partial, 0)
