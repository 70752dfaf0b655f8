"""A package's public names imported from its modules when first used (PEP 562).

The command line starts reading a case's files before the stages load (:mod:`.imaging.prefetch`),
and a command imports only what it uses: the packages name their public functions without
importing the modules that define them.
"""

import importlib
import sys

__all__ = ["lazy_names"]


def lazy_names(package, where):
    """(``__getattr__``, ``__dir__``) for the package named ``package``, whose public names
    ``where`` maps to the module of the package that defines each."""

    def __getattr__(name):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)  # imported once: the next use finds it directly
        return value

    def __dir__():
        module = sys.modules[package]
        return sorted(set(vars(module)) | set(getattr(module, "__all__", ())))

    return __getattr__, __dir__
