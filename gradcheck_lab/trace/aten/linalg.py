"""Linear algebra: factorizations and solves as the ``ops.matrix`` functions (their results
that carry no gradient, LU factors, pivots and error codes, are left unbound: constants)."""

from __future__ import annotations

import numpy as np

from gradcheck_lab.ops.matrix import column_signs
from gradcheck_lab.ops.structure import PART
from gradcheck_lab.trace.aten.table import KEEPS_RESULTS, RESULTS, Args, Writer, register


def _parts(w: Writer, op: str, node: int, count: int, **params: object) -> tuple[int, ...]:
    return tuple(w.call(op, node, **params, **{PART: k}) for k in range(count))


def _signed_like(w: Writer, vectors: int, recorded: np.ndarray | None) -> int:
    """Vectors the language signs its own way (largest entry positive), with the signs
    the run's LAPACK gave them: a constant sign per column, locally constant, as the
    kernel's choice is."""
    if recorded is None:
        return vectors
    signs = column_signs(recorded)
    return vectors if np.all(signs == 1) else w.call("mul", vectors, w.node(signs))


def _recorded(a: Args, k: int) -> np.ndarray | None:
    results = a[RESULTS]
    return results[k].recorded if len(results) > k and results[k] is not None else None


def _svd(w: Writer, a: Args) -> tuple[int | None, ...]:
    """_linalg_svd(A, full_matrices, compute_uv) -> (U, S, Vh), U and Vh signed as LAPACK
    signed them in the run (Vh's rows by U's columns, as the SVD pairs them)."""
    matrix = w.node(a["A"])
    if not a["compute_uv"]:
        return None, w.call("svdvals", matrix), None
    u, s, vh = _parts(w, "svd", matrix, 3, full_matrices=bool(a["full_matrices"]))
    recorded = _recorded(a, 0)
    if recorded is None:
        return u, s, vh
    signs = column_signs(recorded)  # (..., 1, k): U's columns; Vh's first k rows follow
    if np.all(signs == 1):
        return u, s, vh
    row_signs = np.ones((*w.shape(vh)[:-1], 1))
    count = min(signs.shape[-1], row_signs.shape[-2])
    row_signs[..., :count, :] = np.swapaxes(signs, -1, -2)[..., :count, :]
    return w.call("mul", u, w.node(signs)), s, w.call("mul", vh, w.node(row_signs))


def _eigh(w: Writer, a: Args) -> tuple[int | None, ...]:
    """_linalg_eigh(A, UPLO, compute_v) -> (eigenvalues, eigenvectors), the eigenvectors
    signed as LAPACK signed them in the run."""
    matrix = w.node(a["A"])
    if not a["compute_v"]:
        return w.call("eigvalsh", matrix, UPLO=a["UPLO"]), None
    values, vectors = _parts(w, "eigh", matrix, 2, UPLO=a["UPLO"])
    return values, _signed_like(w, vectors, _recorded(a, 1))


def _triangular(w: Writer, matrix: int, upper: bool, unitriangular: bool) -> int:
    """The triangle a triangular solve reads (its diagonal taken as ones when unit)."""
    triangle = w.call("triu" if upper else "tril", matrix,
                      diagonal=(1 if upper else -1) if unitriangular else 0)
    if not unitriangular:
        return triangle
    return w.call("add", triangle, w.node(np.eye(w.shape(matrix)[-1])))


def _solve_triangular(w: Writer, a: Args) -> int:
    """linalg_solve_triangular(A, B, upper, left, unitriangular)."""
    matrix = _triangular(w, w.node(a["self"]), bool(a["upper"]), bool(a["unitriangular"]))
    return w.call("solve", matrix, w.node(a["B"]), left=bool(a["left"]))


def _triangular_solve(w: Writer, a: Args) -> tuple[int, None]:
    """triangular_solve(b, A, upper, transpose, unitriangular) -> (X, A's copy)."""
    matrix = _triangular(w, w.node(a["A"]), bool(a["upper"]), bool(a["unitriangular"]))
    if a["transpose"]:
        matrix = w.call("transpose", matrix, dim0=-2, dim1=-1)
    return w.call("solve", matrix, w.node(a["self"])), None


def _cholesky_solve(w: Writer, a: Args) -> int:
    """cholesky_solve(B, L, upper): the solve with L Lᵀ (or Uᵀ U)."""
    factor = w.node(a["input2"])
    transposed = w.call("transpose", factor, dim0=-2, dim1=-1)
    product = (w.call("matmul", transposed, factor) if a["upper"]
               else w.call("matmul", factor, transposed))
    return w.call("solve", product, w.node(a["self"]))


def _cross(w: Writer, a: Args) -> int:
    """linalg_cross(a, b, dim): a[i+1]·b[i+2] - a[i+2]·b[i+1], the shifts as rolls."""
    dim = int(a["dim"])
    first, second = w.node(a["self"]), w.node(a["other"])

    def rolled(node: int, shift: int) -> int:
        return w.call("roll", node, shifts=(shift,), dims=(dim,))

    return w.call("sub", w.call("mul", rolled(first, -1), rolled(second, -2)),
                  w.call("mul", rolled(first, -2), rolled(second, -1)))


register("aten._linalg_svd.default", _svd)
register("aten._linalg_eigh.default", _eigh)
KEEPS_RESULTS.update({"aten._linalg_svd.default", "aten._linalg_eigh.default"})
register("aten.linalg_inv_ex.default",
         lambda w, a: (w.call("inv", w.node(a["A"])), None))
register("aten._linalg_det.default", lambda w, a: (w.call("det", w.node(a["A"])), None, None))
register("aten._linalg_slogdet.default",
         lambda w, a: (*_parts(w, "slogdet", w.node(a["A"]), 2), None, None))
register("aten._linalg_solve_ex.default", lambda w, a: (
    w.call("solve", w.node(a["A"]), w.node(a["B"]), left=bool(a["left"])), None, None, None))
register("aten.linalg_cholesky_ex.default", lambda w, a: (
    w.call("cholesky", w.node(a["self"]), upper=bool(a["upper"])), None))
register("aten.cholesky.default",
         lambda w, a: w.call("cholesky", w.node(a["self"]), upper=bool(a["upper"])))
register("aten.linalg_qr.default", lambda w, a: _parts(w, "qr", w.node(a["A"]), 2,
                                                      mode=a["mode"]))
register("aten.linalg_matrix_exp.default",
         lambda w, a: w.call("matrix_exp", w.node(a["self"])))
register("aten.trace.default", lambda w, a: w.call("trace", w.node(a["self"])))
register("aten.linalg_solve_triangular.default", _solve_triangular)
register("aten.triangular_solve.default", _triangular_solve)
register("aten.cholesky_solve.default", _cholesky_solve)
register("aten.linalg_cross.default", _cross)
