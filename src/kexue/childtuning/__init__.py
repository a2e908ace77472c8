"""ChildTuning: fine-tune a child network, by gradient dropout, Fisher masks or update dropout.

Post 8764 (kexue.fm/archives/8764) on Xu et al., "Raise a Child in Large Language Model"
(EMNLP 2021). With a 0/1 mask ``M`` whose fraction of ones is ``p`` (``reserve_p``):

- **ChildTuning-F** (task-free, "gradient dropout"): ``g <- g ⊗ M / p`` with a fresh
  ``M ~ Bernoulli(p)`` each step.
- **ChildTuning-D** (task-dependent): ``M`` is fixed before training: the top-``p`` elements by the
  Fisher information ``F_i = 1/n Σ_j (∂ log p(y_j|x_j;θ)/∂θ_i)²`` (eq. 1), and ``g <- g ⊗ M / p``.
- **Update dropout** (the post's "incre drop"): drop the update ``Δθ`` instead of the gradient,
  which is what "train a child network each step" means for optimizers with momentum.

The post's analysis (eqs. 2-5): for SGD, gradient dropout keeps the mean of ``g`` and widens its
variance, ``Var[gε/p] = σ² + (1-p)/p (μ² + σ²)``. For Adam, whose long-run update is
``Δθ ≈ η E[g] / sqrt(E[g²])``, the dropped gradient gives
``η E[gε/p] / sqrt(E[(gε/p)²]) = η √p E[g] / sqrt(E[g²])``: gradient dropout is, in the long run,
the learning rate times ``√p``. ``kexue reproduce childtuning`` measures that ratio on a real
fine-tuning run.

Usage (any optimizer; schedulers, ``accelerate`` and :class:`kexue.training.Trainer` see an
ordinary ``torch.optim.Optimizer``)::

    fisher = fisher_information(model, batches, loss_fn)              # D only
    optimizer = ChildTuning(torch.optim.AdamW(model.parameters(), lr=2e-5), mode="D", reserve_p=0.3,
                            named_parameters=model.named_parameters(),
                            gradient_mask=fisher_mask(fisher, 0.3))
"""

from kexue.childtuning.fisher import fisher_information, fisher_mask
from kexue.childtuning.optimizer import MODES, ChildTuning
from kexue.childtuning.sampling import BernoulliMaskSampler

__all__ = ["ChildTuning", "MODES", "fisher_information", "fisher_mask", "BernoulliMaskSampler"]
