"""What docs/architecture.md states about the code holds: the error tree is the one drawn, and it is whole."""

import importlib
import pkgutil
import re

import pytest

import zeronode.errors
from zeronode.errors import ZeronodeError

PACKAGES = ("zeronode", "supervisor", "runner", "sal", "coord", "ledger")
# Simulators play foreign daemons: their exceptions are the daemon's answers, not errors zeronode raises.
SIMULATORS = re.compile(r"(^|\.)simulator$")


@pytest.fixture(scope="module")
def modules() -> list:
    found = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        found.append(package)
        found += [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(package.__path__, f"{name}.")
            if not info.name.endswith(".__main__")  # importing it runs the program
        ]
    return found


def drawn_tree(text: str) -> set[tuple[str, str]]:
    """(parent, child) for each edge of the tree drawn in `text`: a root line, then ├── / └── lines under │ rails."""
    edges, path = set(), []
    for line in text.splitlines():
        match = re.match(r"    ((?:│   |    )*)(?:├── |└── )([A-Z]\w+)", line)
        if line.strip() == "ZeronodeError":
            path = ["ZeronodeError"]
        elif match and path:
            depth = len(match[1]) // 4 + 1
            del path[depth:]
            edges.add((path[-1], match[2]))
            path.append(match[2])
    return edges


def real_tree() -> set[tuple[str, str]]:
    edges, todo = set(), [ZeronodeError]
    while todo:
        parent = todo.pop()
        for child in parent.__subclasses__():
            edges.add((parent.__name__, child.__name__))
            todo.append(child)
    return edges


def test_the_error_tree_drawn_in_the_root_module_is_the_tree_in_the_code(modules):
    drawn, real = drawn_tree(zeronode.errors.__doc__), real_tree()
    assert drawn, "no tree found in zeronode/errors.py's docstring"
    assert drawn - real == set(), "drawn but not in the code"
    assert real - drawn == set(), "in the code but not drawn"


def test_every_error_zeronode_defines_is_in_the_tree(modules):
    outside = [
        f"{module.__name__}.{value.__name__}"
        for module in modules
        if not SIMULATORS.search(module.__name__)
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Exception) and value.__module__ == module.__name__
        and not issubclass(value, ZeronodeError)
    ]
    assert outside == []
