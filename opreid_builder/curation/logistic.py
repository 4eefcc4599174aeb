"""Weighted L2-regularised logistic regression in numpy: the learned occlusion flag's model.

Why logistic regression and not trees: boosted trees fitted on synthetic crops flagged most of a
real camera's holistic crops (a feature outside the synthetic range lands in whatever leaf is
last), while a linear score moves smoothly and stays near its training calibration. Features are
standardised with the training mean and scale (stored with the coefficients), and the penalty acts
on the standardised coefficients, never on the intercept. Fitting is Newton's method (IRLS) on the
weighted log loss, so the same data give the same coefficients to the last bit on one machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opreid_builder.errors import CurationError

#: Default L2 penalty on the standardised coefficients (per unit of total sample weight).
DEFAULT_L2 = 1.0
_MAX_ITER = 100
_TOL = 1e-10


@dataclass(frozen=True)
class LogisticModel:
    """P(occluded) = sigmoid(intercept + coef . (x - mean) / scale)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def logit(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return self.intercept + z @ self.coef

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(occluded) of each row."""
        return sigmoid(self.logit(features))

    def as_dict(self) -> dict:
        return {
            "kind": "logistic",
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
        }

    @classmethod
    def from_dict(cls, body: dict, n_features: int) -> LogisticModel:
        if body.get("kind") != "logistic":
            raise CurationError(f"unknown model kind {body.get('kind')!r} (this opreid reads 'logistic')")
        arrays = []
        for key in ("mean", "scale", "coef"):
            values = np.asarray(body.get(key), dtype=np.float64)
            if values.shape != (n_features,) or not np.isfinite(values).all():
                raise CurationError(f"model {key} must be {n_features} finite numbers")
            arrays.append(values)
        if (arrays[1] <= 0).any():
            raise CurationError("model scale must be positive")
        intercept = float(body.get("intercept"))
        if not np.isfinite(intercept):
            raise CurationError("model intercept must be finite")
        return cls(arrays[0], arrays[1], arrays[2], intercept)


def sigmoid(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|


def fit_logistic(
    features: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    l2: float = DEFAULT_L2,
    signs: np.ndarray | None = None,
) -> LogisticModel:
    """Fit on rows `features` (N, F) with 0/1 `labels` and non-negative `weights` (default 1 each).

    `signs` (F,) of -1, 0, +1 constrain coefficients: +1 may not go below 0, -1 not above 0 (0: free),
    so that the score moves the right way with each piece of evidence even on crops unlike any in
    training (correlated features otherwise trade signs, and a linear score extrapolates the trade).
    Solved by an active-set method: a coefficient that crosses its bound is held at 0, one held at 0
    is released when the loss would pull it to its allowed side, until neither happens.
    """
    X = np.asarray(features, dtype=np.float64)
    f = X.shape[1]
    want = np.zeros(f) if signs is None else np.asarray(signs, dtype=np.float64)
    held = np.zeros(f, dtype=bool)
    model = None
    for _ in range(4 * f + 4):
        model = _fit_unconstrained(X, labels, weights, l2, held)
        wrong = ~held & (model.coef * want < 0)
        if wrong.any():
            held[int(np.argmax(np.where(wrong, -model.coef * want / model.scale, -np.inf)))] = True
            continue
        pull = -_gradient(model, X, labels, weights) * want  # > 0: the loss would move it to its allowed side
        free = held & (pull > 1e-9)
        if not free.any():
            break
        held[int(np.argmax(np.where(free, pull, -np.inf)))] = False
    assert model is not None
    return model


def _gradient(
    model: LogisticModel, X: np.ndarray, labels: np.ndarray, weights: np.ndarray | None
) -> np.ndarray:
    """d(weighted log loss)/d(coefficient) on the standardised features, per feature."""
    y = np.asarray(labels, dtype=np.float64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w * (len(y) / w.sum())
    p = model.predict_proba(X)
    return ((X - model.mean) / model.scale).T @ (w * (p - y))


def _fit_unconstrained(
    features: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None,
    l2: float,
    held: np.ndarray | None = None,
) -> LogisticModel:
    """Newton's method on the penalised weighted log loss; coefficients in `held` stay 0."""
    X = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    n, f = X.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    if n == 0 or w.sum() <= 0:
        raise CurationError("nothing to fit the occlusion flag on")
    if not (0 < (w * y).sum() < w.sum()):
        raise CurationError("fitting the occlusion flag needs both occluded and holistic crops")
    w = w * (n / w.sum())
    mean = (w @ X) / n
    scale = np.sqrt((w @ (X - mean) ** 2) / n)
    scale = np.where(scale > 1e-9, scale, 1.0)
    Z = np.hstack([np.ones((n, 1)), (X - mean) / scale])
    penalty = np.full(f + 1, float(l2))
    penalty[0] = 0.0
    prior = (w @ y) / n
    beta = np.zeros(f + 1)
    beta[0] = np.log(prior / (1.0 - prior))
    free = np.concatenate([[True], ~held]) if held is not None else np.ones(f + 1, dtype=bool)
    Zf, pf = Z[:, free], penalty[free]
    for _ in range(_MAX_ITER):
        p = sigmoid(Zf @ beta[free])
        grad = Zf.T @ (w * (p - y)) + pf * beta[free]
        hess = (Zf * (w * p * (1.0 - p))[:, None]).T @ Zf + np.diag(pf) + 1e-9 * np.eye(len(pf))
        step = np.linalg.solve(hess, grad)
        beta[free] -= step
        if np.max(np.abs(step)) < _TOL:
            break
    return LogisticModel(mean, scale, beta[1:].copy(), float(beta[0]))
