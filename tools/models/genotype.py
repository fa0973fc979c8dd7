"""The derived architecture as a record (DARTS ``genotypes.py`` style): what the derivation rules chose.

The original kept the derivation's results only as attributes of ``Network_Multi_Path_Infer`` (``ops0``,
``path0``, ``widths0``, ...) and recomputed them from the arch tensors in every script that built a network.
Here :func:`derive_genotype` runs the derivation rules (tools/models/derive.py) ONCE and returns a frozen
:class:`Genotype`; the search stores it in the arch file next to the tensors (``to_plain``: lists, strings and
numbers, so ``weights_only=True`` loads it), and the derived network is built from it in one step
(``Network_Multi_Path_Infer.from_genotype``). Arch files without it (the published ones) get it derived from
their tensors when they are read (tools/models/archfile.py ``record_genotype``).
"""
from dataclasses import dataclass, replace

from tools.utils.errors import UserError
from tools.models.derive import LASTS, derive_all, effective_width_mult_list, path2downs
from tools.ops.primitives import PRIMITIVES

PLAIN_KEYS = ("ops", "paths", "widths", "lasts", "width_mult_list", "layers")


class GenotypeError(UserError, ValueError):
    """A stored genotype that does not describe three consistent branches."""


@dataclass(frozen=True)
class Genotype:
    """Per candidate branch (index = its last scale: 0 ends at 1/8, 1 at 1/16, 2 at 1/32): operator indices into
    ``PRIMITIVES``, the scale of every layer and the width multiplier of every layer transition; ``lasts``: the
    branches the network keeps (train.py's choice, e.g. (2, 1); None until chosen); ``width_mult_list``: the
    widths the multipliers were chosen from; ``layers``: the searched depth (before skip pruning)."""
    ops: tuple
    paths: tuple
    widths: tuple
    lasts: tuple = None
    width_mult_list: tuple = ()
    layers: int = 0

    def downs(self, last):
        """Per layer of branch ``last``: 1 where it goes one scale down."""
        return path2downs(self.paths[last])

    def with_lasts(self, lasts):
        """The same branches with ``lasts`` chosen."""
        return replace(self, lasts=tuple(int(last) for last in lasts))

    def op_names(self, last):
        """Operator names of branch ``last`` (``PRIMITIVES`` entries)."""
        return [PRIMITIVES[op] for op in self.ops[last]]

    def to_plain(self):
        """Lists, strings and numbers (operators by name), as stored under ``genotype`` in an arch file."""
        return {"ops": [self.op_names(last) for last in LASTS], "paths": [list(p) for p in self.paths],
                "widths": [[float(w) for w in ws] for ws in self.widths],
                "lasts": None if self.lasts is None else list(self.lasts),
                "width_mult_list": [float(w) for w in self.width_mult_list], "layers": int(self.layers)}

    @classmethod
    def from_plain(cls, plain):
        """The inverse of ``to_plain``; GenotypeError (one sentence) for anything that does not fit."""
        if not isinstance(plain, dict) or set(plain) != set(PLAIN_KEYS):
            raise GenotypeError(f"a stored genotype is a dict with exactly the keys {', '.join(PLAIN_KEYS)}.")
        for key in ("ops", "paths", "widths"):
            if not isinstance(plain[key], list) or len(plain[key]) != len(LASTS):
                raise GenotypeError(f"genotype '{key}' must hold one list per branch ({len(LASTS)}).")
        unknown = {name for names in plain["ops"] for name in names} - set(PRIMITIVES)
        if unknown:
            raise GenotypeError(f"genotype operators {sorted(unknown)} are not in the search space {PRIMITIVES}.")
        genotype = cls(ops=tuple(tuple(PRIMITIVES.index(name) for name in names) for names in plain["ops"]),
                       paths=tuple(tuple(int(s) for s in path) for path in plain["paths"]),
                       widths=tuple(tuple(float(w) for w in ws) for ws in plain["widths"]),
                       width_mult_list=tuple(float(w) for w in plain["width_mult_list"]), layers=int(plain["layers"]))
        genotype.check()
        return genotype if plain["lasts"] is None else genotype.with_lasts(plain["lasts"])

    def check(self):
        """Every branch has one op and one scale per layer and one width per transition, and ends at its scale."""
        for last in LASTS:
            ops, path, widths = self.ops[last], self.paths[last], self.widths[last]
            if not len(ops) == len(path) == len(widths) + 1 or not path or path[-1] != last:
                raise GenotypeError(f"genotype branch {last}: {len(ops)} ops, path {list(path)} and {len(widths)} "
                                    f"widths do not describe a branch ending at scale {last}.")
            path2downs(path)


def derive_genotype(alphas, betas, ratios, width_mult_list, layers, ignore_skip=False, derivation="sequential",
                    lasts=None, width_rule="train"):
    """The derivation rules on arch tensors (alphas [3], betas [None, b1, b2], ratios [3]; never modified).

    ``width_mult_list``: the search's widths (one-column ratios mean a fixed width, see
    ``effective_width_mult_list``, whose ``rule`` is ``width_rule``); ``derivation``: "sequential" (the
    original's B5 behaviour) or "fresh".
    """
    widths_used = effective_width_mult_list(ratios, list(width_mult_list), ignore_skip, width_rule)
    metas = derive_all(alphas, betas, ratios, widths_used, layers, ignore_skip=ignore_skip, mode=derivation)
    genotype = Genotype(ops=tuple(tuple(metas[last][0]) for last in LASTS),
                        paths=tuple(tuple(metas[last][1]) for last in LASTS),
                        widths=tuple(tuple(metas[last][3]) for last in LASTS),
                        width_mult_list=tuple(widths_used), layers=int(layers))
    return genotype if lasts is None else genotype.with_lasts(lasts)
