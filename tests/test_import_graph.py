"""The import graph of harmonize_cli: no circle, the zoo in its layers, package faces that only
re-export.

Every module is parsed with ``ast`` (nothing is imported); an edge A -> B is an ``import`` or
``from ... import`` of B anywhere in A, at module level or inside a function (an import hidden in
a function is still a dependency: it only moves the circle to run time). ``from pkg import name``
is an edge to ``pkg.name`` when that is a module, else to ``pkg``. The implicit import of a parent
package's ``__init__`` is not an edge (as in import-linter and pydeps): ``from ..zoo.state import
x`` depends on ``zoo.state``, not on everything ``zoo/__init__`` re-exports.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "harmonize_cli"

# Circles that exist in modules other work is refactoring; each is named, with what to do. The
# test fails on any other circle, and on an entry here that no longer exists (remove it then).
KNOWN_CYCLES: set = set()

# Package faces that still hold code besides imports, ``__all__`` and the docstring. The lazy
# ``__getattr__`` of these keeps ``import harmonize_cli`` and ``harmonize --help`` torch-free;
# turning them into plain re-exports belongs to the work on those packages (issue #25).
KNOWN_INIT_LOGIC: set = set()

# The zoo's layers, bottom first (docs/architecture.md, "The zoo in layers"): a module imports
# only modules of its own layer or of layers below it.
ZOO_LAYERS = [
    ("facts", {"facts"}),
    ("state", {"bounds", "safetensors_io", "state"}),
    ("registry", {"released", "published", "registry", "fingerprints"}),
    ("layouts", {"layouts"}),
    ("hub", {"download", "verify", "hub"}),
    ("builder", {"builder", "cards", "listing", "checkpoints", "pretrained"}),
    ("resolve", {"resolve"}),
    ("face", {"__init__"}),
]


def _modules(root: Path = PACKAGE) -> dict:
    """{dotted name: (path, is_package)} of every module under ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path, is_package)
    return found


def _absolute(module: str, is_package: bool, level: int, name) -> str:
    if not level:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph(root: Path = PACKAGE) -> dict:
    """{module: {imported module of the package: first line}} for every module under ``root``."""
    modules = _modules(root)
    top = root.name
    graph = {}
    for module, (path, is_package) in modules.items():
        edges = graph.setdefault(module, {})
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node.level, node.module)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `import harmonize_cli.zoo.state.x`: the module
                    target = target.rpartition(".")[0]
                if target and target.split(".")[0] == top and target != module:
                    edges.setdefault(target, node.lineno)
    return graph


