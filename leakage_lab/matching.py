"""MatchEpoch: one reconstruction per image from the reconstructions of every epoch.

An attack on FedAvg (Dimitrov et al., TMLR 2022) reconstructs every client image once
per local epoch, in a different order each time: epoch ``e`` holds the images
``X̃_e = [x̃_{e,1}, ..., x̃_{e,N}]``. MatchEpoch (the paper's Appendix A, Algorithm 3)
puts every epoch into the order of the first one and averages:

    order_e = argmax_π  sum_i  sim(x̃_{1,i}, x̃_{e,π(i)})      (linear sum assignment)
    x̃_i     = (1/E) sum_e  x̃_{e, order_e(i)}

with ``sim`` the PSNR (``metrics.psnr_table``), as in the paper. Averaging several
noisy copies of an image removes part of the noise, which is why the matched average
beats every single epoch (the paper's Appendix C.6).

    >>> import numpy as np
    >>> first = np.stack([np.full((2, 2, 1), v) for v in (0.1, 0.5, 0.9)])
    >>> second = first[[2, 0, 1]] + 0.01           # same images, shuffled, a little noisy
    >>> [round(float(v), 3) for v in match_epochs(np.stack([first, second]))[:, 0, 0, 0]]
    [0.105, 0.505, 0.905]
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from leakage_lab.metrics import psnr_table

__all__ = ["epoch_orders", "match_epochs", "psnr_table"]


def _stack(epoch_images, who: str) -> np.ndarray:
    shapes = {tuple(np.shape(x)) for x in epoch_images}
    if len(shapes) != 1 or len(next(iter(shapes))) != 4 or next(iter(shapes))[0] < 1:
        raise ValueError(
            f"{who} expects the reconstructions of E epochs, [E, N, H, W, C] (or E arrays "
            "[N, H, W, C] of one shape), got shapes "
            f"{sorted(shapes) if len(shapes) < 5 else str(len(shapes)) + ' different'}."
        )
    return np.stack([np.asarray(x, np.float32) for x in epoch_images])


def epoch_orders(epoch_images) -> np.ndarray:
    """ReorderEpoch (Dimitrov et al., TMLR 2022, Algorithm 3): each epoch's matching.

    For every epoch ``e`` the linear sum assignment (``scipy.optimize.
    linear_sum_assignment``) of ``M_e[i, j] = PSNR(x̃_{1,i}, x̃_{e,j})`` that maximises
    the total PSNR.

    Args:
        epoch_images: ``[E, N, H, W, C]`` or a list of E arrays ``[N, H, W, C]``.

    Returns:
        int ``[E, N]``: ``epoch_images[e][orders[e]]`` is epoch ``e`` in the first epoch's
        order; ``orders[0]`` is the identity.
    """
    epochs = _stack(epoch_images, "matching.epoch_orders")
    n = epochs.shape[1]
    orders = np.empty((len(epochs), n), np.int64)
    orders[0] = np.arange(n)
    for e in range(1, len(epochs)):
        rows, cols = linear_sum_assignment(-psnr_table(epochs[0], epochs[e]))
        orders[e] = cols[np.argsort(rows)]
    return orders


def match_epochs(epoch_images) -> np.ndarray:
    """MatchEpoch (Dimitrov et al., TMLR 2022, Appendix A, Algorithm 3).

    Reorders the reconstructions of every epoch to the first epoch's order by a linear
    sum assignment that maximises the total PSNR between matched pairs
    (:func:`epoch_orders`), then averages the matched images over the epochs:

        M_e[i, j] = PSNR(x̃_{1,i}, x̃_{e,j}),   order_e = LinSumAssign(-M_e)
        x̃_i = (1/E) sum_e x̃_{e, order_e(i)}

    Args:
        epoch_images: ``[E, N, H, W, C]`` (or a list of E arrays ``[N, H, W, C]``): the
            reconstruction of the client's N images at each of the E epochs, e.g.
            ``attacks.fedavg(...).epoch_images``. With one epoch the images come back as
            they are.

    Returns:
        The averaged reconstructions ``[N, H, W, C]`` (float32), in the first epoch's
        order. They are averaged as given (not clipped); clip to [0, 1] for display.

    Raises:
        ValueError: if the epochs do not all hold the same number of equally shaped images.
    """
    epochs = _stack(epoch_images, "matching.match_epochs")
    orders = epoch_orders(epochs)
    return np.mean([epochs[e][orders[e]] for e in range(len(epochs))], axis=0)
