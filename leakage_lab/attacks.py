"""The attacks' front door: re-exports only, so that ``ll.attacks.<name>`` finds each one.

Each attack lives in its own module, which reads: the paper's equation, a public
``*_objective``, a short driver on the engine's one restart loop (``engine.run_attack``).

==========================  =====================================  =======================
attack                      paper                                  module
==========================  =====================================  =======================
:func:`dlg`                 Zhu et al., NeurIPS 2019               ``leakage_lab.dlg``
:func:`reconstruct`         Geiping et al., NeurIPS 2020           ``leakage_lab.inverting``
:func:`analytic_fc`         Phong et al. 2018; Geiping et al.      ``leakage_lab.analytic``
:func:`bayes`               Balunović et al., ICLR 2022            ``leakage_lab.bayes``
:func:`fedavg`              Dimitrov et al., TMLR 2022             ``leakage_lab.fedavg``
==========================  =====================================  =======================

Every optimising attack returns an :class:`AttackResult` and takes the observed update
as its third positional argument, ``update``. The optimisers and the box projection
live in ``leakage_lab.optimizers``, the factored dense-layer path in
``leakage_lab.fast_dense``.
"""

from leakage_lab.analytic import analytic_fc, analytic_fc_batch
from leakage_lab.bayes import bayes, bayes_objective
from leakage_lab.dlg import dlg, dlg_objective
from leakage_lab.engine import AttackResult
from leakage_lab.fast_dense import gradient_inner_products
from leakage_lab.fedavg import FedAvgResult, fedavg, fedavg_objective
from leakage_lab.inverting import inverting_objective, reconstruct
from leakage_lab.objective import candidate_gradient
from leakage_lab.optimizers import adam, lbfgs, signed_adam, unit_box

__all__ = [
    "AttackResult",
    "FedAvgResult",
    "adam",
    "analytic_fc",
    "analytic_fc_batch",
    "bayes",
    "bayes_objective",
    "candidate_gradient",
    "dlg",
    "dlg_objective",
    "fedavg",
    "fedavg_objective",
    "gradient_inner_products",
    "inverting_objective",
    "lbfgs",
    "reconstruct",
    "signed_adam",
    "unit_box",
]