def strongly_connected(graph: dict) -> list:
    """The groups of modules that import each other (Tarjan), each with more than one module."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(start):
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(frozenset(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def describe_cycle(graph: dict, group) -> str:
    """One circle through ``group``, with the line of each import: 'a:12 -> b:40 -> a'."""
    start = min(group)
    paths = {start: [start]}
    queue = [start]
    while queue:  # breadth first: the shortest way back to start
        node = queue.pop(0)
        for child in sorted(graph[node]):
            if child == start:
                path = paths[node] + [start]
                return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:])) + f" -> {start}"
            if child in group and child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return ", ".join(sorted(group))


def _cycles_report(graph, groups) -> str:
    return "\n".join(f"  {len(group)} modules: {describe_cycle(graph, group)}" for group in groups)


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert "harmonize_cli.zoo.resolve" in graph and graph["harmonize_cli.zoo"], "the graph was not built"
    groups = strongly_connected(graph)
    new = [group for group in groups if group not in KNOWN_CYCLES]
    assert not new, "import circles (break them; see docs/architecture.md):\n" + _cycles_report(graph, new)
    gone = [sorted(group) for group in KNOWN_CYCLES if group not in groups]
    assert not gone, f"these circles are gone: remove them from KNOWN_CYCLES in {__file__}: {gone}"


def test_the_cycle_finder_names_a_planted_cycle(tmp_path):
    """The finder on a package made for the test: a circle through a function-level import, and
    a straight chain that is no circle."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text('"""pkg"""\n')
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("import os\n\n\ndef f():\n    from ..c import g\n")
    (package / "c.py").write_text("from . import a\n\n\ndef g():\n    pass\n")
    (package / "d.py").write_text("from .a import b\nfrom pkg.sub.b import f\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b": 1} and graph["pkg.sub.b"] == {"pkg.c": 5}
    assert graph["pkg.d"] == {"pkg.a": 1, "pkg.sub.b": 2}
    groups = strongly_connected(graph)
    assert groups == [frozenset({"pkg.a", "pkg.sub.b", "pkg.c"})]
    assert describe_cycle(graph, groups[0]) == "pkg.a (line 1) -> pkg.sub.b (line 5) -> pkg.c (line 1) -> pkg.a"


def _is_lazy_re_export(node) -> bool:
    """The lazy re-export idiom of ``harmonize_cli.lazy``: ``_LAZY = {"name": "module", ...}``
    (string literals only), ``__getattr__, __dir__ = lazy_exports(...)``, ``__version__ = "x"``."""
    if not isinstance(node, ast.Assign) or len(node.targets) != 1:
        return False
    target, value = node.targets[0], node.value
    if isinstance(target, ast.Name) and target.id == "_LAZY" and isinstance(value, ast.Dict):
        return all(isinstance(part, ast.Constant) and isinstance(part.value, str)
                   for part in [*value.keys, *value.values])
    if isinstance(target, ast.Name) and target.id == "__version__":
        return isinstance(value, ast.Constant) and isinstance(value.value, str)
    if isinstance(target, ast.Tuple) and [getattr(e, "id", None) for e in target.elts] == ["__getattr__", "__dir__"]:
        return isinstance(value, ast.Call) and getattr(value.func, "id", None) == "lazy_exports"
    return False


def _logic_in(path: Path) -> list:
    """Statements of an ``__init__.py`` other than the docstring, imports and ``__all__``."""
    body = ast.parse(path.read_text()).body
    extra = []
    for number, node in enumerate(body):
        if number == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if all(isinstance(target, ast.Name) and target.id == "__all__" for target in targets):
                continue
            if _is_lazy_re_export(node):
                continue
        extra.append(f"line {node.lineno}: {type(node).__name__}")
    return extra


def test_package_faces_only_re_export():
    faces = sorted(PACKAGE.rglob("__init__.py"))
    assert PACKAGE / "zoo" / "__init__.py" in faces
    rel = {path: path.relative_to(PACKAGE.parent).as_posix() for path in faces}
    offending = {rel[path]: _logic_in(path) for path in faces if _logic_in(path)}
    new = {name: lines for name, lines in offending.items() if name not in KNOWN_INIT_LOGIC}
    assert not new, f"an __init__.py holds code besides imports and __all__ (move it to a module): {new}"
    fixed = sorted(KNOWN_INIT_LOGIC - set(offending))
    assert not fixed, f"these now only re-export: remove them from KNOWN_INIT_LOGIC in {__file__}: {fixed}"


def test_the_face_check_sees_logic(tmp_path):
    face = tmp_path / "__init__.py"
    face.write_text('"""doc"""\nfrom __future__ import annotations\nfrom .a import b\n__all__ = ["b"]\n')
    assert _logic_in(face) == []
    face.write_text('"""doc"""\nfrom .a import b\n\n\ndef create(x):\n    return b(x)\n')
    assert _logic_in(face) == ["line 5: FunctionDef"]
    face.write_text('"""doc"""\nfrom ..lazy import lazy_exports\n__version__ = "1.0"\n__all__ = ["b"]\n'
                    '_LAZY = {"b": "a"}\n__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)\n')
    assert _logic_in(face) == []
    face.write_text('"""doc"""\n_LAZY = {"b": make()}\n__getattr__, __dir__ = other(__name__)\n__version__ = v()\n')
    assert _logic_in(face) == ["line 2: Assign", "line 3: Assign", "line 4: Assign"]


def _zoo_layer(module: str):
    name = module.split(".")[-1] if module != "harmonize_cli.zoo" else "__init__"
    for number, (_, members) in enumerate(ZOO_LAYERS):
        if name in members:
            return number
    return None


def test_the_zoo_imports_only_downwards():
    graph = import_graph()
    zoo = {module for module in graph if module == "harmonize_cli.zoo" or module.startswith("harmonize_cli.zoo.")}
    unplaced = sorted(module for module in zoo if _zoo_layer(module) is None)
    assert not unplaced, f"place these zoo modules in ZOO_LAYERS (and docs/architecture.md): {unplaced}"
    upwards = [f"{module} ({ZOO_LAYERS[_zoo_layer(module)][0]}) imports {target} "
               f"({ZOO_LAYERS[_zoo_layer(target)][0]}) at line {line}"
               for module in sorted(zoo) for target, line in graph[module].items()
               if target in zoo and _zoo_layer(target) > _zoo_layer(module)]
    assert not upwards, "the zoo imports upwards:\n  " + "\n  ".join(upwards)


def test_zoo_modules_import_no_private_name_from_each_other():
    """``zoo.resolve`` once imported ``_same_dtypes_and_device`` back from the package: what a
    layer offers the next is public."""
    private = [f"{path.name} line {node.lineno}: {alias.name}" for path in sorted((PACKAGE / "zoo").glob("*.py"))
               for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.ImportFrom) and node.level
               for alias in node.names if alias.name.startswith("_")]
    assert not private, f"the zoo imports private names across modules: {private}"
