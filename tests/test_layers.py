"""Layers only point down (docs/architecture.md): a module under tools/ may import its own package and the packages
ranked below it, never one ranked above, and never a stage script. Checked on the source (ast), so lazy imports
inside functions count too and nothing is executed."""
import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")

# Lowest first. Why this order: file plumbing < operators < their initialisation < networks built from them <
# what trains/feeds networks < configs that name all of it < plots of results < the run machinery < the stages
# that use a run < the pipeline chaining the stages < scripts. Packages on one rank may import each other.
RANKS = [
    {"tools", "tools.utils"},
    {"tools.ops"},
    {"tools.init_func"},
    {"tools.models"},
    {"tools.losses", "tools.data"},
    {"tools.config"},
    {"tools.plots"},
    {"tools.engine"},
    {"tools.search", "tools.train", "tools.latency"},
    {"tools.pipeline"},
    {"tools.convert_arch"},
]
RANK = {package: level for level, packages in enumerate(RANKS) for package in packages}
# The stage scripts and everything else outside tools/ sit above it: tools/ never imports them.
OUTSIDE = {"search", "train", "latency", "dataset", "run_demo", "benchmarks", "tests", "configs", "conftest"}


def tools_modules():
    """(dotted name, path, is_package) of every .py file under tools/."""
    found = []
    for parent, dirs, names in os.walk(TOOLS):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                path = os.path.join(parent, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                is_package = parts[-1] == "__init__"
                found.append((".".join(parts[:-1] if is_package else parts), path, is_package))
    return found


def package_of(module):
    """The ranked package ``module`` belongs to (the longest ranked prefix), or None. ``tools`` ranks its own
    ``__init__`` only: as a prefix it would give every new module a rank, and the rank test could not fail."""
    if module == "tools":
        return "tools"
    parts = module.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in RANK:
            return ".".join(parts[:end])
    return None


def imported_modules(module, path, is_package):
    """Absolute names of every module ``path`` imports (relative imports resolved), with their line numbers."""
    tree = ast.parse(open(path, encoding="utf-8").read(), filename=path)
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            yield target, node.lineno
            for alias in node.names:       # "from tools import engine" imports tools.engine
                yield f"{target}.{alias.name}", node.lineno


def violations(modules):
    """One line per import statement in ``modules`` ((name, path, is_package) triples) that points up or out of
    tools/."""
    found = {}
    for module, path, is_package in modules:
        own = package_of(module)
        for target, line in imported_modules(module, path, is_package):
            where = f"{os.path.relpath(path, ROOT)}:{line}"
            top = target.split(".")[0]
            if top in OUTSIDE:
                found.setdefault(where, f"{where} imports {target} (outside tools/: a stage script, test or config)")
            elif top == "tools":
                other = package_of(target)
                if other is not None and other != own and RANK[other] > RANK[own]:
                    found.setdefault(where, f"{where} ({own}, rank {RANK[own]}) imports {target} "
                                            f"({other}, rank {RANK[other]})")
    return list(found.values())


def test_every_slow_fixture_named_in_conftest_exists():
    """conftest marks the tests that use these fixtures slow: a renamed fixture must not leave the set stale."""
    from tests.conftest import SLOW_FIXTURES
    sources = "".join(open(os.path.join(ROOT, "tests", name), encoding="utf-8").read()
                      for name in os.listdir(os.path.join(ROOT, "tests")) if name.endswith(".py"))
    defined = set(re.findall(r"@pytest\.fixture[^\n]*\ndef (\w+)\(", sources))
    assert SLOW_FIXTURES <= defined, SLOW_FIXTURES - defined


def test_every_tools_module_has_a_rank():
    """A new package or top-level module under tools/ must be placed in RANKS before it can be used."""
    unranked = [module for module, _path, _pkg in tools_modules() if package_of(module) is None]
    assert unranked == [], f"add these to RANKS in tests/test_layers.py: {unranked}"


def test_a_new_module_gets_no_rank_until_it_is_placed():
    assert package_of("tools.brand_new") is None and package_of("tools.brand_new.part") is None
    assert package_of("tools") == "tools" and package_of("tools.utils.fileio") == "tools.utils"
    assert package_of("tools.pipeline") == "tools.pipeline"


def test_no_layer_imports_a_higher_one():
    found = violations(tools_modules())
    assert found == [], "imports that point up:\n" + "\n".join(found)


@pytest.mark.parametrize("source, expected", [
    ("from tools.engine import run", ["tools.engine", "tools.engine.run"]),
    ("from . import fileio", ["tools.utils", "tools.utils.fileio"]),
    ("from ..engine.run import Run", ["tools.engine.run", "tools.engine.run.Run"]),
    ("def f():\n    import search.train_search", ["search.train_search"]),
])
def test_the_checker_sees_every_kind_of_import(tmp_path, source, expected):
    path = tmp_path / "mod.py"
    path.write_text(source)
    assert [name for name, _ in imported_modules("tools.utils.mod", str(path), False)] == expected


def test_an_upward_import_is_reported(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("from tools.utils import fileio\n\n\ndef f():\n    from tools.engine.run import Run\n")
    found = violations([("tools.ops.mod", str(path), False)])
    assert len(found) == 1 and "imports tools.engine.run" in found[0] and ":5 " in found[0]


def test_code_says_what_and_why_not_when_or_which_issue():
    """History lives in git: no comment or docstring names an issue, and the package code names no date."""
    issue = re.compile(r"\b[Ii]ssue[ -]?#?\d+")
    date = re.compile(r"\b20\d\d-\d\d-\d\d\b")
    found = []
    for folder in ("tools", "search", "train", "latency", "dataset", "configs", "benchmarks", "tests"):
        for parent, dirs, names in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "data")]
            for name in (n for n in names if n.endswith(".py")):
                path = os.path.join(parent, name)
                for number, line in enumerate(open(path, encoding="utf-8"), 1):
                    if issue.search(line) or (folder in ("tools", "configs") and date.search(line)):
                        found.append(f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}")
    assert found == [], "\n".join(found)
