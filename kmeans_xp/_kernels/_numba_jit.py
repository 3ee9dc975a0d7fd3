"""numba kernels of the fused CPU path (see ``numba.py``): importing this
module imports numba, so only ``numba.py`` does, on first use.

Centres come prepared: ``Ct`` of shape (n_features, k_pad), ``-2 C^T``
padded with zero columns to a multiple of 8, and ``csq`` of shape
(k_pad,), ``||c||^2`` padded with +inf (padded centres never win). Scores
are ``csq[j] + x.Ct[:, j]``: the ``||c||^2 - 2 x.c`` of ``Kernels.assign``.
Each score starts at ``csq[j]`` and takes the products feature by feature
in X's dtype, each a multiply-add, the same way for every row (tiles and
leftover rows alike), so a row's label does not depend on where it sits.
(With ``csq`` added last, one feature's lone product and that addition
were fused into one multiply-add in some kernels and not in others.)
Cluster sums, weights and inertia are float64.

Up to 8 centres, float32 rows go 16 at a time in vector lanes
(``_assign_lanes8``); from 32 centres, a few rows at a time against every
centre, their minima in vector lanes (``_rows_lowest``); otherwise 4 rows
at a time in a register tile.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = [
    "POTENTIAL_WIDTH",
    "VARIANTS",
    "assign_chunks",
    "assign_range_lanes8",
    "assign_range_rows16",
    "assign_range_tiles16",
    "assign_range_tiles8",
    "labelled_sq_distances",
    "lloyd_chunks",
    "lloyd_range_lanes8",
    "lloyd_range_rows16",
    "lloyd_range_tiles16",
    "lloyd_range_tiles8",
    "potentials_range",
]

#: Rows and centres per register tile (``_tile8``; ``_tile16`` has twice
#: the centres, for more than 8 centres).
TILE_ROWS = 4
TILE_CENTERS = 8
#: Rows labelled at a time by the fused Lloyd step before they are summed:
#: a multiple of every block kernel's rows (16 lanes, 4-row tiles, 6- and
#: 4-row groups), so no rows are left to the one-row loop but a pass's last.
SUB_ROWS = 240
#: Features per turn of a tile's loop. One at a time, LLVM fetched the
#: tile's row values with a gather every turn; 2 and 8 were slower than 4
#: (benchmarks/README.md, "Fused kernel: four features per loop turn").
FEATURE_UNROLL = 4


def _tile_kernel(n_centers):
    """The register tile of ``TILE_ROWS`` rows against ``n_centers`` centres,
    ``tile(X, i, Ct, j0, csq, d)``: rows ``i:i+4``' lowest ``csq[j] +
    x.Ct[:, j]`` over ``j0:j0+n_centers`` and its ``j`` (the first on ties),
    as ``(b0, l0, b1, l1, b2, l2, b3, l3)``.

    Generated from one template and compiled by numba (inlined into its
    callers): one scalar per (row, centre), written out. With SLP
    vectorisation (see ``numba._compiled``) LLVM packs each row's
    accumulators into vector registers and keeps the whole tile in
    registers for the loop over features; numba's loop vectorizer alone
    keeps them in memory (a load and a store per multiply-add, 5x slower on
    (200k, 32, 64)).
    """
    rows, cols = range(TILE_ROWS), range(n_centers)
    body = ["u = np.uint64(j0)", "ui = np.uint64(i)"]
    body += [f"e{j} = csq[u + np.uint64({j})]" for j in cols]
    body += _tile_products(
        n_centers, lambda f, j: f"Ct[{f}, u + np.uint64({j})]", lambda r, j: f"x{r} * c{j} + e{j}"
    )
    for r in rows:
        body += [f"b{r} = a{r}_0", f"l{r} = j0"]
        for j in cols[1:]:
            body += [
                f"if a{r}_{j} < b{r}:",
                f"    b{r}, l{r} = a{r}_{j}, j0 + {j}",
            ]
    body.append("return " + ", ".join(f"b{r}, l{r}" for r in rows))
    return _jit_inline("tile(X, i, Ct, j0, csq, d)", body, f"tile {TILE_ROWS}x{n_centers}")


def _tile_products(n_centers, centre, first):
    """Source lines of a register tile's products: rows ``ui:ui+4`` of X
    (``x{r}``) against ``n_centers`` columns (``c{j}``, feature ``f``'s
    being the expression ``centre(f, j)``), summed into one scalar per
    (row, column), ``a{r}_{j}``: the first feature's term is the
    expression ``first(r, j)``, then the features in order, each a
    multiply-add, ``FEATURE_UNROLL`` at a time, then one by one (one at a
    time, LLVM fetched the rows' values with a gather every turn)."""
    rows, cols = range(TILE_ROWS), range(n_centers)

    def loads(f, indent=""):
        # Unsigned indices: numba then emits no negative-index wraparound,
        # and the loads of a row of centres are seen as one vector.
        lines = [f"x{r} = X[ui + np.uint64({r}), {f}]" for r in rows]
        lines += [f"c{j} = {centre(f, j)}" for j in cols]
        return [indent + line for line in lines]

    def step(f, indent):
        return loads(f, indent) + [f"{indent}a{r}_{j} += x{r} * c{j}" for r in rows for j in cols]

    body = loads(0) + [f"a{r}_{j} = {first(r, j)}" for r in rows for j in cols]
    body += ["f = 1", f"while f + {FEATURE_UNROLL} <= d:"]
    for q in range(FEATURE_UNROLL):
        body += step(f"f + {q}", "    ")
    body += [f"    f += {FEATURE_UNROLL}", "while f < d:", *step("f", "    "), "    f += 1"]
    return body


def _jit_inline(signature, body, label):
    """Generated source (``def signature:`` and ``body``) compiled by numba,
    to be inlined into its callers."""
    source = f"def {signature}:\n" + "".join(f"    {line}\n" for line in body)
    # The module's name: numba's on-disk cache rebuilds the callers'
    # environments by importing it.
    namespace = {"np": np, "__name__": __name__}
    exec(compile(source, f"<{__name__} {label}>", "exec"), namespace)
    name = signature.split("(")[0]
    return njit(inline="always", boundscheck=False, fastmath={"contract"})(namespace[name])


# 4 x 16 tiles keep 8 independent multiply-add chains, enough to hide the
# FMA latency, and ran 1.4x faster than 4 x 8 on (200k, 32, 64), one core;
# 4 x 8 stays for k <= 8 (no padding to 16).
_tile8 = _tile_kernel(TILE_CENTERS)
_tile16 = _tile_kernel(2 * TILE_CENTERS)


#: Rows per lane tile (``_lanes8``): one vector of float32.
LANE_ROWS = 16


def _lane_kernel(n_centers):
    """The lane tile: ``LANE_ROWS`` rows, transposed into ``T`` (features
    by rows), against ``n_centers`` centres, ``tile(T, r0, Ct, csq, d, S)``:
    the scores of rows ``r0:r0+16`` into ``S[:, r0:r0+16]`` (centres by
    rows).

    One accumulator per centre holds 16 rows, one per lane: ``n_centers``
    independent multiply-add chains (the 4 x 8 tile has 4, latency-bound),
    each row's products still summed feature by feature in order.
    """
    rows, cols = range(LANE_ROWS), range(n_centers)

    def loads(f):
        return [f"x{r} = T[{f}, ur + np.uint64({r})]" for r in rows] + [
            f"c{j} = Ct[{f}, np.uint64({j})]" for j in cols
        ]

    body = ["ur = np.uint64(r0)", *loads(0)]
    body += [f"e{j} = csq[np.uint64({j})]" for j in cols]
    body += [f"a{r}_{j} = x{r} * c{j} + e{j}" for j in cols for r in rows]
    body += ["f = 1", "while f < d:"]
    body += ["    " + line for line in loads("f")]
    body += [f"    a{r}_{j} += x{r} * c{j}" for j in cols for r in rows]
    body += ["    f += 1"]
    # Scores go to S (centres by rows), for ``_argmin_lanes``: with the
    # argmin written here, as branches LLVM compared one scalar at a time,
    # and as selects SLP vectorised it but unpacked the loop above.
    body += [f"S[{j}, ur + np.uint64({r})] = a{r}_{j}" for j in cols for r in rows]
    source = "def tile(T, r0, Ct, csq, d, S):\n" + "".join(
        f"    {line}\n" for line in body)
    namespace = {"np": np, "__name__": __name__}
    exec(compile(source, f"<{__name__} lanes {LANE_ROWS}x{n_centers}>", "exec"), namespace)
    return njit(inline="always", boundscheck=False, fastmath={"contract"})(namespace["tile"])


_lanes8 = _lane_kernel(TILE_CENTERS)


#: Centres per vector of the row groups (``_rows_lowest``): the centres
#: come padded to a multiple of it (``numba.TILE_WIDTHS``).
GROUP_CENTERS = 16
#: Rows per group: 6 float32 rows (one vector of 16 scores each) or 4
#: float64 rows (two each) keep 6 or 8 vector accumulators, enough
#: independent multiply-adds for the FMA latency; 4, 8, 10 and 12 float32
#: rows ran slower (benchmarks/README.md, "Row groups").
GROUP_ROWS_FLOAT32 = 6
GROUP_ROWS_FLOAT64 = 4


def _splat(builder, value, n):
    """``value`` in every lane of an ``n``-lane vector."""
    vec = ir.VectorType(value.type, n)
    one = builder.insert_element(ir.Constant(vec, None), value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vec, None),
                                  ir.Constant(ir.VectorType(ir.IntType(32), n), [0] * n))


