"""Output layers paired with their losses, each loss next to its output delta.

The output activation and the loss are chosen together because the gradient
that starts the backward pass, ``delta = dE/dz`` at the output pre-activation
``z``, depends on both:

* softmax + cross-entropy, ``E = -sum_k t_k log a_k``::

      dE/dz_j = sum_k (-t_k / a_k) * a_k (1[j=k] - a_j) = a_j sum_k t_k - t_j = a_j - t_j

  The softmax Jacobian cancels the ``1 / a`` of the logarithm, and the targets
  of each row sum to one (a one-hot class), which leaves ``delta = y_hat - y``.
  The same cancellation happens for every "canonical link" pair (sigmoid +
  binary cross-entropy, identity + squared error), and for no other pair here.

* sigmoid + squared error, ``E = sum_k 1/2 (t_k - a_k)^2`` (the article's text)::

      dE/dz_k = (a_k - t_k) * a_k (1 - a_k)

  Nothing cancels: the sigmoid's slope ``a (1 - a)`` stays, so a saturated
  output learns slowly even when it is wrong.  This is the chain of the
  article's ``w5`` example.

Losses are averaged over the rows of the batch, so ``delta`` carries a
``1 / n_samples`` factor and weight gradients are batch means.
"""

from __future__ import annotations

import numpy as np

from backprop.errors import ConfigError
from backprop.nn.activations.sigmoid import sigmoid


class SoftmaxCrossEntropy:
    output = "softmax"
    loss = "cross_entropy"

    @staticmethod
    def forward(z: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Softmax of logits z (n, k) into out (n, k). Shifts z by its row maxima."""
        z -= z.max(axis=1, keepdims=True)  # exp of the shifted logits is <= 1: no overflow
        np.exp(z, out=out)
        out /= out.sum(axis=1, keepdims=True)
        return out

    @staticmethod
    def value(z: np.ndarray, a: np.ndarray, targets: np.ndarray) -> float:
        """Mean of -sum t log a, from the logits z as ``forward`` left them.

        log softmax(z) = z - log sum exp(z) is finite even where a underflows to
        0 and the article's log(yhat) gives -inf.  ``forward`` shifted each row
        of z to a maximum of 0, so the sum of exponentials lies in [1, k].
        """
        log_a = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-(targets * log_a).sum() / len(z))

    @staticmethod
    def guessing(n_outputs: int) -> float:
        """The loss of predicting every class with probability 1/k: log k."""
        return float(np.log(n_outputs))

    @staticmethod
    def delta(z: np.ndarray, a: np.ndarray, targets: np.ndarray, out: np.ndarray) -> np.ndarray:
        np.subtract(a, targets, out=out)  # y_hat - y: see the module docstring
        out *= 1.0 / len(z)
        return out


class SigmoidSquaredError:
    output = "sigmoid"
    loss = "squared_error"

    @staticmethod
    def forward(z: np.ndarray, out: np.ndarray) -> np.ndarray:
        out[...] = z
        return sigmoid(out)

    @staticmethod
    def value(z: np.ndarray, a: np.ndarray, targets: np.ndarray) -> float:
        diff = targets - a
        return float(0.5 * (diff * diff).sum() / len(z))

    @staticmethod
    def guessing(n_outputs: int) -> float:
        """The loss of outputs of 1/2 against one-hot targets: k/8 (at most k/2, bounded)."""
        return n_outputs / 8

    @staticmethod
    def delta(z: np.ndarray, a: np.ndarray, targets: np.ndarray, out: np.ndarray) -> np.ndarray:
        np.subtract(a, targets, out=out)  # dE/da
        out *= a * (1 - a)  # times da/dz: the sigmoid's slope does not cancel
        out *= 1.0 / len(z)
        return out


HEADS = {(head.output, head.loss): head for head in (SoftmaxCrossEntropy, SigmoidSquaredError)}


def get_head(output: str, loss: str) -> type[SoftmaxCrossEntropy] | type[SigmoidSquaredError]:
    try:
        return HEADS[(output, loss)]
    except KeyError:
        known = ", ".join(f"{o} + {name}" for o, name in HEADS)
        raise ConfigError(
            f"unsupported output/loss pair {output!r} + {loss!r}; choose one of: {known}"
        ) from None
