"""Refitting a linear head without scikit-learn, and the training rows a refit starts from.

Online learning refits the chosen LLM's heads on its offline training rows plus every outcome
feedback reported for it (see `online.py` for when). The fits here minimise exactly the
objectives scikit-learn minimised when the heads were first trained, so a refit on the offline
rows alone gives back the offline head (to the solver's tolerance):

- quality (logistic): C·Σ_i w_i·CE(y_i, σ(x_i·w + b)) + ½‖w‖², soft labels y ∈ [0, 1]
  (scikit-learn's LogisticRegression with C, fitted on doubled rows for fractional labels);
- length (ridge): Σ_i (y_i − x_i·w − b)² + α‖w‖², y = log(1 + tokens) (Ridge(alpha)).

The solver is L-BFGS (10 pairs, Armijo backtracking), warm-started from the current head, so a
refit after a few hundred new rows takes a handful of iterations. numpy only: `mixllm feedback`
never imports scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


def lbfgs(fun: Objective, theta0: np.ndarray, *, max_iter: int = 200, tol: float = 1e-5, memory: int = 10) -> np.ndarray:
    """Minimise a smooth convex `fun` (returning value and gradient) from `theta0`.

    Stops when the gradient's max-norm falls below `tol`·max(1, |f|) or after `max_iter` steps.
    """
    theta = np.array(theta0, dtype=np.float64)
    f, g = fun(theta)
    s_hist: list[np.ndarray] = []
    y_hist: list[np.ndarray] = []
    for _ in range(max_iter):
        if np.abs(g).max() <= tol * max(1.0, abs(f)):
            break
        # Two-loop recursion: d = −H·g.
        q = g.copy()
        alphas = []
        for s, y in zip(reversed(s_hist), reversed(y_hist)):
            a = (s @ q) / (y @ s)
            alphas.append(a)
            q -= a * y
        if s_hist:
            q *= (s_hist[-1] @ y_hist[-1]) / (y_hist[-1] @ y_hist[-1])
        for (s, y), a in zip(zip(s_hist, y_hist), reversed(alphas)):
            q += s * (a - (y @ q) / (y @ s))
        d = -q
        slope = g @ d
        if slope >= 0:  # not a descent direction (numerical trouble): restart from steepest descent
            s_hist.clear()
            y_hist.clear()
            d, slope = -g, -(g @ g)
        step = 1.0 if s_hist else min(1.0, 1.0 / max(np.abs(g).max(), 1e-12))
        for _ls in range(40):
            new = theta + step * d
            f_new, g_new = fun(new)
            if f_new <= f + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break  # no decrease possible at machine precision: done
        s, y = new - theta, g_new - g
        if s @ y > 1e-12:
            s_hist.append(s)
            y_hist.append(y)
            if len(s_hist) > memory:
                s_hist.pop(0)
                y_hist.pop(0)
        theta, f, g = new, f_new, g_new
    return theta


def logistic_objective(x: np.ndarray, y: np.ndarray, c: float) -> Objective:
    """C·Σ CE(y, σ(xw + b)) + ½‖w‖²; θ = [w, b]."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        z = x @ w + b
        # CE = log(1 + e^z) − y·z, computed stably.
        loss = np.logaddexp(0.0, z) - y * z
        r = 0.5 * (1.0 + np.tanh(0.5 * z)) - y  # σ(z) − y
        grad = np.empty_like(theta)
        grad[:-1] = c * (x.T @ r) + w
        grad[-1] = c * r.sum()
        return float(c * loss.sum() + 0.5 * (w @ w)), grad

    return fun


def ridge_objective(x: np.ndarray, y: np.ndarray, alpha: float) -> Objective:
    """Σ (y − xw − b)² + α‖w‖²; θ = [w, b]."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1], theta[-1]
        r = x @ w + b - y
        grad = np.empty_like(theta)
        grad[:-1] = 2.0 * (x.T @ r) + 2.0 * alpha * w
        grad[-1] = 2.0 * r.sum()
        return float(r @ r + alpha * (w @ w)), grad

    return fun


def refit_linear(x: np.ndarray, y: np.ndarray, *, logistic: bool, coef: np.ndarray, intercept: float,
                 c: float = 0.3, alpha: float = 1.0, max_iter: int = 200) -> tuple[np.ndarray, float]:
    """Refit a logistic (quality) or ridge (log length) head from the warm start (coef, intercept)."""
    fun = logistic_objective(x, y, c) if logistic else ridge_objective(x, y, alpha)
    theta = lbfgs(fun, np.append(np.asarray(coef, dtype=np.float64), float(intercept)), max_iter=max_iter)
    return theta[:-1], float(theta[-1])


# ---------------------------------------------------------------- the training rows