@intrinsic
def _rows_lowest(typingctx, X, i, Ct, csq, labels, best, o):
    """Rows ``i:i+GROUP_ROWS_FLOAT*`` of X against every centre: their
    lowest ``csq[j] + x.Ct[:, j]`` into ``best[o + r]`` and its ``j`` (the
    first on ties) into ``labels[o + r]``.

    Centres go ``GROUP_CENTERS`` at a time: per feature, one vector load
    of ``Ct`` and one multiply-add per row with the row's value in every
    lane, in the order of ``_tile_kernel`` (``csq[j]`` first, then the
    features). Each row's lowest score and its centre stay in vector lanes
    across centre tiles (a compare and two selects per tile); one
    reduction per row at the end. LLVM, given the same in scalars
    (``_tile16``), reduced every tile to one minimum per row.
    """
    sig = types.void(X, i, Ct, csq, labels, best, o)

    def codegen(context, builder, signature, args):
        xty, _, cty, qty, lty, bty, _ = signature.args
        xa, ca, qa, la, ba = (context.make_array(t)(context, builder, a) for t, a in
                              zip((xty, cty, qty, lty, bty), (args[0], args[2], args[3],
                                                              args[4], args[5])))
        intp = context.get_value_type(types.intp)
        width = GROUP_CENTERS
        n_rows = GROUP_ROWS_FLOAT32 if xty.dtype.bitwidth == 32 else GROUP_ROWS_FLOAT64
        real = context.get_data_type(xty.dtype)
        vec, ivec = ir.VectorType(real, width), ir.VectorType(ir.IntType(32), width)
        suffix = f"v{width}f{xty.dtype.bitwidth}"
        module = builder.module
        fma = cgutils.get_or_insert_function(
            module, ir.FunctionType(vec, [vec, vec, vec]), f"llvm.fma.{suffix}")
        fmin = cgutils.get_or_insert_function(
            module, ir.FunctionType(real, [vec]), f"llvm.vector.reduce.fmin.{suffix}")
        umin = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.IntType(32), [ivec]), f"llvm.vector.reduce.umin.v{width}i32")
        zero, one = ir.Constant(intp, 0), ir.Constant(intp, 1)
        d = cgutils.unpack_tuple(builder, xa.shape)[1]
        k_pad = cgutils.unpack_tuple(builder, ca.shape)[1]
        rows = [builder.add(args[1], ir.Constant(intp, r)) for r in range(n_rows)]

        def value(r, f):
            ptr = cgutils.get_item_pointer(context, builder, xty, xa, [rows[r], f])
            return _splat(builder, builder.load(ptr), width)

        # Stack slots that LLVM promotes to registers.
        lowest = [cgutils.alloca_once_value(builder, ir.Constant(vec, [float("inf")] * width))
                  for _ in rows]
        where = [cgutils.alloca_once_value(builder, ir.Constant(ivec, [0] * width)) for _ in rows]
        acc = [cgutils.alloca_once(builder, vec) for _ in rows]
        with cgutils.for_range_slice(builder, zero, k_pad, ir.Constant(intp, width)) as (j0, _):
            first = _load_run(context, builder, qty, qa, [j0], width)
            c = _load_run(context, builder, cty, ca, [zero, j0], width)
            for r in range(n_rows):
                builder.store(builder.call(fma, [value(r, zero), c, first]), acc[r])
            with cgutils.for_range_slice(builder, one, d, one) as (f, _):
                c = _load_run(context, builder, cty, ca, [f, j0], width)
                for r in range(n_rows):
                    builder.store(builder.call(fma, [value(r, f), c, builder.load(acc[r])]),
                                  acc[r])
            centre = builder.add(_splat(builder, builder.trunc(j0, ir.IntType(32)), width),
                                 ir.Constant(ivec, list(range(width))))
            for r in range(n_rows):
                a, low = builder.load(acc[r]), builder.load(lowest[r])
                lower = builder.fcmp_ordered("<", a, low)
                builder.store(builder.select(lower, a, low), lowest[r])
                builder.store(builder.select(lower, centre, builder.load(where[r])), where[r])
        label_type = context.get_data_type(lty.dtype)
        for r in range(n_rows):
            low = builder.load(lowest[r])
            m = builder.call(fmin, [low])
            # The first centre on ties: the smallest index among the lanes
            # that hold the minimum.
            at_min = builder.fcmp_ordered("==", low, _splat(builder, m, width))
            label = builder.call(umin, [builder.select(
                at_min, builder.load(where[r]), ir.Constant(ivec, [2**31 - 1] * width))])
            if label_type.width > 32:
                label = builder.zext(label, label_type)
            elif label_type.width < 32:
                label = builder.trunc(label, label_type)
            out = builder.add(args[6], ir.Constant(intp, r))
            builder.store(label, cgutils.get_item_pointer(context, builder, lty, la, [out]))
            builder.store(m, cgutils.get_item_pointer(context, builder, bty, ba, [out]))
        return context.get_dummy_value()

    return sig, codegen


