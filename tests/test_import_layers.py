"""The import graph of the source tree has no cycle and keeps the walls of the design.

Imports are read from the source with `ast`, including the ones inside functions: a function-level
import is still a dependency, it only hides a cycle from the interpreter.  Imports under
`if TYPE_CHECKING:` never run; they count for the walls (no room may even name a type of a room it
must not depend on) but not for cycles (a part may name its owner's type, as `net.Net` names
`kernel.Kernel`, without depending on it at run time).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("filters", "kernel_model", "tracefs", "tools", "bench")
# every module is known by its installed name: the rooms live under the one `tracesim` package
NAMESPACE = "tracesim"
VM_MODULES = ("tracesim.filters.bpf.vm",)


def _module_name(path: Path) -> str:
    parts = [NAMESPACE, *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `name` names (a `from pkg import mod` may name a module)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(node: ast.AST, runtime_only: bool) -> list[ast.AST]:
    """Every import statement below ``node``, skipping ``if TYPE_CHECKING:`` bodies if asked."""
    found: list[ast.AST] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, (ast.Import, ast.ImportFrom)):
            found.append(current)
        elif runtime_only and _is_type_checking(current):
            stack.extend(current.orelse)  # type: ignore[attr-defined]
        else:
            stack.extend(ast.iter_child_nodes(current))
    return found


def _imports(module: str, path: Path, modules: dict[str, Path], runtime_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _import_nodes(tree, runtime_only):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                drop = node.level - 1 if is_package else node.level
                anchor = anchor[: len(anchor) - drop] if drop else anchor
                base = ".".join(anchor + ([base] if base else []))
            # `from a import b` may import the module a.b or a name in a.
            names = [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            target = _resolve(name, modules)
            if target is not None and target != module:
                targets.add(target)
    return targets


def _graph(runtime_only: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, modules, runtime_only) for module, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
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
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def _is_within(module: str, package: str) -> bool:
    package = package if package.startswith(NAMESPACE + ".") else f"{NAMESPACE}.{package}"
    return module == package or module.startswith(package + ".")


def test_no_import_cycle() -> None:
    graph = _graph(runtime_only=True)
    # A package's __init__ re-exporting its submodules is not a dependency of those submodules on
    # each other; drop edges from a package to its own members so only real module cycles remain.
    trimmed = {m: {t for t in targets if not _is_within(t, m)} for m, targets in graph.items()}
    assert _cycles(trimmed) == []


def _violations(
    graph: dict[str, set[str]], sources: tuple[str, ...], forbidden: tuple[str, ...]
) -> list[str]:
    return sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if any(_is_within(module, s) for s in sources)
        for target in targets
        if any(_is_within(target, f) for f in forbidden)
    )


def test_model_and_filters_never_import_the_mount_or_the_tools() -> None:
    assert _violations(_graph(), ("kernel_model", "filters"), ("tracefs", "tools")) == []


def test_tracefs_never_imports_the_tools() -> None:
    assert _violations(_graph(), ("tracefs",), ("tools",)) == []


def test_the_vm_never_imports_the_compiler() -> None:
    assert _violations(_graph(), VM_MODULES, ("tracesim.filters.bpf.compiler",)) == []


def test_the_graph_sees_function_level_imports() -> None:
    # Guards the parser itself: tools.cli dispatches to its commands, so it must see some edges.
    graph = _graph()
    assert "tracesim.filters.bpf.vm.interp" in graph
    seen = graph["tracesim.tools.cli"] | graph.get("tracesim.tools.cmd_check", set())
    assert any(_is_within(t, "filters") for t in seen)


def test_type_checking_imports_are_walls_but_not_cycles() -> None:
    # net.py names the Kernel that owns it only for type checking: seen by the walls' graph only.
    assert "tracesim.kernel_model.kernel" in _graph()["tracesim.kernel_model.net.core"]
    assert "tracesim.kernel_model.kernel" not in _graph(runtime_only=True)["tracesim.kernel_model.net.core"]


def test_every_import_names_the_tracesim_namespace() -> None:
    # A bare `import filters...` would load a second copy of a module beside `tracesim.filters...`
    # in a source tree, and fail in an installed one (the rooms are not top-level names there).
    bare = []
    for module, path in _modules().items():
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8")), runtime_only=False):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if not node.level else [])
            bare += [f"{module}: {n}" for n in names if n.split(".")[0] in PACKAGES]
    assert bare == []
