"""Seeding every random generator a run draws from (Python, numpy, torch CPU and CUDA), as the original's
``train.py`` / ``train_search.py`` did at the start of ``main()``."""
import random

import numpy as np
import torch


def seed_everything(seed):
    """Seed Python's ``random``, numpy's global generator and torch (CPU and every CUDA device).

    ``torch.manual_seed`` already seeds every CUDA device; the explicit ``torch.cuda.manual_seed`` the search
    loop used to make resets the current device to the same seed, so search and training draw identically.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed(seed)
