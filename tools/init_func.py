"""The original tools/utils/init_func.py: one weight initialisation for the supernet and derived networks."""
import torch.nn as nn


def init_weight(module, conv_init=nn.init.kaiming_normal_, norm_layer=nn.BatchNorm2d, bn_eps=1e-5,
                bn_momentum=0.1, **kwargs):
    """The original tools/utils/init_func.init_weight: ``conv_init(weight, **kwargs)`` on every conv, and
    eps/momentum/weight 1/bias 0 on every ``norm_layer`` (including the unused outer USBatchNorm2d affine)."""
    modules = module if isinstance(module, list) else [module]
    for feature in modules:
        for _, m in feature.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                conv_init(m.weight, **kwargs)
            elif isinstance(m, norm_layer):
                m.eps = bn_eps
                m.momentum = bn_momentum
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
