"""Integrations of purposeguard with frameworks and clients.

Installed as ``purposeguard.integrations``; each module imports its
framework lazily, and a missing extra raises an ImportError that names it.
"""

from __future__ import annotations


def require(module: str, extra: str) -> object:
    """Import ``module`` or explain which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"purposeguard.integrations needs {module!r}: pip install 'purposeguard[{extra}]'"
        ) from error
