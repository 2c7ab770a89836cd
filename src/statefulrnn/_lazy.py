"""Public names of a package resolved on first use, so importing the package costs nothing.

`import statefulrnn` (and the `statefulrnn` command's parser) must not import torch: a
package lists its public names and the module each lives in, and `attach` gives it the
module-level `__getattr__` and `__dir__` that import that module when the name is first read
(PEP 562). The value is then cached in the package, so later reads are plain attribute reads.

A public name may be the name of a submodule too (`statefulrnn.predict`, `statefulrnn.train.fit`):
importing the submodule binds it as the package's attribute, which would hide the function.
`attach` makes the package keep its public names for what they name, as an eager package would.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


class _Package(types.ModuleType):
    """A package whose public names are not replaced by its submodules when those are imported."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in vars(self).get("_exports", ()):
            return
        super().__setattr__(name, value)


def attach(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`; `exports` maps a public name to its module."""

    def __getattr__(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    module = sys.modules[package]
    module._exports = exports  # type: ignore[attr-defined]
    module.__class__ = _Package
    return __getattr__, __dir__
