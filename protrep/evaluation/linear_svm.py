"""Many small linear SVMs at once: scikit-learn's ``LinearSVC`` objective, solved in batches.

Gupta et al.'s Table 1 fits a linear SVM for every pair of classes, every fold, every
background setting, model and seed: tens of thousands of problems of a few hundred cells
each. Fitted one at a time with liblinear (``LinearSVC``) each costs 10-100 ms, mostly
iterations of its dual coordinate descent; fitted together as a batch of padded problems,
they cost a few batched linear solves.

The objective is ``LinearSVC``'s default: L2-regularised squared hinge loss with the
intercept as a regularised feature of value 1 (``intercept_scaling=1``),

    min_w  1/2 |w|^2 + C sum_i max(0, 1 - y_i w.[x_i, 1])^2,   y_i in {-1, +1},

strictly convex, so its minimiser is unique and the same as liblinear's up to the
solvers' tolerances (tested: the same predictions). It is solved by the finite Newton
method of Keerthi & DeCoste (2005): on the set of margin violators the objective is
quadratic, so each step solves one linear system (of the feature dimension, or of the
violators by the Woodbury identity when they are fewer) and a backtracking line search
keeps the objective decreasing; a few steps reach the optimum.

With more features than rows (an autoencoder's 256-dimensional code on a pair of small
classes) the same optimum is reached through the rows' coefficients (Chapelle 2007),
solving systems of the rows instead.

References
----------
Chapelle (2007). Training a support vector machine in the primal. Neural Computation 19,
1155-1178.

Keerthi & DeCoste (2005). A modified finite Newton method for fast solution of large scale
linear SVMs. JMLR 6, 341-361.
"""

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["fit_linear_svms", "decision_function"]

_STEPS = 0.5 ** np.arange(8)  # line-search step sizes, largest first


def _with_bias(x, valid):
    ones = np.ones(x.shape[:2] + (1,), x.dtype)
    return np.concatenate([x, ones], axis=2) * valid[:, :, None]


def _t(a):
    """Batched transpose, contiguous: numpy's batched matmul on a transposed view is ~20x slower."""
    return np.ascontiguousarray(a.transpose(0, 2, 1))


def _objective(w, xt, y, valid, C):
    viol = np.where(valid, np.maximum(0.0, 1.0 - y * (xt @ w[:, :, None])[:, :, 0]), 0.0)
    return 0.5 * (w * w).sum(1) + C * (viol * viol).sum(1)


def _newton_direction(w, xt, y, valid, C):
    """Newton direction on the current violators, and the gradient norm (B,)."""
    margin = y * (xt @ w[:, :, None])[:, :, 0]
    active = valid & (margin < 1.0)
    a = xt * active[:, :, None]  # violator rows, others zero
    grad = w - 2.0 * C * (np.where(active, y * (1.0 - margin), 0.0)[:, None, :] @ a)[:, 0]
    b, n, p = xt.shape
    if p <= n:
        hess = 2.0 * C * (_t(a) @ a) + np.eye(p)
        step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
    else:  # (I + 2C A'A)^-1 g = g - A'(I/2C + AA')^-1 A g: a system of the rows, not of the features
        ag = (a @ grad[:, :, None])[:, :, 0]
        small = a @ _t(a) + np.eye(n) / (2.0 * C)
        step = grad - (_t(a) @ np.linalg.solve(small, ag[:, :, None]))[:, :, 0]
    return step, np.sqrt((grad * grad).sum(1))


