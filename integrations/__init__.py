"""Integrations of purposeguard with frameworks and clients.

Installed as ``purposeguard.integrations``; each module imports its
framework lazily, and a missing extra raises an ImportError that names it.

=====================  ==============================================  ==========================
module                 what it does                                    extra
=====================  ==============================================  ==========================
``asgi``               zone + purpose per request, 403 on violations   ``asgi`` (Starlette routes)
``wsgi``               the same for WSGI; ``init_app`` for Flask       ``wsgi``, ``flask``
``httpx``              guard outgoing httpx requests (sync, async)     ``httpx``
``requests``           guard outgoing requests calls                   ``requests``
``celery``             purpose, tenant, zone across tasks              ``celery``
``logging``            keep labelled content out of log records        none (standard library)
``baggage``            W3C baggage for purpose, tenant and zone        none (opentelemetry-api)
``sqlalchemy``         label values loaded through SQLAlchemy 2        ``sqlalchemy``
``django``             ORM labels, middleware and settings for Django  ``django``
``spark``              labels and purposes on PySpark batch jobs       ``spark``
=====================  ==============================================  ==========================
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
