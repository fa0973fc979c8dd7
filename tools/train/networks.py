"""What the training run logs and loads about its networks: train.py's description lines and plots, and the
pretrained weights of student and eval modes and of fine-tuning (``init_path``). The networks themselves come
from the one builder (tools/models/build.py ``derived_from_config``)."""

import os

from tools.engine.weights import load_weights, weights_path
from tools.models.build import arch_name

TEACHER_STAGE = "teacher training (python train/train.py mode='teacher')"


def describe_network(model, config, arch_idx, run_dir, logger):
    """log.txt lines (ops, paths, lasts, params, FLOPs) and the plots of train.py for one network."""
    logger.info("%s: lasts %s, ops %s, paths %s, widths %s", arch_name(arch_idx), model.lasts, model.ops, model.paths,
                model.widths)
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, config.flops_input)
    logger.info("%s: params = %fMB, FLOPs = %fGB at %dx%d", arch_name(arch_idx), params / 1e6, flops / 1e9,
                *config.flops_input)
    if config.plots:
        save_plots(model, config, arch_idx, run_dir)
    return {"params": params, "flops": flops}


def count_flops(model, input_size):
    """thop's count at (1, 3, H, W) as train.py logs it, on a copy so no thop buffers reach the weights files."""
    from tools.models.flops import thop_flops
    return thop_flops(model, (1, 3, int(input_size[0]), int(input_size[1])))


def save_plots(model, config, arch_idx, run_dir):
    """ops_{arch}_{last}.png per branch, path_width{arch}.png and path_width_all{arch}.png (train.py's files)."""
    from tools.plots import save_arch_plots
    head_width = config.stem_head_width[list(config.arch_idx).index(arch_idx)][1]
    save_arch_plots(model.genotype, arch_idx, run_dir, F_base=config.Fch, head_width=head_width,
                    with_widths=len(config.width_mult_list) > 1)


def load_pretrained(config, models, logger):
    """Teacher weights in student mode (teacher_path), every evaluated network's weights in eval mode, and the
    trained network's starting weights when fine-tuning (init_path)."""
    trained_idx = list(models)[-1]
    for arch_idx, model in models.items():
        name = arch_name(arch_idx)
        if arch_idx == 0 and len(models) > 1 and config.teacher_path:
            path = weights_path(config.teacher_path, 0)
            load_weights(model, path, produced_by=TEACHER_STAGE)
        elif config.is_eval:
            path = weights_path(config.eval_path, arch_idx)
            load_weights(model, path, produced_by=f"{name} training (python train/train.py mode='{name}')")
        elif arch_idx == trained_idx and config.get("init_path"):
            path = init_weights_path(config.init_path, arch_idx)
            load_weights(model, path, produced_by=f"a {name} training (python train/train.py) or a shipped model "
                                                  f"(pretrained/)")
            logger.info("%s starts from %s (fine-tuning: the schedule starts anew)", name, path)
            continue
        else:
            continue
        logger.info("%s weights loaded from %s", name, path)


def init_weights_path(init_path, arch_idx):
    """``init_path`` itself when it is a file, else the run folder's ``weights{arch_idx}.pt``."""
    return init_path if os.path.isfile(init_path) else weights_path(init_path, arch_idx)
