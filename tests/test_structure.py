"""The house's structure, checked: layers only import downwards, no import cycles between
modules (lazy imports inside functions count too) nor between subpackages, the
HTTP service never imports the CLI's commands, matplotlib is imported only by the reports
package, and nothing in the repository points outside it."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: lowbit's layers, lowest first: a module may import its own layer and the ones before it
LAYERS = ("hardware_profiles", "hwsim", "models", "search", "results", "reports")
#: the front-ends (CLI, service) sit on top of every layer
TOP = len(LAYERS)


def _modules() -> dict[str, Path]:
    out = {}
    for path in (REPO / "lowbit").rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            test = getattr(child, "test", None) if isinstance(child, ast.If) else None
            if test is not None and "TYPE_CHECKING" in ast.unparse(test):
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of lowbit that ``name`` imports anywhere in its body (resolved to modules)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name and target != "lowbit":
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    part = module.split(".")[1] if module.count(".") else ""
    return LAYERS.index(part) if part in LAYERS else TOP


def test_layers_import_only_downwards():
    upward = [
        f"{src} -> {dst}"
        for src, targets in _graph().items()
        for dst in targets
        if _layer(dst) > _layer(src)
    ]
    assert upward == []


def test_the_service_does_not_import_cli_commands():
    graph = _graph()
    bad = [
        f"{src} -> {dst}"
        for src, targets in graph.items()
        if src.startswith("lowbit.service")
        for dst in targets
        if dst.startswith("lowbit.commands")
    ]
    assert bad == []


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in ``path`` (lazy ones too)."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_matplotlib_is_imported_only_by_reports():
    drawing = sorted(
        name
        for name, path in _modules().items()
        if "matplotlib" in _third_party_imports(path) and not name.startswith("lowbit.reports")
    )
    assert drawing == []
    assert "matplotlib" in _third_party_imports(REPO / "lowbit" / "reports" / "_figure.py")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Imports between (sub)packages: a module counts as its directory's package; imports
    between a package and its own ancestors are left out (``models.zoo`` -> ``models``)."""
    modules = _modules()

    def package(name: str) -> str:
        return name if modules[name].name == "__init__.py" else name.rsplit(".", 1)[0]

    out: dict[str, set[str]] = {package(name): set() for name in graph}
    for src, targets in graph.items():
        a = package(src)
        for dst in targets:
            b = package(dst)
            if not (a == b or a.startswith(b + ".") or b.startswith(a + ".")):
                out[a].add(b)
    return out


def test_no_import_cycles_between_packages():
    assert _cycles(_package_graph(_graph())) == []


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_nothing_points_outside_the_repository():
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    outside = re.compile(r"\.\./shared|/work/|/home/\w+/|/Users/\w+/")
    bad = [
        name
        for name in tracked
        if name.endswith((".py", ".md", ".toml", ".cfg", ".txt", ".json", "Makefile", "run"))
        and name != "tests/test_structure.py"
        and (REPO / name).is_file()  # tracked but deleted in a working tree
        and outside.search((REPO / name).read_text(encoding="utf-8", errors="replace"))
    ]
    assert bad == []
