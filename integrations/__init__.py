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
``urllib3``            guard urllib3 (botocore, elasticsearch-py...)   ``urllib3``
``http_client``        guard http.client and urllib.request            none (standard library)
``aiohttp``            guard outgoing aiohttp client requests          ``aiohttp``
``smtp``               guard mail sent with smtplib (and its mailers)  none (standard library)
``celery``             purpose, tenant, zone across tasks              ``celery``
``rq``                 the same across RQ jobs (enqueuer and worker)   ``rq``
``logging``            keep labelled content out of log records        none (standard library)
``spans``              keep labelled content out of tracing spans      ``otel``
``baggage``            signed baggage: purpose, tenant and zone        none (opentelemetry-api)
``sqlalchemy``         label values loaded through SQLAlchemy 2        ``sqlalchemy``
``django``             ORM labels, middleware and settings for Django  ``django``
``spark``              labels and purposes on PySpark batch jobs       ``spark``
``jinja2``             rendered templates carry what they interpolated ``jinja2``
=====================  ==============================================  ==========================

When any egress guard is on, a client that can send data out but has no
guard on (one purposeguard does not guard, or whose guard was not turned
on) is named once on the ``purposeguard`` logger at the next egress check.
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
