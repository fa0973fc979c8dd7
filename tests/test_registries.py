"""The extension points are tables of frozen records (docs/architecture.md "Where to make a change"): the docs
name, for each, the record, the table and the file, and those exist as named -- a renamed table fails here."""
import dataclasses
import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (what one adds, the record class, the table, the module that holds both)
REGISTRIES = [
    ("a sixth candidate operator", "Operator", "OPERATORS", "tools.ops.primitives"),
    ("a dataset layout", "Layout", "LAYOUTS", "tools.data.prepare"),
    ("a learning-rate schedule", "Schedule", "LR_SCHEDULES", "tools.engine.recipe"),
    ("a latency backend", "Backend", "BACKENDS", "tools.latency.backends"),
    ("a stage of the main job", "Stage", "STAGE_TABLE", "tools.pipeline"),
]


def _where_to_make_a_change():
    text = open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8").read()
    section = text.split("## Where to make a change", 1)[1].split("\n## ", 1)[0]
    return {cells[0]: cells[1] for cells in (
        [cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| change"))}


@pytest.mark.parametrize("change, record, table, module", REGISTRIES)
def test_where_to_make_a_change_names_each_registry_as_it_is(change, record, table, module):
    rows = _where_to_make_a_change()
    row = next((files for name, files in rows.items() if name.startswith(change)), None)
    assert row is not None, f"docs/architecture.md 'Where to make a change' has no row for {change!r}"
    path = module.replace(".", "/") + ".py"
    assert re.search(rf"one `{record}` row in `{table}` \(`{path}`\)", row), row
    loaded = importlib.import_module(module)
    record_class, rows_of_table = getattr(loaded, record), getattr(loaded, table)
    assert dataclasses.is_dataclass(record_class) and record_class.__dataclass_params__.frozen
    entries = list(rows_of_table.values()) if isinstance(rows_of_table, dict) else list(rows_of_table)
    assert entries and all(isinstance(entry, record_class) for entry in entries)


def test_every_registry_of_the_code_has_its_row():
    """A new table of frozen records (a module-level tuple or dict of one dataclass) must be listed above and in
    the docs: found by scanning tools/ for ``NAME = (`` / ``NAME = {`` tables whose rows are frozen dataclasses."""
    listed = {(table, module) for _c, _r, table, module in REGISTRIES}
    found, rows = set(), {}
    for parent, dirs, names in os.walk(os.path.join(ROOT, "tools")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in (n for n in names if n.endswith(".py")):
            module = os.path.relpath(os.path.join(parent, name), ROOT)[:-3].replace(os.sep, ".")
            source = open(os.path.join(parent, name), encoding="utf-8").read()
            if "@dataclass(frozen=True)" not in source:
                continue
            loaded = importlib.import_module(module)
            for table in re.findall(r"^([A-Z][A-Z_]+) = [({]", source, re.M):
                value = getattr(loaded, table, None)
                entries = list(value.values()) if isinstance(value, dict) else value
                if isinstance(entries, (list, tuple)) and len(entries) > 1 and all(
                        dataclasses.is_dataclass(e) and not isinstance(e, type) and
                        type(e).__dataclass_params__.frozen and type(e).__module__ == module for e in entries):
                    found.add((table, module))
                    rows[(table, module)] = {id(e) for e in entries}
    views = {key for key in found - listed if any(rows[key] <= rows[other] for other in listed & found)}
    assert found - views == listed           # a view of a listed table (OPS: OPERATORS by name) is not another
