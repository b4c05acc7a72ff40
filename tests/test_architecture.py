"""The house's shape: no import cycles anywhere in the product (lazy imports inside functions count), and the
direction between packages that ``lint-imports`` (the contracts in pyproject.toml) enforces in ``make test``."""

from __future__ import annotations

import grimp

PRODUCT = ("lephi", "console", "payments", "invoices", "adapters", "devtools")


def _graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PRODUCT, include_external_packages=False, cache_dir=None)


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative, so that a long chain of imports cannot exhaust the recursion limit.
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
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
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                    found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "a.x", "a.y", "a.z"):
        graph.add_module(module)
    graph.add_import(importer="a.x", imported="a.y")
    graph.add_import(importer="a.y", imported="a.z")
    graph.add_import(importer="a.z", imported="a.x")
    assert _cycles(graph) == [["a.x", "a.y", "a.z"]]


def test_domain_packages_never_import_the_shell() -> None:
    graph = _graph()
    for domain in ("console", "payments", "invoices", "adapters"):
        for shell in ("lephi", "devtools"):
            assert not graph.chain_exists(importer=domain, imported=shell, as_packages=True), (domain, shell)
    assert not graph.chain_exists(importer="adapters", imported="payments", as_packages=True)
    assert not graph.chain_exists(importer="payments", imported="invoices", as_packages=True)
