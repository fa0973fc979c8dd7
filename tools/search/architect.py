"""The architecture optimizer of the teacher/student co-search; replaces search/architect.py.

One Adam (lr ``arch_learning_rate`` = 3e-4, betas (0.5, 0.999), no weight decay, as the original) per
architecture (0 = teacher, 1 = student). One step: the search loss of the supernet (``_loss``: every
architecture at its sampled widths, then 'max' and 'min') on an arch-half batch, plus, for every architecture
whose latency weight is > 0, ``latency_weight * expected latency`` where the expected latency is the
lookup-table estimate mixed 1/500 (operators only) + 497/500 (paths only) + 2/500 (widths only)
(tools/latency/expected.py:architect_latency, at ``latency_size`` = (3, 1024, 2048) by default).

Deliberate differences from the original (docs/differences.md, rows S1-S3, S12):

* the backward pass asks autograd only for the gradients of the architecture parameters
  (``backward(inputs=...)``). The original computed the weights' gradients too and the training loop threw
  them away (``optimizer.zero_grad()`` after the arch step, fix 478b026). The architecture gradients are the
  same numbers; the weights' gradient kernels (and the full-size gradient of every sliced weight) are skipped.
  Weights the step's graph reached but whose ``.grad`` was still None get a zero ``.grad``, which is what the
  original's ``zero_grad`` (torch 1.x: zero, not None) left behind, so the next SGD step treats them the same.
* the DARTS second-order option (``unrolled``) is not provided: the original's ``_compute_unrolled_model``
  calls ``Network.new()``, which references an undefined name (B10) and copies a 252M-parameter supernet;
  it never ran. The config key was removed.
* ``latency_weight`` is copied: the original aliased ``config.latency_weight`` and halved/doubled it in place.
* table misses are measured without drawing from the global RNG (tools/latency/table.py forks it).
"""
from dataclasses import dataclass

import torch

from tools.latency.expected import architect_latency

ADAM_BETAS = (0.5, 0.999)
LATENCY_SIZE = (3, 1024, 2048)


@dataclass
class ArchStep:
    """What one architecture step computed (plain floats, for logging)."""
    loss: float
    loss_latency: float
    latency_supernet: float

    @property
    def total(self):
        return self.loss + self.loss_latency


class Architect:
    """Architecture optimizers, latency weights and the architecture step of ``model`` (a Network_Multi_Path).

    ``table``: the latency lookup table (tools.latency.table.LatencyTable; its misses are measured without
    touching the global RNGs); needed when any latency weight is > 0.
    ``touch_weights``: give reached weights a zero ``.grad`` as the original's ``zero_grad`` did (see the
    module docstring); only switch it off when nothing reads the weights' ``.grad`` between steps.
    """

    def __init__(self, model, latency_weight, table=None, latency_size=LATENCY_SIZE, arch_learning_rate=3e-4,
                 adam_betas=ADAM_BETAS, legacy_latency=False, touch_weights=True):
        self.model = model
        self.latency_weight = [float(w) for w in latency_weight]
        if len(self.latency_weight) != len(model._arch_parameters):
            raise ValueError(f"latency_weight has {len(self.latency_weight)} entries but the supernet has "
                             f"{len(model._arch_parameters)} architectures; give one weight per architecture.")
        if table is None and any(w > 0 for w in self.latency_weight):
            raise ValueError("a latency weight is > 0 but no latency lookup table was given; pass the table "
                             "(config lut_path) or set latency_weight to 0 for every architecture.")
        self.table = table
        self.latency_size = tuple(latency_size)
        self.legacy_latency = legacy_latency
        self.touch_weights = touch_weights
        self.optimizers = [torch.optim.Adam(params, lr=arch_learning_rate, betas=tuple(adam_betas))
                           for params in model._arch_parameters]
        self.latency_supernet = 0.0
        self._arch_ids = {id(p) for p in model.arch_parameters()}

    def arch_parameters(self):
        return [p for params in self.model._arch_parameters for p in params]

    def latency_loss(self):
        """sum over architectures with weight > 0 of weight * mixed expected latency (0 when there is none).

        Each estimate samples its own architecture (``architect_latency(arch_idx=...)``); afterwards the last
        architecture is selected with its own widths, the state the original loop left. ``latency_supernet``
        records the estimate of the last architecture with a weight > 0 (the original's "TODO: only the last
        arch_idx").
        """
        loss_latency = 0
        for idx, weight in enumerate(self.latency_weight):
            if weight > 0:
                latency = architect_latency(self.model, self.latency_size, self.table, arch_idx=idx,
                                            legacy=self.legacy_latency)
                self.latency_supernet = float(latency.detach())
                loss_latency = loss_latency + latency * weight
        self.model.select(arch_idx=len(self.latency_weight) - 1, mode=None)
        return loss_latency

    def step(self, input_valid, target_valid):
        """One Adam step of every architecture on the search loss of an arch-half batch (+ latency loss)."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=False)
        loss = self.model._loss(input_valid, target_valid)
        loss_latency = self.latency_loss()
        total = loss + loss_latency
        if self.touch_weights:
            self._touch_reached_weights(total)
        params = [p for p in self.arch_parameters() if p.requires_grad]
        total.backward(inputs=params)
        for optimizer in self.optimizers:
            optimizer.step()
        return ArchStep(float(loss.detach()), float(loss_latency.detach()) if torch.is_tensor(loss_latency)
                        else float(loss_latency), self.latency_supernet)

    def _touch_reached_weights(self, root):
        """Zero ``.grad`` for every weight leaf of ``root``'s graph that has none yet (torch 1.x zero_grad)."""
        for leaf in graph_leaves(root):
            if leaf.grad is None and id(leaf) not in self._arch_ids:
                leaf.grad = torch.zeros_like(leaf)

    def state_dict(self):
        return {"optimizers": [opt.state_dict() for opt in self.optimizers],
                "latency_weight": list(self.latency_weight), "latency_supernet": float(self.latency_supernet)}

    def load_state_dict(self, state):
        if len(state["optimizers"]) != len(self.optimizers):
            raise ValueError(f"architect state has {len(state['optimizers'])} optimizers but the supernet has "
                             f"{len(self.optimizers)} architectures; resume with the same config.")
        for opt, opt_state in zip(self.optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        self.latency_weight = [float(w) for w in state["latency_weight"]]
        self.latency_supernet = float(state.get("latency_supernet", 0.0))


def graph_leaves(root):
    """The leaf tensors (``AccumulateGrad`` variables) reachable from ``root.grad_fn``, each once."""
    if not torch.is_tensor(root) or root.grad_fn is None:
        return []
    seen, stack, leaves = {root.grad_fn}, [root.grad_fn], []
    while stack:
        node = stack.pop()
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.append(variable)
        for child, _ in node.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                stack.append(child)
    return leaves


def adapt_latency_weight(weight, fps, fps_min, fps_max):
    """The original's per-epoch rule for one architecture with weight > 0: halve it when any of its two FPS
    (lasts [2, 0] and [2, 1]) is >= ``fps_max``, else double it when any is <= ``fps_min``; else keep it."""
    if weight <= 0:
        return weight
    if any(f >= fps_max for f in fps):
        return weight / 2
    if any(f <= fps_min for f in fps):
        return weight * 2
    return weight


def adapt_latency_weights(weights, fps_pairs, fps_min, fps_max):
    """:func:`adapt_latency_weight` for every architecture; returns a new list."""
    return [adapt_latency_weight(w, fps, lo, hi) for w, fps, lo, hi in zip(weights, fps_pairs, fps_min, fps_max)]
