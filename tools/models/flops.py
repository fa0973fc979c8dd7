"""thop's FLOPs count (what train.py logs and latency/run_latency.py reports), with thop's import guarded.

thop 0.1.1 runs ``from distutils.version import LooseVersion`` when imported. distutils left the standard library
in Python 3.12 and is there only through setuptools' shim, so without setuptools the import fails inside thop;
:func:`thop_profile` says what to install instead.
"""
import copy

import torch

from tools.utils.errors import UserError


class FlopsError(UserError, RuntimeError):
    """thop cannot be imported; the message says what to install."""


def thop_profile():
    """``thop.profile``; a missing distutils (Python 3.12+ without setuptools) is one sentence."""
    try:
        from thop import profile
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "distutils":
            raise
        raise FlopsError("thop imports distutils, which this Python (3.12 or later) has only through setuptools; "
                         "pip install setuptools (requirements.txt lists it).") from error
    return profile


def thop_flops(net, input_size, eval_mode=False):
    """thop's count for one forward at ``input_size`` (N, C, H, W), on a CPU deep copy of ``net`` (thop attaches
    buffers to the modules it counts, which must not reach weights files). ``eval_mode``: count the eval forward
    (without auxiliary heads) instead of the mode the network is in."""
    profile = thop_profile()
    model = copy.deepcopy(net).cpu()
    if eval_mode:
        model.eval()
    with torch.no_grad():
        flops, _ = profile(model, inputs=(torch.zeros(*input_size),), verbose=False)
    return float(flops)
