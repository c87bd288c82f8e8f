"""Matrix functions, with torch.linalg's semantics over batch dims ``(..., n, n)``: inv solve
det slogdet cholesky qr eigh eigvalsh svd svdvals matrix_exp. Several results of one call
(``eigh(A)[1]``) are picked with [k], through the hidden PART keyword, as split's pieces are.

Each op has a numpy forward (np.linalg; a Padé expm), the closed-form VJP of the
matrix-calculus literature, the formulas torch's own backward uses (Giles 2008 for inv, solve
and det; Murray 2016 for cholesky; Townsend 2016 for svd; the block-matrix identity for exp),
that VJP on absolute values as its magnitude rule, and where sympy affords it (inv solve det
slogdet cholesky, up to 3 x 3) a sympy form. Three things differ from a plain np.linalg call:

* Signs. An eigenvector or singular vector is defined up to its sign, and numpy's LAPACK
  (OpenBLAS) and torch's (MKL) pick differently for about 40% of random matrices. Both forms
  here sign each eigenvector, and each column of U (Vh's row following), so that its entry of
  largest magnitude is positive; where two such entries of opposite sign tie, that sign jumps:
  a kink. QR keeps LAPACK's Householder signs, which numpy and torch share, and which jump
  where a Householder pivot crosses 0 or a column is already 0 below the diagonal: a kink too.
* Symmetric input. eigh, eigvalsh and cholesky read one triangle of A, as torch does, and
  their gradient is torch's: that of the symmetric part (A + Aᵀ)/2. Give them a symmetric A
  (X + transpose(X, -2, -1)); finite differences of one entry of a raw A see one triangle.
* The complex step. The second-order sweep evaluates the forward and the VJP at A + i·h·Ȧ.
  inv, solve, det and exp are analytic there, but a complex eigensolver, SVD, QR or Cholesky
  conjugates (Hermitian semantics). For complex input these factor the real part and carry
  the imaginary part by the first-order perturbation formula (the op's JVP), which is exact:
  the step's O(h²) lies below float64's resolution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops.base import (
    ArgInfo,
    Arrays,
    Gradients,
    Op,
    Param,
    Params,
    Shape,
    as_float,
    broadcast_shapes,
    check_kernel_cost,
    object_array,
    torch_module,
    unbroadcast,
)
from gradcheck_lab.ops.structure import PART

# What several results of one call are, by name (part k of the torch call's tuple).
PARTS = {"slogdet": ("sign", "logabsdet"), "qr": ("Q", "R"),
         "eigh": ("eigenvalues", "eigenvectors"), "svd": ("U", "S", "Vh")}
# sympy's Matrix methods (adjugate, det, cholesky) over symbols stay quick up to 3 x 3; a
# 4 x 4 adjugate already holds 3! products per entry over a det of 4! terms.
EXACT_MAX_SIZE = 3
# A tie (of eigenvalues, of an eigenvector's largest entries, a Householder pivot at 0) is
# counted as one when it holds to float32's rounding of the computation: 64·n ulps of float32,
# relative to the matrix's scale. An oracle that computes in float32 may land on either side of
# a closer call, and the finite differences step across it.
TIE_RTOL = 64 * float(np.finfo(np.float32).eps)


# --- helpers ----------------------------------------------------------------------------------


def _mt(x: np.ndarray) -> np.ndarray:
    return np.swapaxes(x, -1, -2)


def _sym(x: np.ndarray) -> np.ndarray:
    return (x + _mt(x)) / 2


def _diagonal(x: np.ndarray) -> np.ndarray:
    return np.diagonal(x, axis1=-2, axis2=-1)


def _diag_embed(v: np.ndarray) -> np.ndarray:
    return v[..., :, None] * np.eye(v.shape[-1])


def _inverse_gaps(values: np.ndarray) -> np.ndarray:
    """F[i, j] = 1 / (values[j] - values[i]) off the diagonal, 0 on it (where a formula's
    numerator is 0 too)."""
    eye = np.eye(values.shape[-1], dtype=bool)
    gaps = values[..., None, :] - values[..., :, None]
    return np.where(eye, 0.0, 1.0 / np.where(eye, 1.0, gaps))


def _abs_if(magnitude: bool, *arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays, or their absolute values for a magnitude rule (which sums |terms|)."""
    return [np.abs(a) if magnitude else a for a in arrays]


def _minus(a: np.ndarray, b: np.ndarray, magnitude: bool) -> np.ndarray:
    return a + b if magnitude else a - b


def _linalg(function: Callable[..., Any], name: str, *args: Any, **kwargs: Any) -> Any:
    """np.linalg's call, with its LinAlgError as the op's SpecError (torch fails there too)."""
    try:
        return function(*args, **kwargs)
    except np.linalg.LinAlgError as exc:
        reason = {"inv": "A is singular", "solve": "A is singular",
                  "cholesky": "A is not positive definite"}.get(name, str(exc))
        raise SpecError(f"{name}(): {reason}") from None


def _inverse(a: np.ndarray) -> np.ndarray:
    """A^{-1}, nan where A is singular (a rule's value there, never an exception)."""
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        return np.full(np.shape(a), np.nan)


