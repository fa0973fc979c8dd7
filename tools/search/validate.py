"""Validation of the supernet's five heads during pretraining and search; replaces ``infer()`` of
search/train_search.py.

The five outputs (``HEAD_NAMES``: 1/8, 1/16, 1/32, 1/8+1/32, 1/16+1/32) are scored with the project's
Evaluator (tools/engine/evaluator.py: whole image / sliding window / flip as the ``eval_*`` config keys say).

Difference (docs/differences.md, row S6): the original ran the whole validation set once per head (five
forward passes per image, ``evaluator.out_idx = 0..4``). Here each image goes through the network once and the
five heads are scored from that one output. For the deterministic modes (teacher 'max', pretrain 'min'/'max')
the numbers are identical; for sampled widths ('random', the student's 'arch_ratio') all five heads now see the
same sample per image instead of five different ones.
"""
import torch
import torch.nn as nn
from tqdm import tqdm

from tools.engine.evaluator import Evaluator
from tools.engine.metrics import compute_score

HEAD_NAMES = ("8s", "16s", "32s", "8s_32s", "16s_32s")


class _OneForwardPerInput(nn.Module):
    """Runs ``network`` once per distinct input and replays the outputs for the next heads' passes."""

    def __init__(self, network):
        super().__init__()
        self.network = network
        self._input = None
        self._output = None

    def forward(self, x):
        if self._input is None or self._input.shape != x.shape or not torch.equal(self._input, x):
            self._output = self.network(x)
            self._input = x
        return self._output

    def forget(self):
        self._input = self._output = None


def evaluate_heads(model, dataset, config, device, num_heads=len(HEAD_NAMES), progress=False):
    """mIoU of each of the ``num_heads`` outputs of ``model`` (eval mode) on ``dataset``; returns a list."""
    cached = _OneForwardPerInput(model)
    evaluators = [Evaluator.from_config(config, dataset, cached, device=device, out_idx=idx, quiet=True)
                  for idx in range(num_heads)]
    hists = [0] * num_heads
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for index in tqdm(range(len(dataset)), disable=not progress, ncols=80, desc="val"):
                item = dataset[index]
                for idx, evaluator in enumerate(evaluators):
                    hists[idx] = hists[idx] + evaluator.func_per_iteration(item, evaluator.device)["hist"]
                cached.forget()
    finally:
        model.train(was_training)
    return [float(compute_score(hist)[1]) for hist in hists]
