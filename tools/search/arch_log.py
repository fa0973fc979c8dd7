"""Per-epoch architecture report of the search: derived networks, their latency/FPS, plots and arch records.

Replaces ``arch_logging()`` and the arch-file part of ``main()`` in search/train_search.py. For each
architecture: derive the network from the current alphas/betas/ratios, build it for lasts [2, 0] and [2, 1],
take its latency (lookup table, or measured with a backend: config ``fps_source``) at ``latency_size``
(3 x 1024 x 2048 by default), log FPS, the operator tables and the path/width diagrams, and write
``arch_{idx}.pt`` / ``arch_{idx}_{epoch}.pt`` in the project's safe format (tools/models/archfile.py), with the
architecture's genotype (tools/models/genotype.py: derived once, as train.py will build it) next to the tensors.

Fixed original bugs (docs/differences.md, rows S7-S8):

* B4 (search/train_search.py:164-167, 187-203): every arch file carried the mIoU and FPS of the LAST
  architecture validated (the student); each record here holds its own architecture's numbers.
* B9 (search/train_search.py:276-280): the FPS logged during the search came from search/model_seg.py, which
  has no ``ignore_skip`` (the teacher's widths are 1.0 there too, search/model_seg.py:180-181); here the
  networks are derived exactly as train/train.py builds them (teacher: ignore_skip), so the logged FPS and the
  stored latency belong to the networks that will be trained.

``legacy=True`` (config ``legacy_latency``) gives back the original's figures: the networks derived as
search/model_seg.py derives them (no ``ignore_skip``; the one-column teacher at full width) and the table read
with bugs B1 and B2 (docs/differences.md S13).
"""
from dataclasses import dataclass

from tools.latency.backends import measure_latency
from tools.latency.expected import derived_latency
from tools.models.archfile import GENOTYPE_KEY, save_arch
from tools.models.build import arch_name
from tools.models.derive import choose_lasts, objective_acc_lat
from tools.models.derived import Network_Multi_Path_Infer
from tools.models.genotype import derive_genotype

LASTS = ((2, 0), (2, 1))
FPS_SOURCES = ("table", "backend")


@dataclass
class ArchReport:
    """One architecture after an epoch: mIoU of the five heads and latency (ms) of lasts [2,0] / [2,1]."""
    idx: int
    mIoUs: list
    latency02: float
    latency12: float
    network: object = None

    @property
    def fps0(self):
        return 1000. / self.latency02

    @property
    def fps1(self):
        return 1000. / self.latency12

    @property
    def objective02(self):
        return objective_acc_lat(self.mIoUs[3], self.latency02)

    @property
    def objective12(self):
        return objective_acc_lat(self.mIoUs[4], self.latency12)


def arch_tensors(model, idx):
    """(alphas, betas, ratios) of architecture ``idx`` as detached CPU copies, betas = [None, b1, b2]."""
    names = model._arch_names[idx]
    copy = [getattr(model, name).detach().cpu().clone() for name in names["alphas"] + names["betas"] +
            names["ratios"]]
    return copy[:3], [None] + copy[3:5], copy[5:]


def arch_genotype(model, idx, legacy=False):
    """The Genotype of architecture ``idx`` of the supernet, derived as train.py derives it (teacher:
    ignore_skip; no lasts chosen). ``legacy=True`` derives as the original's search did (search/model_seg.py: no
    ``ignore_skip``, B9, and one-column ratios at full width, so the teacher keeps width 1.0)."""
    alphas, betas, ratios = arch_tensors(model, idx)
    return derive_genotype(alphas, betas, ratios, model._width_mult_list, model._layers,
                           ignore_skip=idx == 0 and not legacy, width_rule="search" if legacy else "train")


def genotype_network(model, idx, genotype):
    """The eval-only derived network of a genotype of architecture ``idx`` (the supernet's classes, Fch, widths)."""
    return Network_Multi_Path_Infer.from_genotype(genotype, num_classes=model._num_classes, Fch=model._Fch,
                                                  stem_head_width=model._stem_head_width[idx], aux_heads=False)


def derive_network(model, idx, lasts=(2, 1), legacy=False):
    """The derived network of architecture ``idx`` for ``lasts`` as train.py builds it, eval-only (see
    :func:`arch_genotype`)."""
    return genotype_network(model, idx, arch_genotype(model, idx, legacy).with_lasts(lasts))


