"""Self-checks for the labs' exercises, one module per lab.

Each check calls the learner's function on small random inputs and compares it with
the library's own version. When they disagree it raises :class:`CheckFailed` (an
``AssertionError``) whose message is a *hint*: it names the likely slip (a missing
square, a sum over one layer only, sizes ignored...) rather than just "wrong". When
they agree it prints one line starting with ✓.

    >>> import jax, jax.numpy as jnp
    >>> import leakage_lab as ll
    >>> def my_l2(observed, candidate):
    ...     pairs = zip(jax.tree.leaves(observed), jax.tree.leaves(candidate))
    ...     return sum(jnp.sum((g - c) ** 2) for g, c in pairs)
    >>> ll.checks.gradient_distance(my_l2)
    ✓ my_l2: matches ll.distances.l2 on 3 random pytrees, and JAX can differentiate it.

Where each lab's checks live (open the module to see what is compared and which slips
get a hint):

=========  ==============================================================
module     checks
=========  ==============================================================
``lab00``  :func:`fedavg_average` (FedAvg's weighted mean)
``lab01``  :func:`gradient_distance` (DLG's squared L2 distance), :func:`dlg_loss`
           (DLG's objective, joint soft label), :func:`dlg_step` (one step on it)
``lab02``  :func:`idlg_label` (iDLG's sign rule), :func:`geng_counts` (Geng et al.'s
           label counts)
``lab03``  :func:`total_variation` (anisotropic TV), :func:`inverting_objective`
           (cosine + TV), :func:`ig_step` (signed Adam, box [0, 1])
``lab04``  :func:`gaussian_neg_log_likelihood`, :func:`prune_laplace_log_prob`
``lab05``  :func:`dp_clip_and_noise` (DP-SGD), :func:`pair_masks` (secure aggregation)
``lab06``  :func:`client_update_loop` (FedAvg's client), :func:`sim_update` (SimUpdate)
``lab07``  :func:`fedavg_label_counts` (RecLabels)
``lab08``  :func:`match_epochs` (MatchEpoch)
``lab10``  :func:`capstone_defense` (your defense's protocol), :func:`capstone_attack_distance`
           (a distance that sees through ``ll.capstone.scramble``)
=========  ==============================================================

``_common`` holds what they share (:class:`CheckFailed`, comparisons, random pytrees).
"""

from leakage_lab.checks._common import CheckFailed
from leakage_lab.checks.lab00 import fedavg_average
from leakage_lab.checks.lab01 import dlg_loss, dlg_step, gradient_distance
from leakage_lab.checks.lab02 import geng_counts, idlg_label
from leakage_lab.checks.lab03 import ig_step, inverting_objective, total_variation
from leakage_lab.checks.lab04 import gaussian_neg_log_likelihood, prune_laplace_log_prob
from leakage_lab.checks.lab05 import dp_clip_and_noise, pair_masks
from leakage_lab.checks.lab06 import client_update_loop, sim_update
from leakage_lab.checks.lab07 import fedavg_label_counts
from leakage_lab.checks.lab08 import match_epochs
from leakage_lab.checks.lab10 import capstone_attack_distance, capstone_defense

__all__ = ["CheckFailed", "client_update_loop", "dp_clip_and_noise", "fedavg_average",
           "fedavg_label_counts", "gaussian_neg_log_likelihood", "gradient_distance",
           "idlg_label", "match_epochs", "pair_masks", "prune_laplace_log_prob",
           "total_variation"]
__all__ += ["capstone_attack_distance", "capstone_defense"]
__all__ += ["dlg_loss", "dlg_step", "geng_counts"]
__all__ += ["ig_step", "inverting_objective", "sim_update"]
