"""Package attributes imported on first use (PEP 562), for packages whose submodules are heavy.

``specbp_rtl.sim`` and ``specbp_rtl.boards`` export their submodules' public
names, but importing either must not elaborate gateware, build Verilator or
load pyserial: :func:`lazy_exports` gives them a module ``__getattr__`` and
``__dir__`` that import a name's submodule when the name is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, namespace: dict[str, Any], exports: dict[str, str], submodules: tuple[str, ...]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a public name to its submodule.

    A name is imported once and then stored in ``namespace`` (the package's
    ``globals()``), so later look-ups do not come back here; ``submodules``
    may be reached as attributes too.
    """

    def getattr_(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
            namespace[name] = value
            return value
        if name in submodules:
            return importlib.import_module(f".{name}", package)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def dir_() -> list[str]:
        return sorted(set(namespace) | set(exports) | set(submodules))

    return getattr_, dir_