def _shuffle_masks():
    """The in-register transpose of 16 rows by 8 features (``_transpose16x8``):
    lane masks of its three rounds of two-source shuffles, low and high
    output of each (the unpack, 4-wide shuffle and 128-bit-half moves of
    the usual 8 x 8 transpose, done on both 256-bit halves at once)."""
    def mask(pick):
        return [pick(lane) for lane in range(16)]

    unpack = [mask(lambda L, h=h: 16 * (L & 1) + (L & ~3) + ((L & 3) >> 1) + 2 * h)
              for h in (0, 1)]
    pairs = [mask(lambda L, h=h: 16 * ((L & 3) >> 1) + (L & ~3) + (L & 1) + 2 * h)
             for h in (0, 1)]
    halves = [mask(lambda L, h=h: 16 * ((L & 7) >> 2) + (L & 8) + 4 * h + (L & 3))
              for h in (0, 1)]
    return unpack, pairs, halves


_MASKS = _shuffle_masks()


def _load_run(context, builder, aryty, ary, inds, n):
    """``n`` elements of ``ary`` from ``inds`` on along its last axis, as a
    vector: one load where the array is C-contiguous, else one by one."""
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, inds)
    vec = ir.VectorType(context.get_data_type(aryty.dtype), n)
    if aryty.layout == "C":
        return builder.load(builder.bitcast(ptr, vec.as_pointer()),
                            align=aryty.dtype.bitwidth // 8)
    step = cgutils.unpack_tuple(builder, ary.strides)[-1]
    out = ir.Constant(vec, None)
    base = builder.ptrtoint(ptr, step.type)
    for q in range(n):
        at = builder.add(base, builder.mul(step, ir.Constant(step.type, q)))
        item = builder.load(builder.inttoptr(at, ptr.type))
        out = builder.insert_element(out, item, ir.Constant(ir.IntType(32), q))
    return out


def _store_run(context, builder, aryty, ary, inds, value):
    """``_load_run``'s converse: ``value``'s lanes stored from ``inds`` on."""
    ptr = cgutils.get_item_pointer(context, builder, aryty, ary, inds)
    if aryty.layout == "C":
        builder.store(value, builder.bitcast(ptr, value.type.as_pointer()),
                      align=aryty.dtype.bitwidth // 8)
        return
    step = cgutils.unpack_tuple(builder, ary.strides)[-1]
    base = builder.ptrtoint(ptr, step.type)
    for q in range(value.type.count):
        at = builder.add(base, builder.mul(step, ir.Constant(step.type, q)))
        item = builder.extract_element(value, ir.Constant(ir.IntType(32), q))
        builder.store(item, builder.inttoptr(at, ptr.type))


@intrinsic
def _transpose16x8(typingctx, X, i, f0, T, r0):
    """``T[f0 + q, r0 + r] = X[i + r, f0 + q]`` for 16 rows ``r`` and 8
    features ``q``: 16 vector loads, 24 two-source shuffles and 8 vector
    stores (a scalar copy stored one element at a time and took longer than
    the lane tiles it feeds)."""
    sig = types.void(X, i, f0, T, r0)

    def codegen(context, builder, signature, args):
        xty, _, _, tty, _ = signature.args
        xa = context.make_array(xty)(context, builder, args[0])
        ta = context.make_array(tty)(context, builder, args[3])
        intp = context.get_value_type(types.intp)
        i_, f_, r_ = args[1], args[2], args[4]

        def const(lanes):
            return ir.Constant(ir.VectorType(ir.IntType(32), len(lanes)), lanes)

        rows = [_load_run(context, builder, xty, xa,
                          [builder.add(i_, ir.Constant(intp, r)), f_], 8) for r in range(16)]
        z = [builder.shuffle_vector(rows[p], rows[p + 8], const(list(range(16))))
             for p in range(8)]
        unpack, pairs, halves = _MASKS
        t = [None] * 8
        for p in range(0, 8, 2):
            for h in (0, 1):
                t[p + h] = builder.shuffle_vector(z[p], z[p + 1], const(unpack[h]))
        u = [None] * 8
        for g in (0, 4):
            for a, o in ((g, g), (g + 1, g + 2)):
                for h in (0, 1):
                    u[o + h] = builder.shuffle_vector(t[a], t[a + 2], const(pairs[h]))
        for o in range(4):
            for h in (0, 1):
                w = builder.shuffle_vector(u[o], u[o + 4], const(halves[h]))
                q = ir.Constant(intp, o + 4 * h)
                _store_run(context, builder, tty, ta, [builder.add(f_, q), r_], w)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _argmin_lanes(typingctx, S, r0, labels, best, o):
    """For 16 rows ``r``: ``best[o + r]``, ``labels[o + r]`` = the lowest of
    ``S[:, r0 + r]`` and its index (the first on ties), in vector lanes."""
    sig = types.void(S, r0, labels, best, o)

    def codegen(context, builder, signature, args):
        sty, _, lty, bty, _ = signature.args
        sa = context.make_array(sty)(context, builder, args[0])
        la = context.make_array(lty)(context, builder, args[2])
        ba = context.make_array(bty)(context, builder, args[3])
        lvec = ir.VectorType(context.get_data_type(lty.dtype), LANE_ROWS)
        intp = context.get_value_type(types.intp)
        low = lab = None
        for j in range(TILE_CENTERS):
            v = _load_run(context, builder, sty, sa, [ir.Constant(intp, j), args[1]], LANE_ROWS)
            if j == 0:
                low, lab = v, ir.Constant(lvec, [0] * LANE_ROWS)
                continue
            lt = builder.fcmp_ordered("<", v, low)
            low = builder.select(lt, v, low)
            lab = builder.select(lt, ir.Constant(lvec, [j] * LANE_ROWS), lab)
        _store_run(context, builder, bty, ba, [args[4]], low)
        _store_run(context, builder, lty, la, [args[4]], lab)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", boundscheck=False)
def _transpose_rows(X, i, T, r0, d):
    """Rows ``i:i+16`` of X into columns ``r0:r0+16`` of ``T``."""
    f = 0
    while f + 8 <= d:
        _transpose16x8(X, i, f, T, r0)
        f += 8
    while f < d:
        for r in range(LANE_ROWS):
            T[f, r0 + r] = X[i + r, f]
        f += 1


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _assign_lanes8(X, T, S, Ct, csq, start, end, labels, partial, offset):
    """``assign_range_*`` over rows ``start:end`` (a multiple of 16 rows)
    against 8 centres, 16 rows at a time: transposed into ``T`` (d, 16),
    lane tile, its scores in ``S`` (8, 16), lane-wise argmin."""
    # One group's transpose, tile and argmin together: transposing SUB_ROWS
    # rows first left the loads from memory waiting, not overlapped with
    # the multiply-adds.
    d = X.shape[1]
    for i in range(start, end, LANE_ROWS):
        _transpose_rows(X, i, T, 0, d)
        _lanes8(T, 0, Ct, csq, d, S)
        _argmin_lanes(S, 0, labels, partial, i - offset)


@njit(inline="always", boundscheck=False, fastmath={"contract"})
def _row_best(X, i, Ct, csq, k, d):
    """One row's lowest score and its centre, in the tiles' order of sums."""
    best = np.inf
    label = 0
    for j in range(k):
        v = X[i, 0] * Ct[0, j] + csq[j]
        for f in range(1, d):
            v += X[i, f] * Ct[f, j]
        if v < best or j == 0:
            best, label = v, j
    return best, label


@njit(inline="always", boundscheck=False, fastmath={"contract"})
def _tile_best(tile, n_centers, X, i, Ct, csq, k_pad, d):
    """``tile`` (of ``n_centers`` centres) over every centre tile: rows
    ``i:i+4``' lowest scores and their centres."""
    # One call site of the inlined tile: peeling the first tile off the
    # loop (two copies) ran 5x slower on (200k, 32, 64).
    b0 = b1 = b2 = b3 = np.inf
    l0 = l1 = l2 = l3 = 0
    for j0 in range(0, k_pad, n_centers):
        v0, m0, v1, m1, v2, m2, v3, m3 = tile(X, i, Ct, j0, csq, d)
        if v0 < b0:
            b0, l0 = v0, m0
        if v1 < b1:
            b1, l1 = v1, m1
        if v2 < b2:
            b2, l2 = v2, m2
        if v3 < b3:
            b3, l3 = v3, m3
    return b0, l0, b1, l1, b2, l2, b3, l3


@njit(inline="always")
def _assign_range(block, X, Ct, csq, k, start, stop, labels, partial, offset):
    """Labels and lowest scores of rows ``start:stop`` of X, written at
    rows ``start - offset:stop - offset`` of ``labels`` and ``partial``,
    by ``block`` (one of the ``_block_*`` kernels)."""
    T, S = _scratch(X, Ct)
    block(X, Ct, csq, k, start, stop, labels, partial, offset, T, S)


@njit(inline="always")
def _lanes(X, Ct):
    """Whether rows take the lane tiles: 8 centres (k_pad) and float32 (16
    lanes a vector). float64 rows, 8 a vector, ran slower there than in
    the 4 x 8 tile."""
    return Ct.shape[1] == TILE_CENTERS and X.itemsize == 4


@njit(inline="always")
def _scratch(X, Ct):
    """The lane tiles' scratch (``_assign_lanes8``): 16 rows transposed and
    their scores; empty where rows take the register tiles."""
    n = LANE_ROWS if _lanes(X, Ct) else 0
    return np.empty((X.shape[1], n), dtype=X.dtype), np.empty((TILE_CENTERS, n), dtype=X.dtype)


# One kernel per tile, each with the leftover rows (``_assign_rows``), and
# each entry point below in one version per kernel: a fit compiles only the
# tile its centres and dtype take, not all four (benchmarks/README.md,
# "First use: one tile compiled, not three").
# Each tiles' loop alone in its function, the leftover rows in another:
# with them inlined together the loop ran 4x slower on (200k, 32, 64).
@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _block_lanes8(X, Ct, csq, k, start, stop, labels, partial, offset, T, S):
    """``assign_range_*`` with its scratch (``_scratch``), up to 8 centres in
    float32: rows in vector lanes."""
    end = start + (stop - start) // LANE_ROWS * LANE_ROWS
    _assign_lanes8(X, T, S, Ct, csq, start, end, labels, partial, offset)
    _assign_rows(X, Ct, csq, k, end, stop, labels, partial, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _block_tiles8(X, Ct, csq, k, start, stop, labels, partial, offset, T, S):
    """``_block_lanes8`` in 4 x 8 register tiles (float64, up to 8 centres)."""
    end = start + (stop - start) // TILE_ROWS * TILE_ROWS
    _assign_tiles8(X, Ct, csq, start, end, labels, partial, offset)
    _assign_rows(X, Ct, csq, k, end, stop, labels, partial, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _block_tiles16(X, Ct, csq, k, start, stop, labels, partial, offset, T, S):
    """``_block_lanes8`` in 4 x 16 register tiles (more than 8 centres)."""
    end = start + (stop - start) // TILE_ROWS * TILE_ROWS
    _assign_tiles16(X, Ct, csq, start, end, labels, partial, offset)
    _assign_rows(X, Ct, csq, k, end, stop, labels, partial, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _block_rows16(X, Ct, csq, k, start, stop, labels, partial, offset, T, S):
    """``_block_lanes8`` in row groups against every centre (``_rows_lowest``;
    32 centres or more)."""
    rows = GROUP_ROWS_FLOAT32 if X.itemsize == 4 else GROUP_ROWS_FLOAT64
    end = start + (stop - start) // rows * rows
    for i in range(start, end, rows):
        _rows_lowest(X, i, Ct, csq, labels, partial, i - offset)
    _assign_rows(X, Ct, csq, k, end, stop, labels, partial, offset)


#: The block kernels by name (``numba.kernel_variant`` picks one).
VARIANTS = ("lanes8", "tiles8", "tiles16", "rows16")


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def assign_range_lanes8(X, Ct, csq, k, start, stop, labels, partial, offset):
    _assign_range(_block_lanes8, X, Ct, csq, k, start, stop, labels, partial, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def assign_range_tiles8(X, Ct, csq, k, start, stop, labels, partial, offset):
    _assign_range(_block_tiles8, X, Ct, csq, k, start, stop, labels, partial, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def assign_range_tiles16(X, Ct, csq, k, start, stop, labels, partial, offset):
    _assign_range(_block_tiles16, X, Ct, csq, k, start, stop, labels, partial, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def assign_range_rows16(X, Ct, csq, k, start, stop, labels, partial, offset):
    _assign_range(_block_rows16, X, Ct, csq, k, start, stop, labels, partial, offset)


@njit(inline="always", boundscheck=False, fastmath={"contract"})
def _assign_tiles(tile, n_centers, X, Ct, csq, start, end, labels, partial, offset):
    """``assign_range_*`` over whole tiles of rows, ``n_centers`` at a time."""
    d = X.shape[1]
    k_pad = Ct.shape[1]
    for i in range(start, end, TILE_ROWS):
        b0, l0, b1, l1, b2, l2, b3, l3 = _tile_best(tile, n_centers, X, i, Ct, csq, k_pad, d)
        o = i - offset
        labels[o] = l0
        labels[o + 1] = l1
        labels[o + 2] = l2
        labels[o + 3] = l3
        partial[o] = b0
        partial[o + 1] = b1
        partial[o + 2] = b2
        partial[o + 3] = b3


# One compiled function per tile width, each with its tiles' loop alone.
@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _assign_tiles8(X, Ct, csq, start, end, labels, partial, offset):
    _assign_tiles(_tile8, TILE_CENTERS, X, Ct, csq, start, end, labels, partial, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _assign_tiles16(X, Ct, csq, start, end, labels, partial, offset):
    _assign_tiles(_tile16, 2 * TILE_CENTERS, X, Ct, csq, start, end, labels, partial, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _assign_rows(X, Ct, csq, k, start, stop, labels, partial, offset):
    """``assign_range_*`` one row at a time (the rows short of a tile)."""
    d = X.shape[1]
    for i in range(start, stop):
        b, lab = _row_best(X, i, Ct, csq, k, d)
        labels[i - offset] = lab
        partial[i - offset] = b


#: Features per straight-line chunk of ``_add_row``: one vector of float64.
ADD_CHUNK = 8


def _row_adder(with_sq):
    """``add_row(X, i, sums, label, w, d)``: row ``i`` of X times ``w`` added
    to ``sums[label, :]`` in float64; returns the row's ``||x||^2`` (0.0
    unless ``with_sq``).

    Generated like ``_tile_kernel``: ``ADD_CHUNK`` features written out per
    turn, all loads before the stores, which SLP packs into one vector load,
    add and store (numba's loop vectorizer gave each row a wide loop that a
    short row never entered, and scalar or narrow epilogues instead).
    """
    lanes = range(ADD_CHUNK)
    body = ["u = np.uint64(label)", "ui = np.uint64(i)", "f = np.uint64(0)",
            "ud = np.uint64(d)"]
    body += [f"q{q} = 0.0" for q in lanes]
    body.append(f"while f + np.uint64({ADD_CHUNK}) <= ud:")
    body += [f"    x{q} = np.float64(X[ui, f + np.uint64({q})])" for q in lanes]
    body += [f"    s{q} = sums[u, f + np.uint64({q})]" for q in lanes]
    body += [f"    sums[u, f + np.uint64({q})] = s{q} + w * x{q}" for q in lanes]
    if with_sq:
        body += [f"    q{q} += x{q} * x{q}" for q in lanes]
    body.append(f"    f += np.uint64({ADD_CHUNK})")
    body.append("sq = " + " + ".join(f"q{q}" for q in lanes))
    body += ["while f < ud:", "    x = np.float64(X[ui, f])", "    sums[u, f] += w * x"]
    if with_sq:
        body.append("    sq += x * x")
    body += ["    f += np.uint64(1)", "return sq"]
    source = "def add_row(X, i, sums, label, w, d):\n" + "".join(f"    {line}\n" for line in body)
    namespace = {"np": np, "__name__": __name__}
    exec(compile(source, f"<{__name__} add_row {ADD_CHUNK} {with_sq}>", "exec"), namespace)
    return njit(inline="always", boundscheck=False, fastmath={"contract"})(namespace["add_row"])


_add_row = _row_adder(True)
_add_row_nosq = _row_adder(False)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract", "reassoc"})
def _move_rows(X, start, stop, new_labels, best, weights, previous, labels, sums, counts,
               want_inertia):
    """``_add_rows`` for running sums: only the rows whose label changes
    are added (times their weights) to their new cluster and taken from
    their old one; the inertia still covers every row."""
    d = X.shape[1]
    unit = weights.shape[0] == 0
    # Counted first, without branches (vectorised): once a fit settles,
    # most groups of rows have no row to move and skip the loop below.
    changed = 0
    for i in range(start, stop):
        changed += new_labels[i - start] != previous[i]
    if changed:
        for i in range(start, stop):
            new = new_labels[i - start]
            old = previous[i]
            if new != old:
                w = 1.0 if unit else np.float64(weights[i])
                _add_row_nosq(X, i, sums, new, w, d)
                _add_row_nosq(X, i, sums, old, -w, d)
                counts[new] += w
                counts[old] -= w
    inertia = 0.0
    if want_inertia:
        for i in range(start, stop):
            w = 1.0 if unit else np.float64(weights[i])
            sq = 0.0
            for f in range(d):
                x = np.float64(X[i, f])
                sq += x * x
            inertia += w * max(sq + np.float64(best[i - start]), 0.0)
    # Last: ``labels`` may be ``previous`` itself.
    for i in range(start, stop):
        labels[i] = new_labels[i - start]
    return inertia, changed


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract", "reassoc"})
def _add_rows(X, start, stop, new_labels, best, weights, previous, labels, sums, counts,
              want_inertia):
    """Rows ``start:stop`` of X (times their weights) added to the sums and
    counts of ``new_labels`` (indexed from 0), which are written to
    ``labels`` and compared with ``previous`` (none where it is empty).
    Returns ``(inertia, n_changed)`` of these rows (inertia 0.0 unless
    ``want_inertia``; ``best`` are their lowest scores)."""
    d = X.shape[1]
    inertia = 0.0
    # Weighted and unit rows, with and without inertia, in separate loops:
    # no branch per row, and no ||x||^2 where the inertia is not wanted.
    if weights.shape[0] == 0:
        if want_inertia:
            for i in range(start, stop):
                label = new_labels[i - start]
                sq = _add_row(X, i, sums, label, 1.0, d)
                counts[label] += 1.0
                inertia += max(sq + np.float64(best[i - start]), 0.0)
        else:
            for i in range(start, stop):
                label = new_labels[i - start]
                _add_row_nosq(X, i, sums, label, 1.0, d)
                counts[label] += 1.0
    elif want_inertia:
        for i in range(start, stop):
            label = new_labels[i - start]
            w = np.float64(weights[i])
            sq = _add_row(X, i, sums, label, w, d)
            counts[label] += w
            inertia += w * max(sq + np.float64(best[i - start]), 0.0)
    else:
        for i in range(start, stop):
            label = new_labels[i - start]
            w = np.float64(weights[i])
            _add_row_nosq(X, i, sums, label, w, d)
            counts[label] += w
    changed = 0
    if previous.shape[0]:
        for i in range(start, stop):
            changed += previous[i] != new_labels[i - start]
    for i in range(start, stop):
        labels[i] = new_labels[i - start]
    return inertia, changed


@njit(inline="always", boundscheck=False, fastmath={"contract"})
def _lloyd_range(block, X, Ct, csq, k, weights, start, stop, previous, labels, sums, counts,
                 want_inertia, moves_only):
    """One fused Lloyd step over rows ``start:stop``: nearest centre, the
    row added (times its weight, unit weights when ``weights`` is empty)
    to its cluster's ``sums`` and ``counts`` (float64, in place), the label
    compared with ``previous`` (none where it is empty) and written to
    ``labels`` (which may be ``previous`` itself). Returns ``(inertia,
    n_changed)`` of these rows (inertia 0.0 unless ``want_inertia``).

    ``moves_only``: the sums are running sums of ``previous``, and only
    the rows that change cluster move from their old cluster's to their
    new one's (``_move_rows``)."""
    # Rows go in groups of SUB_ROWS: labelled by ``block`` (the tiles' loop
    # vectorises only alone in its function), then added to the sums while
    # still in the L1 cache. One read of X from memory.
    new_labels = np.empty(SUB_ROWS, dtype=labels.dtype)
    best = np.empty(SUB_ROWS, dtype=X.dtype)
    T, S = _scratch(X, Ct)
    acc = _aligned_sums(sums.shape[0], sums.shape[1])
    inertia = 0.0
    changed = 0
    for s0 in range(start, stop, SUB_ROWS):
        s1 = min(stop, s0 + SUB_ROWS)
        block(X, Ct, csq, k, s0, s1, new_labels, best, s0, T, S)
        if moves_only:
            e, c = _move_rows(X, s0, s1, new_labels, best, weights, previous, labels, acc,
                              counts, want_inertia)
        else:
            e, c = _add_rows(X, s0, s1, new_labels, best, weights, previous, labels, acc,
                             counts, want_inertia)
        inertia += e
        changed += c
    for j in range(sums.shape[0]):
        for f in range(sums.shape[1]):
            sums[j, f] += acc[j, f]
    return inertia, changed


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def lloyd_range_lanes8(X, Ct, csq, k, weights, start, stop, previous, labels, sums, counts,
                       want_inertia, moves_only):
    return _lloyd_range(_block_lanes8, X, Ct, csq, k, weights, start, stop, previous, labels,
                        sums, counts, want_inertia, moves_only)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def lloyd_range_tiles8(X, Ct, csq, k, weights, start, stop, previous, labels, sums, counts,
                       want_inertia, moves_only):
    return _lloyd_range(_block_tiles8, X, Ct, csq, k, weights, start, stop, previous, labels,
                        sums, counts, want_inertia, moves_only)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def lloyd_range_tiles16(X, Ct, csq, k, weights, start, stop, previous, labels, sums, counts,
                        want_inertia, moves_only):
    return _lloyd_range(_block_tiles16, X, Ct, csq, k, weights, start, stop, previous, labels,
                        sums, counts, want_inertia, moves_only)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def lloyd_range_rows16(X, Ct, csq, k, weights, start, stop, previous, labels, sums, counts,
                       want_inertia, moves_only):
    return _lloyd_range(_block_rows16, X, Ct, csq, k, weights, start, stop, previous, labels,
                        sums, counts, want_inertia, moves_only)


@njit(inline="always")
def _aligned_sums(k, d):
    """Zeroed float64 (k, >= d) sums whose rows start on 64-byte boundaries
    (row stride rounded up to ADD_CHUNK): ``_add_row``'s vector loads and
    stores then never straddle two cache lines, as they did on every row
    of a caller's ``sums`` 8 bytes off a boundary."""
    stride = -(-d // ADD_CHUNK) * ADD_CHUNK
    buf = np.zeros(k * stride + ADD_CHUNK, dtype=np.float64)
    o = (-buf.ctypes.data) % 64 // 8
    # C order, columns d: unused: a (k, d) view would be non-contiguous,
    # and numba's code for those indexes with strides it does not know.
    return buf[o:o + k * stride].reshape((k, stride))


@njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def lloyd_chunks(X, Ct, csq, k, weights, labels, n_chunks, want_inertia, variant):
    """``lloyd_range_*`` (``VARIANTS[variant]``; all four compiled here)
    over ``n_chunks`` equal ranges of rows in parallel,
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
        if variant == 0:
            e, m = lloyd_range_lanes8(X, Ct, csq, k, weights, start, stop, labels, labels,
                                      sums[c], counts[c], want_inertia, False)
        elif variant == 1:
            e, m = lloyd_range_tiles8(X, Ct, csq, k, weights, start, stop, labels, labels,
                                      sums[c], counts[c], want_inertia, False)
        elif variant == 2:
            e, m = lloyd_range_tiles16(X, Ct, csq, k, weights, start, stop, labels, labels,
                                       sums[c], counts[c], want_inertia, False)
        else:
            e, m = lloyd_range_rows16(X, Ct, csq, k, weights, start, stop, labels, labels,
                                      sums[c], counts[c], want_inertia, False)
        inertia[c] = e
        changed[c] = m
    return sums, counts, inertia, changed


@njit(parallel=True, nogil=True, cache=True, boundscheck=False)
def assign_chunks(X, Ct, csq, k, labels, partial, n_chunks, variant):
    """``assign_range_*`` (``VARIANTS[variant]``) over ``n_chunks`` equal
    ranges of rows in parallel."""
    n = X.shape[0]
    for c in prange(n_chunks):
        start, stop = n * c // n_chunks, n * (c + 1) // n_chunks
        if variant == 0:
            assign_range_lanes8(X, Ct, csq, k, start, stop, labels, partial, 0)
        elif variant == 1:
            assign_range_tiles8(X, Ct, csq, k, start, stop, labels, partial, 0)
        elif variant == 2:
            assign_range_tiles16(X, Ct, csq, k, start, stop, labels, partial, 0)
        else:
            assign_range_rows16(X, Ct, csq, k, start, stop, labels, partial, 0)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract", "reassoc"})
def labelled_sq_distances(X, C, labels, out):
    """``out[i] = sum((X[i] - C[labels[i]])**2)`` in X's dtype: the exact
    distances of ``Kernels.sq_distances_to`` in one pass over the rows
    (numpy gathers the centres, subtracts and sums: three). The sum is
    reassociated into vector lanes."""
    d = X.shape[1]
    for i in range(X.shape[0]):
        label = labels[i]
        acc = X[i, 0] - X[i, 0]
        for f in range(d):
            t = X[i, f] - C[label, f]
            acc += t * t
        out[i] = acc


# ---------------------------------------------------------------- k-means++

#: Candidate points per pass of ``potentials_range`` (k-means++ draws
#: 2 + ln k: at most 8 below k = 400), padded to this width.
POTENTIAL_WIDTH = TILE_CENTERS


def _scores_tile_kernel():
    """The register tile of ``TILE_ROWS`` rows against ``POTENTIAL_WIDTH``
    points that keeps every score: ``tile(X, i, Pt, d, out, offset)``
    writes ``x.Pt[:, j]`` of rows ``i:i+4`` into rows ``i - offset:`` of
    ``out``. Generated as ``_tile_kernel`` is (same order of sums)."""
    rows, cols = range(TILE_ROWS), range(POTENTIAL_WIDTH)
    body = ["ui = np.uint64(i)"]
    body += _tile_products(
        POTENTIAL_WIDTH, lambda f, j: f"Pt[{f}, np.uint64({j})]", lambda r, j: f"x{r} * c{j}"
    )
    body.append("o = np.uint64(i - offset)")
    body += [f"out[o + np.uint64({r}), np.uint64({j})] = a{r}_{j}" for r in rows for j in cols]
    return _jit_inline("tile(X, i, Pt, d, out, offset)", body, "scores tile")


_scores_tile = _scores_tile_kernel()


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _score_tiles(X, Pt, start, end, out, offset):
    """Every score of rows ``start:end`` (whole tiles), alone in its
    function for the tile's loop to vectorise (see ``assign_range_*``)."""
    d = X.shape[1]
    for i in range(start, end, TILE_ROWS):
        _scores_tile(X, i, Pt, d, out, offset)


@njit(nogil=True, cache=True, boundscheck=False, fastmath={"contract"})
def _score_rows(X, Pt, start, stop, out, offset):
    """``_score_tiles`` one row at a time (the rows short of a tile)."""
    d = X.shape[1]
    for i in range(start, stop):
        for j in range(POTENTIAL_WIDTH):
            acc = X[i, 0] * Pt[0, j]
            for f in range(1, d):
                acc += X[i, f] * Pt[f, j]
            out[i - offset, j] = acc


@njit(nogil=True, cache=True, boundscheck=False)
def _capped_distances(start, stop, out, offset, psq, xsq, closest, weights, d2, totals):
    """Scores of rows ``start:stop`` (in ``out``) to capped squared
    distances in ``d2`` and their weighted sums in ``totals``."""
    n_points = d2.shape[1]
    unit = weights.shape[0] == 0
    has_closest = closest.shape[0] > 0
    for i in range(start, stop):
        s = xsq[i]
        w = 1.0 if unit else np.float64(weights[i])
        cap = closest[i] if has_closest else np.inf
        for j in range(n_points):
            # The order of numpy's ``(||x||^2 + x.(-2p)) + ||p||^2``.
            v = (s + out[i - offset, j]) + psq[j]
            if v < 0:
                v = 0
            if cap < v:
                v = cap
            d2[i, j] = v
            totals[j] += w * np.float64(d2[i, j])


@njit(nogil=True, cache=True, boundscheck=False)
def potentials_range(X, Pt, psq, xsq, closest, weights, d2, totals):
    """k-means++'s evaluation of up to ``POTENTIAL_WIDTH`` candidate points
    over the rows of X, in one pass: ``d2[i, j] = min(max((xsq[i] +
    x_i.Pt[:, j]) + psq[j], 0), closest[i])`` and ``totals[j] += w_i
    d2[i, j]`` (float64, added in place).

    ``Pt`` is ``-2 P^T`` of shape (n_features, POTENTIAL_WIDTH), unused
    columns zero, ``psq`` the points' ``||p||^2`` and ``xsq`` the rows'.
    An empty ``closest`` means no cap, empty ``weights`` unit weights.
    ``d2`` has shape (n_rows, n_points), the real points only. Rows go in
    groups of SUB_ROWS whose scores stay in the L1 cache.
    """
    n = X.shape[0]
    out = np.empty((SUB_ROWS, POTENTIAL_WIDTH), dtype=X.dtype)
    for s0 in range(0, n, SUB_ROWS):
        s1 = min(n, s0 + SUB_ROWS)
        end = s0 + (s1 - s0) // TILE_ROWS * TILE_ROWS
        _score_tiles(X, Pt, s0, end, out, s0)
        _score_rows(X, Pt, end, s1, out, s0)
        _capped_distances(s0, s1, out, s0, psq, xsq, closest, weights, d2, totals)