def network_latency(net, latency_size, table=None, fps_source="table", backend="auto", device="cpu",
                    legacy=False, **timing):
    """Latency (ms) of a built derived network: lookup table, or measured with ``backend`` on ``device``.

    ``legacy=True`` reads the table as the original's ``forward_latency`` did (bugs B1 and B2).
    """
    if fps_source == "table":
        return derived_latency(net, tuple(latency_size), table, legacy_b1=legacy, legacy_b2=legacy).latency_ms
    if fps_source == "backend":
        return measure_latency(net.eval(), (1,) + tuple(latency_size), backend=backend, device=device,
                               **timing).latency_ms
    raise ValueError(f"fps_source {fps_source!r} is unknown; use one of {FPS_SOURCES}.")


def arch_latencies(model, idx, latency_size, table=None, fps_source="table", legacy=False, **measure):
    """(latency [2,0], latency [2,1], network built for [2,1]) of architecture ``idx``.

    ``legacy=True`` (config ``legacy_latency``) gives the original search's figures: derivation without
    ``ignore_skip`` (B9) and table reads with bugs B1 and B2.
    """
    latencies, net, genotype = [], None, arch_genotype(model, idx, legacy)
    for lasts in LASTS:
        net = genotype_network(model, idx, genotype.with_lasts(lasts))
        latencies.append(network_latency(net, latency_size, table, fps_source, legacy=legacy, **measure))
    return latencies[0], latencies[1], net


def arch_record(model, report):
    """The arch file content of one architecture with its own metrics (B4 fixed) and its genotype (lasts chosen
    from those metrics, as train.py chooses them)."""
    record = {name: getattr(model, name).detach().cpu() for names in model._arch_names[report.idx].values()
              for name in names}
    record.update(arch_idx=report.idx, mIoU02=float(report.mIoUs[3]), mIoU12=float(report.mIoUs[4]),
                  latency02=float(report.latency02), latency12=float(report.latency12))
    lasts = choose_lasts(record["mIoU02"], record["latency02"], record["mIoU12"], record["latency12"])
    record[GENOTYPE_KEY] = arch_genotype(model, report.idx).with_lasts(lasts).to_plain()
    return record


def save_arch_files(model, reports, folder, epoch):
    """arch_{idx}_{epoch}.pt then arch_{idx}.pt for every architecture; returns the paths written."""
    import os
    written = []
    for report in reports:
        record = arch_record(model, report)
        for name in (f"arch_{report.idx}_{epoch}.pt", f"arch_{report.idx}.pt"):
            written.append(save_arch(record, os.path.join(folder, name)))
    return written


def log_report(writer, logger, report, epoch, Fch, latency_weight):
    """TensorBoard scalars/images and log lines of one architecture, with the original's tags."""
    from tools.plots import plot_op, plot_path_width
    from tools.search.validate import HEAD_NAMES
    name = arch_name(report.idx)
    for head, miou in zip(HEAD_NAMES, report.mIoUs):
        writer.add_scalar(f"mIoU/val_{name}_{head}", miou, epoch)
        logger.info("Epoch %d: valid_mIoU_%s_%s %.3f", epoch, name, head, miou)
    writer.add_scalar(f"arch/fps0_arch{report.idx}", report.fps0, epoch)
    writer.add_scalar(f"arch/fps1_arch{report.idx}", report.fps1, epoch)
    logger.info("Epoch %d: %s FPS [2,0] %.2f (%.3f ms), [2,1] %.2f (%.3f ms)", epoch, name, report.fps0,
                report.latency02, report.fps1, report.latency12)
    if latency_weight > 0:
        for tag, value in (("8s_32s", report.objective02), ("16s_32s", report.objective12)):
            writer.add_scalar(f"Objective/val_{name}_{tag}", value, epoch)
            logger.info("Epoch %d: Objective_%s_%s %.3f", epoch, name, tag, value)
    if report.network is None:
        return
    genotype = report.network.genotype
    for last in (0, 1, 2):
        writer.add_figure(f"arch/ops{last}_arch{report.idx}",
                          plot_op(genotype.ops[last], genotype.paths[last], F_base=Fch), epoch)
    for lasts in LASTS:
        tag = f"arch/path_width_arch{report.idx}_{lasts[1]}{lasts[0]}"
        writer.add_figure(tag, plot_path_width(list(lasts), [genotype.paths[k] for k in lasts],
                                               [genotype.widths[k] for k in lasts]), epoch)