def fit_linear_svms(x, y, valid=None, *, C=1.0, max_iter=50, tol=1e-6):
    """Fit a batch of independent linear SVMs (``LinearSVC``'s objective, see the module docstring).

    Parameters
    ----------
    x : ndarray (B, n, d)
        Training features of ``B`` problems, padded to ``n`` rows.
    y : ndarray (B, n)
        Labels in {-1, +1} (or {0, 1}, mapped to -1, +1).
    valid : ndarray of bool (B, n), optional
        Which rows are real (padding rows are ignored); all if None.
    C : float
        Inverse regularisation strength, as ``LinearSVC(C=...)``.
    max_iter : int
        Newton steps at most.
    tol : float
        Stop when every problem's gradient norm is below ``tol`` times its first one.

    Returns
    -------
    ndarray (B, d + 1)
        Weights; the last column is the intercept.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"x must be (problems, rows, features), got shape {x.shape}")
    y = np.asarray(y, dtype=np.float64)
    y = np.where(y > 0, 1.0, -1.0)
    valid = np.ones(y.shape, bool) if valid is None else np.asarray(valid, bool)
    if y.shape != x.shape[:2] or valid.shape != y.shape:
        raise ValueError(f"y and valid must be (problems, rows) = {x.shape[:2]}, got {y.shape} and {valid.shape}")
    if C <= 0:
        raise ValueError(f"C must be positive, got {C}")
    with threadpool_limits(1):  # many small products: one BLAS thread each (measured 12x faster on 2 busy cores)
        xt = _with_bias(x, valid)
        if xt.shape[2] > xt.shape[1]:  # more features than rows: Newton on the rows' coefficients
            return _dual_newton(xt, y, valid, C, max_iter, tol)
        return _newton(xt, y, valid, C, max_iter, tol)


def _ladder(start, step, f0, objective):
    """The step of the ladder :data:`_STEPS` with the lowest objective (the objectives are piecewise quadratic).

    Returns the new points, their objectives and whether the point kept is the full step
    (``start`` itself where no step lowers the objective).
    """
    best, best_f, full = start, f0, np.zeros(len(start), bool)
    for t in _STEPS:
        cand = start + t * step
        fc = objective(cand)
        better = fc < best_f - 1e-12 * np.abs(best_f)
        best = np.where(better[:, None], cand, best)
        best_f = np.where(better, fc, best_f)
        full = np.where(better, t == 1.0, full)
    return best, best_f, full


def _newton(xt, y, valid, C, max_iter, tol):
    w = np.zeros((xt.shape[0], xt.shape[2]))
    f = _objective(w, xt, y, valid, C)
    first = None
    live = np.arange(len(w))  # problems not yet converged: the others leave the batch
    for _ in range(max_iter):
        step, gnorm = _newton_direction(w[live], xt[live], y[live], valid[live], C)
        first = np.maximum(gnorm, 1e-300) if first is None else first
        keep = gnorm > tol * first
        live, step, first = live[keep], step[keep], first[keep]
        if not len(live):
            break
        f0 = f[live]
        xl, yl, vl = xt[live], y[live], valid[live]
        best_w, best_f, _ = _ladder(w[live], -step, f0, lambda cand: _objective(cand, xl, yl, vl, C))
        moved = best_f < f0
        w[live], f[live] = best_w, best_f
        live, first = live[moved], first[moved]
        if not len(live):
            break
    return w


def _dual_objective(beta, k, y, valid, C):
    f = (k @ beta[:, :, None])[:, :, 0]
    viol = np.where(valid, np.maximum(0.0, 1.0 - y * f), 0.0)
    return 0.5 * (beta * f).sum(1) + C * (viol * viol).sum(1)


def _dual_newton(xt, y, valid, C, max_iter, tol):
    """The same optimum with ``w = X'beta`` (Chapelle 2007): systems of the rows, not of the features.

    At the optimum ``w = 2C sum_sv (y_i - f_i) x_i`` over the margin violators ``sv``, so
    ``(K_sv + I / 2C) beta_sv = y_sv`` with ``K = XX'``: each Newton step solves that system
    for the current violators, with the same line search on the objective written in
    ``beta`` (``|w|^2 = beta'K beta``, margins ``K beta``). A problem is solved when a full
    step leaves its violators unchanged (the step is then exact); one that stalls before
    is solved again in the primal (:func:`_newton`), so the optimum is always reached.

    Returns
    -------
    w : ndarray (B, p)
    """
    k = xt @ _t(xt)  # (B, n, n); padding rows are zero
    b, n = y.shape
    beta = np.zeros((b, n))
    f = _dual_objective(beta, k, y, valid, C)
    eye = np.eye(n)
    live, stalled = np.arange(b), np.zeros(b, bool)
    for _ in range(max_iter):
        kl, yl, vl, bl = k[live], y[live], valid[live], beta[live]
        sv = vl & (yl * (kl @ bl[:, :, None])[:, :, 0] < 1.0)
        system = np.where(sv[:, :, None] & sv[:, None, :], kl, 0.0) + eye * np.where(sv, 1.0 / (2.0 * C), 1.0)[:, :, None]
        target = np.linalg.solve(system, np.where(sv, yl, 0.0)[:, :, None])[:, :, 0]
        f0 = f[live]
        best_b, best_f, full = _ladder(bl, target - bl, f0, lambda cand: _dual_objective(cand, kl, yl, vl, C))
        beta[live], f[live] = best_b, best_f
        new_sv = vl & (yl * (kl @ best_b[:, :, None])[:, :, 0] < 1.0)
        solved = full & (new_sv == sv).all(1)
        stuck = ~(best_f < f0) & ~solved
        stalled[live[stuck]] = True
        live = live[~(solved | stuck)]
        if not len(live):
            break
    stalled[live] = True  # out of iterations
    w = (_t(xt) @ beta[:, :, None])[:, :, 0]
    if stalled.any():
        w[stalled] = _newton(xt[stalled], y[stalled], valid[stalled], C, max_iter, tol)
    return w


def decision_function(w, x):
    """Scores ``w . [x, 1]`` of features ``x`` (B, m, d) under weights ``w`` (B, d + 1); > 0 is class +1."""
    return (np.asarray(x, np.float64) @ w[:, :-1, None])[:, :, 0] + w[:, -1:]