def _real_and_step(a: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A factorization's real matrix, and the complex step's imaginary part (or None)."""
    if np.iscomplexobj(a):
        return a.real, a.imag
    return np.asarray(a, dtype=np.float64), None


def _part(name: str, params: Params) -> int:
    names = PARTS[name]
    part = params.get(PART)
    if not isinstance(part, int) or not -len(names) <= part < len(names):
        raise SpecError(f"{name}() gives {len(names)} tensors ({', '.join(names)}): pick one "
                        f"with [k], -{len(names)} <= k < {len(names)}; [{part}] is not one")
    return part % len(names)


def column_signs(vectors: np.ndarray) -> np.ndarray:
    """(..., 1, k): the sign that makes each column's entry of largest magnitude positive
    (how eigenvectors and singular vectors are signed here; a traced forward matches
    LAPACK's own signs by it)."""
    at = np.argmax(np.abs(vectors), axis=-2)[..., None, :]
    return np.sign(np.take_along_axis(vectors, at, axis=-2))


def _torch_signs(vectors: Any) -> Any:
    """``_signs`` in torch, held constant (detached) as the sign is locally."""
    torch = torch_module()
    at = vectors.abs().argmax(dim=-2, keepdim=True)
    return torch.sign(torch.gather(vectors, -2, at)).detach()


# --- shape rules ------------------------------------------------------------------------------


def _matrix(name: str, shape: Shape, square: bool = True) -> tuple[int, int]:
    if len(shape) < 2:
        raise SpecError(f"{name}(): A must be a matrix (..., m, n), got shape {list(shape)}")
    m, n = shape[-2:]
    if square and m != n:
        raise SpecError(f"{name}(): A must be square (..., n, n), got shape {list(shape)}")
    if 0 in shape:
        raise SpecError(f"{name}(): A is empty (shape {list(shape)})")
    return m, n


# The operations of the costliest single LAPACK or BLAS call among an op's forms (forward,
# VJP, kinks, complex step) for one m x n matrix, by the textbook counts (Golub & Van Loan),
# with M = max(m, n) and k = min(m, n): a product of two n x n matrices is 2n³ (every rule has
# some), an SVD with its vectors 6Mk² + 20k³ (det's cofactors and the kinks of svd and
# svdvals take one), a symmetric eigensolver with its vectors 9n³ (eigvalsh's forward and
# kinks compute them too), a QR with Q formed 4mnk, and matrix_exp's VJP exponentiates a
# 2n x 2n block (products of 16n³).
def _svd_flops(m: int, n: int) -> int:
    big, k = max(m, n), min(m, n)
    return 6 * big * k * k + 20 * k**3


KERNEL_FLOPS: dict[str, Callable[[int, int], int]] = {
    "inv": lambda m, n: 2 * n**3,
    "det": _svd_flops,
    "slogdet": lambda m, n: 4 * n**3,
    "cholesky": lambda m, n: 2 * n**3,
    "qr": lambda m, n: 4 * m * n * min(m, n),
    "eigh": lambda m, n: 9 * n**3,
    "eigvalsh": lambda m, n: 9 * n**3,
    "svd": _svd_flops,
    "svdvals": _svd_flops,
    "matrix_exp": lambda m, n: 16 * n**3,
}


def check_matrix_cost(name: str, shape: Shape, flops: int | None = None) -> None:
    """Refuse, from A's shape, an op whose one call over the batch of matrices (np.linalg
    takes the whole stack in one call) would take more than MAX_KERNEL_FLOPS operations."""
    m, n = shape[-2:]
    batch = math.prod(shape[:-2])
    total = batch * (KERNEL_FLOPS[name](m, n) if flops is None else flops)
    stack = f" (a batch of {batch})" if batch > 1 else ""
    check_kernel_cost(name, f"a {m} x {n} A{stack}", total, "use a smaller matrix")


def _square(name: str, result: Callable[[Shape, int, Params], Shape]) -> Callable[..., Shape]:
    """A shape rule for an op of one square matrix: ``result(batch, n, params)``."""

    def rule(args: Sequence[ArgInfo], params: Params) -> Shape:
        n, _ = _matrix(name, args[0].shape)
        check_matrix_cost(name, args[0].shape)
        if PART in params:
            _part(name, params)  # one of its results, picked by [k]
        return result(args[0].shape[:-2], n, params)

    return rule


def _vector_rhs(a: Shape, b: Shape) -> bool:
    """torch.linalg.solve's rule: B is a (batch of) vector(s) when it is 1-d or has A's shape
    without its last dim."""
    return len(b) == 1 or (len(b) == len(a) - 1 and tuple(b) == tuple(a[:-1]))


def _solve_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    a, b = args[0].shape, args[1].shape
    n, _ = _matrix("solve", a)
    if not b:
        raise SpecError("solve(): B must be a vector (..., n) or a matrix (..., n, k), got a "
                        "0-d tensor")
    if 0 in b:
        raise SpecError(f"solve(): B is empty (shape {list(b)})")
    if _vector_rhs(a, b):
        if not params["left"]:
            raise SpecError("solve(): a vector B with left=False is not supported, as in "
                            "torch (X A = B needs B of shape (..., k, n))")
        batch_b, rows = b[:-1], b[-1]
    else:
        batch_b, rows = b[:-2], (b[-2] if params["left"] else b[-1])  # B is at least 2-d
    if rows != n:
        side = "(..., n, k)" if params["left"] else "(..., k, n)"
        raise SpecError(f"solve(): B must be a vector (..., {n}) or a matrix {side} with "
                        f"n = {n} to match A {list(a)}, got shape {list(b)}")
    try:
        batch = broadcast_shapes(a[:-2], batch_b)
    except SpecError:
        raise SpecError(f"solve(): the batch dims of A {list(a)} and B {list(b)} cannot be "
                        "broadcast together") from None
    columns = 1 if _vector_rhs(a, b) else b[-1] if params["left"] else b[-2]
    # LU, A's inverse (the magnitude rule) and the products with B: 2n³ + 2n²k per matrix.
    check_matrix_cost("solve", (*batch, n, n), 2 * n**3 + 2 * n * n * columns)
    return (*batch, n) if _vector_rhs(a, b) else (*batch, *b[-2:])


def _qr_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    m, n = _matrix("qr", args[0].shape, square=False)
    check_matrix_cost("qr", args[0].shape)
    if params["mode"] == "r":
        raise SpecError("qr(): mode='r' computes no Q, and torch cannot differentiate it: use "
                        "mode='reduced'")
    if params["mode"] == "complete" and m > n:
        raise SpecError(f"qr(): mode='complete' of a {m} x {n} matrix (more rows than "
                        "columns) has no derivative, as in torch: use mode='reduced'")
    k, batch = min(m, n), args[0].shape[:-2]
    return (*batch, m, k) if _part("qr", params) == 0 else (*batch, k, n)


def _svd_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    m, n = _matrix("svd", args[0].shape, square=False)
    check_matrix_cost("svd", args[0].shape)
    k, batch, part = min(m, n), args[0].shape[:-2], _part("svd", params)
    if params["full_matrices"] and m != n and part != 1:
        raise SpecError(f"svd(): full_matrices=True of a {m} x {n} matrix: the {max(m, n) - k} "
                        "extra singular vectors are not determined by A, and have no "
                        "gradient (torch drops theirs): write full_matrices=False")
    return ((*batch, m, k), (*batch, k), (*batch, k, n))[part]


def _svdvals_shape(args: Sequence[ArgInfo], params: Params) -> Shape:
    m, n = _matrix("svdvals", args[0].shape, square=False)
    check_matrix_cost("svdvals", args[0].shape)
    return (*args[0].shape[:-2], min(m, n))


# --- factorizations, complex-step aware -------------------------------------------------------


def _eigh(a: np.ndarray, uplo: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and signed eigenvectors; for a complex step, the perturbation
    dλ = diag(Vᵀ dA V), dV = V ((Vᵀ dA V) / (λ_j - λ_i)) of the symmetric part of the step."""
    real, step = _real_and_step(a)
    values, vectors = _linalg(np.linalg.eigh, "eigh", real, UPLO=uplo)
    vectors = vectors * column_signs(vectors)
    if step is None:
        return values, vectors
    moved = _mt(vectors) @ _sym(step) @ vectors
    return (values + 1j * _diagonal(moved),
            vectors + 1j * (vectors @ (moved * _inverse_gaps(values))))


def _svd(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reduced SVD, U's columns signed (Vh's rows following); for a complex step, the
    perturbation of torch's linalg_svd_jvp."""
    real, step = _real_and_step(a)
    u, s, vh = _linalg(np.linalg.svd, "svd", real, full_matrices=False)
    signs = column_signs(u)
    u, vh = u * signs, vh * _mt(signs)
    if step is None:
        return u, s, vh
    du, ds, dvh = _svd_tangents(step, u, s, vh)
    return u + 1j * du, s + 1j * ds, vh + 1j * dvh


def _svd_tangents(da: np.ndarray, u: np.ndarray, s: np.ndarray,
                  vh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dS = diag(P) with P = Uᵀ dA V; dU, dVh from P's off-diagonal part over S_j² - S_i²;
    a rectangular A adds the part of dA outside U's (or V's) span."""
    m, n = da.shape[-2:]
    v = _mt(vh)
    moved = _mt(u) @ da @ v
    ds = _diagonal(moved)
    off = moved - _diag_embed(ds)
    gaps = _inverse_gaps(s * s)
    right, left = off * s[..., None, :], off * -s[..., :, None]
    du = u @ ((right + _mt(right)) * gaps)
    dvh = ((left + _mt(left)) * gaps) @ vh
    if m > n:
        outside = da @ (v / s[..., None, :])
        du = du + outside - u @ (_mt(u) @ outside)
    if m < n:
        outside = (_mt(u) / s[..., :, None]) @ da
        dvh = dvh + outside - (outside @ v) @ vh
    return du, ds, dvh


def _times_inverse(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """X R^{-1} for a square R; nan where R is singular (a loss of rank, one of qr's kinks)."""
    try:
        return _mt(np.linalg.solve(_mt(r), _mt(x)))
    except np.linalg.LinAlgError:
        return np.full(np.broadcast_shapes(np.shape(x), np.shape(r)), np.nan)


def _qr(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reduced QR with LAPACK's signs; for a complex step, torch's linalg_qr_jvp."""
    real, step = _real_and_step(a)
    q, r = _linalg(np.linalg.qr, "qr", real, mode="reduced")
    if step is None:
        return q, r
    m, n = a.shape[-2:]
    if m >= n:
        moved = _times_inverse(step, r)
        x = _mt(q) @ moved
        dr = np.triu(x + _mt(x))
        dr = dr - _diag_embed(_diagonal(dr)) / 2
        dq, dr = moved - q @ dr, dr @ r
    else:
        projected = _mt(q) @ step
        x = np.tril(_times_inverse(projected[..., :m], r[..., :m]), -1)
        skew = x - _mt(x)
        dq, dr = q @ skew, projected - skew @ r
    return q + 1j * dq, r + 1j * dr


def _cholesky(a: np.ndarray, upper: bool) -> np.ndarray:
    """L (or U = Lᵀ, from A's upper triangle, as torch); for a complex step,
    dL = L Φ(L⁻¹ dA L⁻ᵀ), Φ the lower triangle with its diagonal halved."""
    real, step = _real_and_step(a)
    lower = _linalg(np.linalg.cholesky, "cholesky", _mt(real) if upper else real)
    if step is not None:
        inverse = np.linalg.inv(lower)
        x = np.tril(inverse @ _sym(step) @ _mt(inverse))
        lower = lower + 1j * (lower @ (x - _diag_embed(_diagonal(x)) / 2))
    return _mt(lower) if upper else lower


def _slogdet(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sign, log|det|); for a complex step, d log|det| = tr(A⁻¹ dA)."""
    real, step = _real_and_step(a)
    sign, logabsdet = np.linalg.slogdet(real)
    if step is None:
        return sign, logabsdet
    return sign, logabsdet + 1j * np.trace(_linalg(np.linalg.solve, "slogdet", real, step),
                                           axis1=-2, axis2=-1)


# Higham (2005), "The scaling and squaring method for the matrix exponential revisited":
# the [13/13] Padé approximant is accurate to double precision for ||A||_1 <= THETA_13.
PADE_13 = (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
           129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
           40840800.0, 960960.0, 16380.0, 182.0, 1.0)
THETA_13 = 5.371920351148152


def expm(a: np.ndarray) -> np.ndarray:
    """e^A over the last two dims by Padé scaling and squaring: analytic in A's entries, so it
    takes a complex step (the scaling depends on |A|, which the step does not move)."""
    a = as_float(a)
    norms = np.max(np.sum(np.abs(a), axis=-2), axis=-1)
    if not np.all(np.isfinite(norms)):
        return np.full(a.shape, np.nan)
    with np.errstate(divide="ignore"):
        squarings = np.maximum(0, np.ceil(np.log2(norms / THETA_13))).astype(np.int64)
    x = a / (2.0 ** squarings)[..., None, None]
    b, eye = PADE_13, np.eye(a.shape[-1])
    x2 = x @ x
    x4 = x2 @ x2
    x6 = x4 @ x2
    odd = x @ (x6 @ (b[13] * x6 + b[11] * x4 + b[9] * x2) + b[7] * x6 + b[5] * x4
               + b[3] * x2 + b[1] * eye)
    even = x6 @ (b[12] * x6 + b[10] * x4 + b[8] * x2) + b[6] * x6 + b[4] * x4 + b[2] * x2 \
        + b[0] * eye
    result = np.linalg.solve(even - odd, even + odd)
    for k in range(int(np.max(squarings, initial=0))):
        result = np.where((k < squarings)[..., None, None], result @ result, result)
    return result


# --- VJP rules: each written once, its magnitude rule the same sum over |terms| ---------------

Rule = Callable[[np.ndarray, Arrays, np.ndarray, Params, bool], np.ndarray]


def _rules(rule: Rule) -> tuple[Callable[..., Gradients], Callable[..., Gradients]]:
    """An op's VJP and magnitude rule from ``rule(g, args, out, params, magnitude)``, the
    gradient of its one argument; with ``magnitude`` every factor is taken absolute and every
    difference becomes a sum, which bounds |g|·|J| by the triangle inequality."""

    def vjp(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
            needs: Sequence[bool]) -> Gradients:
        return [rule(g, args, out, params, False) if needs[0] else None]

    def magnitude(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                  needs: Sequence[bool]) -> Gradients:
        return [rule(g, args, out, params, True) if needs[0] else None]

    return vjp, magnitude


def _inv_rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
              magnitude: bool) -> np.ndarray:
    """Y = A⁻¹: gA = -Yᵀ G Yᵀ."""
    inverse_t, g = _abs_if(magnitude, _mt(out), g)
    grad = inverse_t @ g @ inverse_t
    return grad if magnitude else -grad


def _det_rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
              magnitude: bool) -> np.ndarray:
    """gA = g·cof(A). det(A)·A⁻ᵀ for a complex step (analytic); otherwise, as torch does for a
    singular A, U diag(det(U)det(Vh)·Π_{j≠i} s_j) Vh, which holds at every A."""
    a = args[0]
    if np.iscomplexobj(a):
        return (g * out)[..., None, None] * _inverse(_mt(a))
    u, s, vh = _linalg(np.linalg.svd, "det", np.asarray(a, dtype=np.float64))
    ones = np.ones((*s.shape[:-1], 1))
    before = np.cumprod(np.concatenate([ones, s[..., :-1]], axis=-1), axis=-1)
    after = np.cumprod(np.concatenate([ones, s[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    scale = np.linalg.det(u) * np.linalg.det(vh) * g
    u, scaled, vh = _abs_if(magnitude, u, scale[..., None] * before * after, vh)
    return (u * scaled[..., None, :]) @ vh


def _slogdet_rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                  magnitude: bool) -> np.ndarray:
    """The sign is locally constant: no gradient (0). log|det|: gA = g·A⁻ᵀ."""
    if _part("slogdet", params) == 0:
        return np.zeros(np.shape(args[0]), dtype=np.result_type(args[0], g))
    inverse_t, g = _abs_if(magnitude, _inverse(_mt(args[0])), g)
    return g[..., None, None] * inverse_t


def _cholesky_rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                   magnitude: bool) -> np.ndarray:
    """torch's (Murray 2016), symmetric: gA = L⁻ᵀ S L⁻¹ with P = tril(Lᵀ gL) and
    S = (P + tril(P, -1)ᵀ) / 2."""
    upper = bool(params["upper"])
    lower, g_lower = (_mt(out), _mt(g)) if upper else (out, g)
    lower, g_lower, inverse = _abs_if(magnitude, lower, g_lower, _inverse(lower))
    p = np.tril(_mt(lower) @ g_lower)
    return _mt(inverse) @ ((p + _mt(np.tril(p, -1))) / 2) @ inverse


def _matrix_exp_rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
                     magnitude: bool) -> np.ndarray:
    """gA = the upper right block of exp([[Aᵀ, G], [0, Aᵀ]]) (Mathias 1996); on |A| and |G|
    it bounds the terms, as |e^{sA}| <= e^{s|A|} entrywise."""
    a, g = _abs_if(magnitude, args[0], g)
    n = a.shape[-1]
    block = np.zeros((*np.broadcast_shapes(a.shape, g.shape)[:-2], 2 * n, 2 * n),
                     dtype=np.result_type(a, g))
    block[..., :n, :n] = block[..., n:, n:] = _mt(a)
    block[..., :n, n:] = g
    return expm(block)[..., :n, n:]


def _eigh_rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
               magnitude: bool) -> np.ndarray:
    """torch's: gA = V (diag(gλ) + skew(Vᵀ gV) / 2 / (λ_j - λ_i)) Vᵀ, symmetric."""
    values, vectors = _eigh(args[0], str(params["UPLO"]))
    part = _part("eigh", params) if PART in params else 0  # eigvalsh: the eigenvalues
    vectors, g, gaps = _abs_if(magnitude, vectors, g, _inverse_gaps(values))
    if part == 0:
        inner = _diag_embed(g)
    else:
        x = _mt(vectors) @ g
        inner = _minus(x, _mt(x), magnitude) / 2 * gaps
    return vectors @ inner @ _mt(vectors)


def _svd_rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
              magnitude: bool) -> np.ndarray:
    """torch's svd_backward: U diag(gS) Vh for S; for U (or Vh) U [skew(UᵀgU)/E S] Vh
    (or U [S skew(Vᵀ gV)/E] Vh), E_ij = S_j² - S_i², plus gU's part outside U's span over S
    when A has more rows (gVh's outside V's when more columns)."""
    u, s, vh = _svd(args[0])
    part = _part("svd", params) if PART in params else 1  # svdvals: S
    m, n = np.shape(args[0])[-2:]
    u, s, vh, g, gaps = _abs_if(magnitude, u, s, vh, g, _inverse_gaps(s * s))
    if part == 1:
        return (u * g[..., None, :]) @ vh
    if part == 0:
        x = _mt(u) @ g
        inner = _minus(x, _mt(x), magnitude) * gaps * s[..., None, :]
        if m > n:
            outside = g / s[..., None, :]
            return (u @ inner + _minus(outside, u @ (_mt(u) @ outside), magnitude)) @ vh
    else:
        x = vh @ _mt(g)
        inner = s[..., :, None] * (_minus(x, _mt(x), magnitude) * gaps)
        if m < n:
            outside = g / s[..., :, None]
            return u @ (inner @ vh + _minus(outside, (outside @ _mt(vh)) @ vh, magnitude))
    return u @ inner @ vh


def _qr_rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
             magnitude: bool) -> np.ndarray:
    """torch's linalg_qr_backward: with M = gR Rᵀ - Qᵀ gQ, gA = (Q copyltu(M) + gQ) R⁻ᵀ for
    m >= n; else [Q tril(Mᵀ - M) R₁⁻ᵀ, 0] + Q gR, R₁ R's leading square block."""
    q, r = _qr(args[0])
    m, n = np.shape(args[0])[-2:]
    part = _part("qr", params)
    inverse = _inverse(r[..., :, :min(m, n)])
    q, r, g, inverse = _abs_if(magnitude, q, r, g, inverse)
    mixed = g @ _mt(r) if part == 1 else _mt(q) @ g
    mixed = mixed if part == 1 or magnitude else -mixed
    if m >= n:
        upper = np.triu(mixed)
        grad = q @ (upper + _mt(np.triu(upper, 1)))
        grad = grad + g if part == 0 else grad
        return grad @ _mt(inverse) if magnitude else _times_inverse(grad, _mt(r))
    lower = np.tril(_minus(_mt(mixed), mixed, magnitude))
    square = q @ lower @ _mt(inverse)
    grad = np.concatenate([square, np.zeros((*square.shape[:-1], n - m))], axis=-1)
    return grad + q @ g if part == 1 else grad


def _solve_rules() -> tuple[Callable[..., Gradients], Callable[..., Gradients]]:
    """X = A⁻¹ B: gB = A⁻ᵀ G, gA = -gB Xᵀ, summed over broadcast batch dims; X A = B
    (left=False) is Aᵀ Xᵀ = Bᵀ."""

    def rule(g: np.ndarray, args: Arrays, out: np.ndarray, params: Params,
             needs: Sequence[bool], magnitude: bool) -> Gradients:
        a, b = args
        vector, left = _vector_rhs(np.shape(a), np.shape(b)), bool(params["left"])
        if not left:
            a, b, out, g = _mt(a), _mt(b), _mt(out), _mt(g)
        b_matrix, x, g = (v[..., None] if vector else v for v in (b, out, g))
        if magnitude:
            grad_b = np.abs(_inverse(_mt(a))) @ np.abs(g)
            grad_a = grad_b @ np.abs(_mt(x))
        else:
            grad_b = _linalg(np.linalg.solve, "solve", _mt(a), g)
            grad_a = -grad_b @ _mt(x)
        grads = [unbroadcast(grad_a, np.shape(a)),
                 unbroadcast(grad_b, np.shape(b_matrix)).reshape(np.shape(b))]
        return [None if not need else grad if left else _mt(grad)
                for grad, need in zip(grads, needs, strict=True)]

    return (lambda g, args, out, params, needs: rule(g, args, out, params, needs, False),
            lambda g, args, out, params, needs: rule(g, args, out, params, needs, True))


# --- kinks --------------------------------------------------------------------------------------


def _per_matrix(flags: np.ndarray, shape: Shape) -> np.ndarray:
    """A kink mask over A: every element of each matrix whose flag is set."""
    return np.broadcast_to(np.asarray(flags, dtype=bool)[..., None, None], shape).copy()


def _sign_ties(vectors: np.ndarray, tolerance: np.ndarray) -> np.ndarray:
    """Per matrix: a column whose entries of largest magnitude (to ``tolerance``, per column)
    have both signs, where ``_signs`` jumps."""
    size = np.abs(vectors)
    near = size >= np.max(size, axis=-2, keepdims=True) - tolerance[..., None, :]
    return np.any(np.any(near & (vectors > 0), axis=-2) & np.any(near & (vectors < 0), axis=-2),
                  axis=-1)


def _isolation(values: np.ndarray) -> np.ndarray:
    """Each value's distance to its nearest other one (inf for a single value)."""
    gaps = np.abs(values[..., None, :] - values[..., :, None])
    gaps = np.where(np.eye(values.shape[-1], dtype=bool), np.inf, gaps)
    return np.min(gaps, axis=-1)


def _eigen_kinks(vectors: bool) -> Callable[[Sequence[np.ndarray], Params], np.ndarray]:
    """A tie of two eigenvalues (the sorted values' kink; eigenvectors undetermined), and for
    the eigenvectors a tie for one's largest entry with both signs."""

    def kinks(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
        a = np.asarray(args[0], dtype=np.float64)
        values, eigenvectors = np.linalg.eigh(a, UPLO="U" if params["UPLO"] == "U" else "L")
        n = values.shape[-1]
        scale = np.max(np.abs(values), axis=-1, keepdims=True)
        ties = np.any(np.diff(values, axis=-1) <= TIE_RTOL * n * scale, axis=-1)
        if vectors and _part("eigh", params) == 1:
            # An eigenvector's rounding grows as ||A|| over its eigenvalue's distance to the rest.
            spread = np.maximum(1.0, scale / np.maximum(_isolation(values), 1e-300))
            ties |= _sign_ties(eigenvectors, TIE_RTOL * n * spread)
        return _per_matrix(ties, a.shape)

    return kinks


def _svd_kinks(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    """A tie of two singular values or a zero one (σ of a 1 x 1 matrix is |a|); for U and Vh,
    also a tie for a column of U's largest entry with both signs."""
    a = np.asarray(args[0], dtype=np.float64)
    m, n = a.shape[-2:]
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    scale = s[..., :1]
    tolerance = TIE_RTOL * max(m, n) * scale
    ties = np.any(-np.diff(s, axis=-1) <= tolerance, axis=-1) | (s[..., -1] <= tolerance[..., 0])
    if PART in params and _part("svd", params) != 1:
        isolation = _isolation(s)
        if m != n:
            isolation = np.minimum(isolation, s)  # U's or V's outside part goes as 1/σ
        spread = np.maximum(1.0, scale / np.maximum(isolation, 1e-300))
        ties |= _sign_ties(u, TIE_RTOL * max(m, n) * spread)
    return _per_matrix(ties, a.shape)


def _singular_kinks(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    """A singular A: slogdet's sign jumps there (as sign's at 0) and log|det| is -inf."""
    a = np.asarray(args[0], dtype=np.float64)
    s = np.linalg.svd(a, compute_uv=False)
    return _per_matrix(s[..., -1] <= TIE_RTOL * a.shape[-1] * s[..., 0], a.shape)


def _qr_kinks(args: Sequence[np.ndarray], params: Params) -> np.ndarray:
    """LAPACK's Householder step k reflects x = the k-th column below the diagonal so far, to
    R_kk = -sign(x_0)·||x||: its sign jumps where x_0 crosses 0, and where x has nothing below
    x_0 (there no reflection is made, so R_kk = +x_0). From the raw factorization,
    x_0 = R_kk (1 - τ) and ||x_1:|| = |R_kk| sqrt(τ (2 - τ)). A zero R_kk is a loss of rank."""
    a = np.asarray(args[0], dtype=np.float64)
    m, n = a.shape[-2:]
    k = min(m, n)
    raw, tau = np.linalg.qr(a, mode="raw")
    r_diagonal = _diagonal(raw)[..., :k]
    tolerance = TIE_RTOL * m * np.linalg.norm(a, axis=-2)[..., :k]
    pivot = np.abs(r_diagonal * (1 - tau))
    below = np.abs(r_diagonal) * np.sqrt(np.maximum(tau * (2 - tau), 0.0))
    reflected = np.arange(k) < m - 1  # the last row's step has nothing below it
    flags = (np.abs(r_diagonal) <= tolerance) | (
        reflected & ((pivot <= tolerance) | (below <= tolerance)))
    return _per_matrix(np.any(flags, axis=-1), a.shape)


# --- sympy forms --------------------------------------------------------------------------------


def _sympy_matrices(name: str,
                    function: Callable[..., Any]) -> Callable[[Arrays, Params], np.ndarray]:
    """A sympy form from ``function(sympy.Matrix per argument, params)`` applied to each
    matrix of the broadcast batch (a vector B of solve comes as a one-column matrix); above
    EXACT_MAX_SIZE it refuses, as its exact limit says."""

    def form(args: Arrays, params: Params) -> np.ndarray:
        import sympy

        reason = _small_only(name)([ArgInfo(np.shape(args[0]), False)])
        if reason is not None:
            raise SpecError(f"{reason}: no exact form at this size (use the rule sweep: "
                            "--symbolic sweep or auto)")
        a, rest = args[0], list(args[1:])
        vector = bool(rest) and _vector_rhs(np.shape(a), np.shape(rest[0]))
        if vector:
            rest[0] = rest[0][..., None]
        batch = np.broadcast_shapes(a.shape[:-2], *(r.shape[:-2] for r in rest))
        arrays = [np.broadcast_to(x, (*batch, *x.shape[-2:])) for x in (a, *rest)]
        results = [function(*(sympy.Matrix(x[index]) for x in arrays), params)
                   for index in np.ndindex(*batch)]
        values = [np.array(r.tolist() if isinstance(r, sympy.MatrixBase) else r, dtype=object)
                  for r in results]
        shape = values[0].shape if values else ()
        out = object_array(np.stack(values) if values else np.empty(0, dtype=object))
        out = out.reshape((*batch, *shape))
        return out[..., 0] if vector else out

    return form


def _sympy_inverse(a: Any) -> Any:
    return a.adjugate() / a.det()


def _sympy_slogdet(a: Any, params: Params) -> Any:
    import sympy

    det = a.det()
    return sympy.sign(det) if _part("slogdet", params) == 0 else sympy.log(sympy.Abs(det))


def _sympy_cholesky(a: Any, params: Params) -> Any:
    """Of the symmetric part: its Jacobian is then torch's symmetric gradient."""
    lower = ((a + a.T) / 2).cholesky(hermitian=False)
    return lower.T if params["upper"] else lower


def _no_sympy(name: str, why: str) -> tuple[Callable[..., np.ndarray],
                                            Callable[[Sequence[ArgInfo]], str]]:
    """The sympy form and exact limit of an op sympy cannot afford at any size."""
    reason = f"{name}(): sympy cannot {why} a symbolic matrix in good time"

    def refuse(args: Arrays, params: Params) -> np.ndarray:
        raise SpecError(f"{reason}: it has no exact form (use the rule sweep: --symbolic "
                        "sweep or auto)")

    return refuse, lambda args: reason


def _small_only(name: str) -> Callable[[Sequence[ArgInfo]], str | None]:
    def limit(args: Sequence[ArgInfo]) -> str | None:
        n = args[0].shape[-1] if args[0].shape else 0
        if n > EXACT_MAX_SIZE:
            return (f"{name}() of a {n} x {n} matrix (sympy's Matrix methods afford "
                    f"{EXACT_MAX_SIZE} x {EXACT_MAX_SIZE})")
        return None

    return limit


# --- the ops ------------------------------------------------------------------------------------


def _solve_numpy(args: Arrays, params: Params) -> np.ndarray:
    a, b = as_float(args[0]), as_float(args[1])
    vector, left = _vector_rhs(a.shape, b.shape), bool(params["left"])
    if not left:
        a, b = _mt(a), _mt(b)
    x = _linalg(np.linalg.solve, "solve", a, b[..., None] if vector else b)
    x = x[..., 0] if vector else x
    return x if left else _mt(x)


def _solve_sympy(a: Any, b: Any, params: Params) -> Any:
    return _sympy_inverse(a) @ b if params["left"] else b @ _sympy_inverse(a)


def _torch_eigh(args: Sequence[Any], params: Params) -> Any:
    values, vectors = torch_module().linalg.eigh(args[0], UPLO=str(params["UPLO"]))
    return values if _part("eigh", params) == 0 else vectors * _torch_signs(vectors)


def _torch_svd(args: Sequence[Any], params: Params) -> Any:
    u, s, vh = torch_module().linalg.svd(args[0], full_matrices=bool(params["full_matrices"]))
    part = _part("svd", params)
    if part == 1:
        return s
    signs = _torch_signs(u[..., :, :s.shape[-1]])
    return u * signs if part == 0 else vh * signs.mT


def _op(name: str, *, shape: Callable[..., Shape], torch: Callable[[Sequence[Any], Params], Any],
        numpy: Callable[[Arrays, Params], np.ndarray], rule: Rule,
        sympy: Callable[[Arrays, Params], np.ndarray],
        exact_limit: Callable[[Sequence[ArgInfo]], str | None], doc: str,
        params: tuple[Param, ...] = (),
        kinks: Callable[[Sequence[np.ndarray], Params], np.ndarray] | None = None,
        kink_where: str = "") -> Op:
    """An op of one matrix argument, A."""
    vjp, magnitude = _rules(rule)
    return Op(name=name, arg_names=("A",), group="linalg", min_args=1, max_args=1,
              shape=shape, torch=torch, numpy=numpy, vjp=vjp, vjp_magnitude=magnitude,
              sympy=sympy, exact_limit=exact_limit, doc=doc, params=params, kinks=kinks,
              kink_where=kink_where or "at 0")


_UPLO = Param("UPLO", "str", default="L", choices=("L", "U"))
_PIECE = Param(PART, "int", hidden=True)  # which result: eigh(A)[1]
_SOLVE_VJP, _SOLVE_MAGNITUDE = _solve_rules()
_EIGH_SYMPY, _EIGH_LIMIT = _no_sympy("eigh", "diagonalize")
_EIGVALSH_SYMPY, _EIGVALSH_LIMIT = _no_sympy("eigvalsh", "diagonalize")
_QR_SYMPY, _QR_LIMIT = _no_sympy("qr", "orthogonalize")
_SVD_SYMPY, _SVD_LIMIT = _no_sympy("svd", "decompose")
_SVDVALS_SYMPY, _SVDVALS_LIMIT = _no_sympy("svdvals", "decompose")
_EXP_SYMPY, _EXP_LIMIT = _no_sympy("matrix_exp", "exponentiate")
_SYMMETRIC = ("of a symmetric A (torch reads its `UPLO` triangle, and differentiates the "
              "symmetric part: pass X + transpose(X, -2, -1))")

MATRIX = [
    _op("inv", shape=_square("inv", lambda batch, n, p: (*batch, n, n)),
        torch=lambda args, p: torch_module().linalg.inv(args[0]),
        numpy=lambda args, p: _linalg(np.linalg.inv, "inv", as_float(args[0])),
        rule=_inv_rule, sympy=_sympy_matrices("inv", lambda a, p: _sympy_inverse(a)),
        exact_limit=_small_only("inv"), doc="the inverse of a square `A` (..., n, n)"),
    Op(name="solve", arg_names=("A", "B"), group="linalg", min_args=2, max_args=2,
       shape=_solve_shape,
       torch=lambda args, p: torch_module().linalg.solve(args[0], args[1], left=p["left"]),
       numpy=_solve_numpy, vjp=_SOLVE_VJP, vjp_magnitude=_SOLVE_MAGNITUDE,
       sympy=_sympy_matrices("solve", _solve_sympy), exact_limit=_small_only("solve"),
       params=(Param("left", "bool", default=True),),
       doc="X with A X = B (X A = B for left=False); B a vector (..., n) or a matrix "
           "(..., n, k) by torch's rule; batch dims broadcast"),
    _op("det", shape=_square("det", lambda batch, n, p: batch),
        torch=lambda args, p: torch_module().linalg.det(args[0]),
        numpy=lambda args, p: np.asarray(np.linalg.det(as_float(args[0]))),
        rule=_det_rule, sympy=_sympy_matrices("det", lambda a, p: a.det()),
        exact_limit=_small_only("det"),
        doc="the determinant; its gradient, the cofactors, holds at a singular `A` too"),
    _op("slogdet", shape=_square("slogdet", lambda batch, n, p: batch),
        torch=lambda args, p: torch_module().linalg.slogdet(args[0])[_part("slogdet", p)],
        numpy=lambda args, p: np.asarray(_slogdet(args[0])[_part("slogdet", p)]),
        rule=_slogdet_rule, sympy=_sympy_matrices("slogdet", _sympy_slogdet),
        exact_limit=_small_only("slogdet"), params=(_PIECE,), kinks=_singular_kinks,
        kink_where="at a singular A (det = 0: the sign jumps, log|det| is -inf)",
        doc="slogdet(A)[k]: the sign of det(A) (k=0, no gradient) or log|det(A)| (k=1)"),
    _op("cholesky", shape=_square("cholesky", lambda batch, n, p: (*batch, n, n)),
        torch=lambda args, p: torch_module().linalg.cholesky(args[0], upper=p["upper"]),
        numpy=lambda args, p: _cholesky(args[0], bool(p["upper"])), rule=_cholesky_rule,
        sympy=_sympy_matrices("cholesky", _sympy_cholesky), exact_limit=_small_only("cholesky"),
        params=(Param("upper", "bool", default=False),),
        doc="L with A = L Lᵀ (U with A = Uᵀ U for upper=True) of a symmetric positive-definite "
            "A; torch reads one triangle and differentiates the symmetric part"),
    _op("qr", shape=_qr_shape,
        torch=lambda args, p: torch_module().linalg.qr(args[0], mode=str(p["mode"]))[
            _part("qr", p)],
        numpy=lambda args, p: _qr(args[0])[_part("qr", p)], rule=_qr_rule, sympy=_QR_SYMPY,
        exact_limit=_QR_LIMIT,
        params=(Param("mode", "str", default="reduced", choices=("reduced", "complete", "r")),
                _PIECE),
        kinks=_qr_kinks,
        kink_where="where LAPACK's Householder signs jump (a pivot at 0, a column already 0 "
                   "below the diagonal, as in a triangular A) or R's diagonal has a 0 (the "
                   "rule divides by it)",
        doc="qr(A, mode)[k]: Q (k=0) or R (k=1), LAPACK's signs (numpy's and torch's); mode "
            "'reduced', or 'complete' with no more rows than columns"),
    _op("eigh", shape=_square("eigh", lambda batch, n, p: (
        (*batch, n) if _part("eigh", p) == 0 else (*batch, n, n))),
        torch=_torch_eigh, numpy=lambda args, p: _eigh(args[0], str(p["UPLO"]))[
            _part("eigh", p)],
        rule=_eigh_rule, sympy=_EIGH_SYMPY, exact_limit=_EIGH_LIMIT,
        params=(_UPLO, _PIECE), kinks=_eigen_kinks(True),
        kink_where="at a tie of two eigenvalues, or for an eigenvector's largest entry (its "
                   "sign)",
        doc="eigh(A, UPLO)[k]: the eigenvalues, ascending (k=0), or the eigenvectors (k=1), "
            "each signed so that its largest entry is positive, " + _SYMMETRIC),
    _op("eigvalsh", shape=_square("eigvalsh", lambda batch, n, p: (*batch, n)),
        torch=lambda args, p: torch_module().linalg.eigvalsh(args[0], UPLO=str(p["UPLO"])),
        numpy=lambda args, p: _eigh(args[0], str(p["UPLO"]))[0], rule=_eigh_rule,
        sympy=_EIGVALSH_SYMPY, exact_limit=_EIGVALSH_LIMIT, params=(_UPLO,),
        kinks=_eigen_kinks(False), kink_where="at a tie of two eigenvalues",
        doc="the eigenvalues, ascending, " + _SYMMETRIC),
    _op("svd", shape=_svd_shape, torch=_torch_svd,
        numpy=lambda args, p: _svd(args[0])[_part("svd", p)], rule=_svd_rule, sympy=_SVD_SYMPY,
        exact_limit=_SVD_LIMIT,
        params=(Param("full_matrices", "bool", default=True), _PIECE),
        kinks=_svd_kinks,
        kink_where="at a tie of two singular values, a zero one, or for a singular vector's "
                   "largest entry (its sign)",
        doc="svd(A, full_matrices)[k]: U, S, Vh (k = 0, 1, 2), each column of U signed so that "
            "its largest entry is positive (Vh's rows follow); U and Vh of a non-square A "
            "need full_matrices=False"),
    _op("svdvals", shape=_svdvals_shape,
        torch=lambda args, p: torch_module().linalg.svdvals(args[0]),
        numpy=lambda args, p: _svd(args[0])[1], rule=_svd_rule, sympy=_SVDVALS_SYMPY,
        exact_limit=_SVDVALS_LIMIT, kinks=_svd_kinks,
        kink_where="at a tie of two singular values or a zero one",
        doc="the singular values, descending"),
    _op("matrix_exp", shape=_square("matrix_exp", lambda batch, n, p: (*batch, n, n)),
        torch=lambda args, p: torch_module().linalg.matrix_exp(args[0]),
        numpy=lambda args, p: expm(args[0]), rule=_matrix_exp_rule, sympy=_EXP_SYMPY,
        exact_limit=_EXP_LIMIT, doc="e^A (Padé scaling and squaring)"),
]
