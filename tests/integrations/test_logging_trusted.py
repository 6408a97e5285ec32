"""Server access lines under the logging filter: a redacted record keeps the
shape of its arguments (formatters take them apart), and ``setup(trusted_loggers=...)``
spares a server's own records the zone check. Tried with a real uvicorn
server, uvicorn's and gunicorn's own formatting code."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from purposeguard.integrations.logging import PurposeGuardFilter, setup, teardown

import purposeguard as pg

CONTENT = "customer_data.content.email"  # not allowed for service.operations.logs
REDACTED = f"[redacted: {CONTENT}]"
ACCESS = '%s - "%s %s HTTP/%s" %d'  # the message uvicorn's access logger is given


def server_code(module: str) -> Callable[..., None]:
    """A function that logs as a server's own module would: its records are
    made by code of the package the logger is named after."""
    namespace: dict[str, Any] = {"__name__": module}
    exec(  # noqa: S102 - a module of a given name, made here
        "def emit(logger, message, *args, **kwargs):\n    logger.info(message, *args, **kwargs)\n",
        namespace,
    )
    return namespace["emit"]  # type: ignore[no-any-return]


def fresh(name: str, formatter: logging.Formatter | None = None) -> tuple[logging.Logger, io.StringIO]:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.disabled = False
    logger.setLevel(logging.INFO)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter or logging.Formatter("%(message)s"))
    logger.handlers = [handler]
    return logger, stream


@pytest.fixture
def enforce_context() -> None:
    pg.configure("trust-center", context_mode="enforce")


@pytest.fixture
def no_logging_errors(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """A formatter that fails makes logging print '--- Logging error ---' and lose the line."""
    yield
    assert "Logging error" not in capsys.readouterr().err


# -- a redacted record keeps its arguments' shape ---------------------------------------------


@pytest.mark.usefixtures("enforce_context", "no_logging_errors")
def test_uvicorns_access_formatter_writes_a_line_redacted_through_the_zone(marker: str) -> None:
    from uvicorn.logging import AccessFormatter

    formatter = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    logger, stream = fresh("pgtest.uvicorn.access", formatter)
    guard_filter = setup(logger)
    try:
        with pg.zone(tenant="contoso"):
            pg.label(marker, CONTENT)  # the request read content
            logger.info(ACCESS, "127.0.0.1:5000", "GET", "/inbox/42", "1.1", 200)
    finally:
        teardown(guard_filter, logger)
    line = stream.getvalue()
    assert line == f'{REDACTED} - "{REDACTED} {REDACTED} HTTP/{REDACTED}" 200 OK\n'


@pytest.mark.usefixtures("enforce_context")
@pytest.mark.parametrize(
    "message, args, shape",
    [
        ("took %d ms for %s", (5, "tail"), (5, REDACTED)),
        # In a zone that read data, only what no data fits in stays: truth
        # values, None, small integers (a status, a port, a count).
        ("flags %s %r %x %.2f", (True, None, 255, 1.5), (True, None, 255, REDACTED)),
        ("card %d", (4111111111111111,), (REDACTED,)),
        ("%(h)s %(s)d", ({"h": "10.0.0.1", "s": 200, "unnamed": "x"},), {"h": REDACTED, "s": 200}),
        ("%s", ({"someone@contoso.example": 3},), {}),  # a mapping logged whole: its keys may be content
        ("bytes %s", (b"raw", bytearray(b"raw")), (REDACTED.encode(), bytearray(REDACTED.encode()))),
        ("plain", (), ()),
    ],
)
def test_a_redacted_record_keeps_the_shape_of_its_arguments(
    marker: str, message: str, args: tuple[Any, ...], shape: Any
) -> None:
    record = logging.LogRecord("pgtest.shape", logging.INFO, __file__, 1, message, args, None)
    with pg.zone(tenant="contoso"):
        pg.label(marker, CONTENT)
        PurposeGuardFilter().filter(record)
    assert record.args == shape and type(record.args) is type(shape)
    # The arguments are consumed, not shown: the message is the redaction note alone.
    assert record.getMessage() == (
        f"[purposeguard redacted this message: written in a zone that had read {CONTENT},"
        " not allowed for service.operations.logs (rule no-content-in-logs)]"
    )


@pytest.mark.usefixtures("no_logging_errors")
def test_a_labelled_number_becomes_text_never_a_number_that_reads_as_data(marker: str) -> None:
    logger, stream = fresh("pgtest.amount")
    guard_filter = setup(logger)
    seen: list[Any] = []

    class Keep(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            seen.append(record.args)
            return True

    logger.handlers[0].addFilter(Keep())
    try:
        logger.info("charged %d to %s", pg.label(4242, "payment_data"), "card")
    finally:
        teardown(guard_filter, logger)
    assert seen == [("[redacted: payment_data]", "[redacted: payment_data]")]
    assert "4242" not in stream.getvalue() and "redacted" in stream.getvalue()


@pytest.mark.usefixtures("enforce_context", "no_logging_errors")
def test_gunicorns_access_atoms_format_after_redaction(marker: str) -> None:
    # gunicorn comes with the "bench" extra, which the test extra installs
    # (imported here: it ships no type information for the module's imports).
    import importlib

    SafeAtoms = importlib.import_module("gunicorn.glogging").SafeAtoms
    access_log_format = importlib.import_module("gunicorn.config").Config().access_log_format

    class Fields(logging.Formatter):
        """The shape of the JSON access formatters written for gunicorn: fields read from the atoms."""

        def format(self, record: logging.LogRecord) -> str:
            atoms: Any = record.args
            return json.dumps({"line": record.getMessage(), "remote": atoms["h"], "status": atoms["s"]})

    logger, stream = fresh("pgtest.gunicorn.access", Fields())
    guard_filter = setup(logger)
    atoms = SafeAtoms({"h": "10.0.0.1", "l": "-", "u": "-", "t": "[now]", "r": "GET /inbox/42 HTTP/1.1"})
    atoms.update({"s": "200", "b": "2", "f": "-", "a": "curl", "{x-mail}i": marker})
    try:
        with pg.zone(tenant="contoso"):
            pg.label(marker, CONTENT)
            logger.info(access_log_format, atoms)
    finally:
        teardown(guard_filter, logger)
    written = json.loads(stream.getvalue())
    assert written["remote"] == REDACTED and written["status"] == REDACTED
    assert "redacted this message" in written["line"] and marker not in stream.getvalue()


@pytest.mark.usefixtures("enforce_context")
def test_text_beside_a_message_refused_by_the_zone_is_redacted_too(marker: str) -> None:
    """An ``extra=`` field rebuilt from what the zone read carries no label either."""
    logger, stream = fresh("pgtest.extra", logging.Formatter("%(message)s | %(detail)s | %(took)s | %(raw)s"))
    guard_filter = setup(logger)
    try:
        with pg.zone(tenant="contoso"):
            body = pg.label(marker, CONTENT)
            rebuilt = "".join(chr(ord(c)) for c in body)  # no label survives this
            logger.info("handled", extra={"detail": rebuilt, "took": 12, "raw": rebuilt.encode()})
    finally:
        teardown(guard_filter, logger)
    line = stream.getvalue()
    assert marker not in line
    assert f"| {REDACTED} | 12 | {REDACTED.encode()!r}" in line


# -- a real uvicorn server -------------------------------------------------------------------

SERVE = """
import sys, socket, threading, time
import httpx, uvicorn
import purposeguard as pg
from purposeguard.integrations import logging as pg_logging
from purposeguard.integrations.asgi import PurposeGuardMiddleware

pg.configure("trust-center", context_mode="enforce")
flows = []
pg.on_violation(lambda v: flows.append(v.function))

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    pg.label(MARKER, "customer_data.content.email")  # the request reads content
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
config = uvicorn.Config(PurposeGuardMiddleware(app), fd=None, lifespan="off", ws="none", log_level="info")
server = uvicorn.Server(config)
config.load()  # uvicorn's logging configuration, as uvicorn.run() makes it
pg_logging.setup(**OPTIONS)
thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
thread.start()
while not server.started:
    time.sleep(0.02)
status = httpx.get(f"http://127.0.0.1:{sock.getsockname()[1]}/inbox/42").status_code
server.should_exit = True
thread.join(30)
print("FLOWS", sorted(set(flows)), "STATUS", status, file=sys.stderr)
"""


def serve_one_request(marker: str, **options: Any) -> tuple[str, str]:
    code = f"MARKER = {marker!r}\nOPTIONS = {options!r}\n" + textwrap.dedent(SERVE)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "STATUS 200" in done.stderr
    return done.stdout, done.stderr  # uvicorn writes access lines to stdout


def test_a_real_uvicorn_server_writes_the_access_line_of_a_zone_that_read_content(marker: str) -> None:
    out, err = serve_one_request(marker)
    assert "Logging error" not in err and "Traceback" not in err
    (line,) = [line for line in out.splitlines() if " 200 OK" in line]
    assert REDACTED in line and "/inbox/42" not in line  # redacted through the zone, still written
    assert marker not in out + err
    assert "'logging.uvicorn.access'" in err  # the flow is recorded


def test_a_real_uvicorn_servers_trusted_access_logger_writes_the_request_line(marker: str) -> None:
    out, err = serve_one_request(marker, trusted_loggers=["uvicorn.access"])
    assert "Logging error" not in err
    assert '"GET /inbox/42 HTTP/1.1" 200 OK' in out
    assert marker not in out + err
    assert "FLOWS []" in err  # no flow for the server's own line


# -- trusted loggers --------------------------------------------------------------------------


@pytest.fixture
def access_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    logger, stream = fresh("pgserver.access")
    guard_filter = setup(logger, trusted_loggers=["pgserver.access"])
    yield logger, stream
    teardown(guard_filter, logger)


@pytest.mark.usefixtures("enforce_context")
def test_a_trusted_loggers_own_record_is_not_held_to_the_zone(
    access_log: tuple[logging.Logger, io.StringIO], marker: str
) -> None:
    logger, stream = access_log
    emit = server_code("pgserver.protocol")
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        pg.label(marker, CONTENT)
        emit(logger, ACCESS, "127.0.0.1:5000", "GET", "/inbox/42", "1.1", 200)
        emit(logging.getLogger("pgserver.access.h11"), "closed %s", "127.0.0.1:5000")  # below it
    assert violations == []
    assert stream.getvalue() == '127.0.0.1:5000 - "GET /inbox/42 HTTP/1.1" 200\nclosed 127.0.0.1:5000\n'


@pytest.mark.usefixtures("enforce_context")
def test_a_labelled_value_through_a_trusted_logger_is_still_redacted(
    access_log: tuple[logging.Logger, io.StringIO], marker: str
) -> None:
    logger, stream = access_log
    with pg.testing.capture() as violations:
        server_code("pgserver.protocol")(logger, "path %s", pg.label(marker, CONTENT))
    assert marker not in stream.getvalue() and "it carried" in stream.getvalue()
    assert [(v.via, v.function) for v in violations] == [("egress", "logging.pgserver.access")]


@pytest.mark.usefixtures("enforce_context")
def test_an_exception_through_a_trusted_logger_is_still_held_to_the_zone(
    access_log: tuple[logging.Logger, io.StringIO], marker: str
) -> None:
    logger, stream = access_log
    with pg.zone(tenant="contoso"):
        body = pg.label(marker, CONTENT)
        try:
            int("".join(chr(ord(c)) for c in body))  # a traceback quoting content, no label
        except ValueError:
            server_code("pgserver.protocol")(logger, "request failed: %s", "GET /inbox", exc_info=True)
    text = stream.getvalue()
    assert marker not in text
    assert "request failed: GET /inbox" in text  # the server's message stays
    assert "redacted a ValueError traceback" in text


@pytest.mark.usefixtures("enforce_context")
def test_the_applications_own_record_through_a_trusted_logger_is_held_to_the_zone(
    access_log: tuple[logging.Logger, io.StringIO], marker: str
) -> None:
    """As an application logging its own lines through ``getLogger("uvicorn.error")``."""
    logger, stream = access_log
    with pg.testing.capture() as violations, pg.zone(tenant="contoso"):
        body = pg.label(marker, CONTENT)
        logger.info("".join(chr(ord(c)) for c in body))  # made here, not by the server's package
        server_code("pgserverx.app")(logger, "%s", "".join(chr(ord(c)) for c in body))  # a name-alike
    assert marker not in stream.getvalue()
    assert [v.via for v in violations] == ["context", "context"]


@pytest.mark.usefixtures("enforce_context")
def test_a_trusted_name_covers_the_loggers_below_it_only(marker: str) -> None:
    logger, stream = fresh("pgserver.accessx")
    guard_filter = setup(logger, trusted_loggers=["pgserver.access"])
    try:
        with pg.zone(tenant="contoso"):
            pg.label(marker, CONTENT)
            server_code("pgserver.protocol")(logger, "%s", "GET /inbox/42")
    finally:
        teardown(guard_filter, logger)
    assert "/inbox/42" not in stream.getvalue() and "redacted" in stream.getvalue()


def test_nothing_is_trusted_by_default() -> None:
    guard_filter = setup("pgtest.default")
    try:
        assert guard_filter.trusted_loggers == frozenset()
    finally:
        teardown(guard_filter, "pgtest.default")
    assert PurposeGuardFilter(trusted_loggers=("a.b", "c")).trusted_loggers == {"a.b", "c"}


@pytest.mark.parametrize(
    "trusted, error, says",
    [
        ("uvicorn.access", TypeError, "not a single str"),
        (b"uvicorn.access", TypeError, "not a single bytes"),
        (5, TypeError, "not int"),
        ([logging.getLogger("uvicorn.access")], TypeError, "not Logger"),
        ([pg.label(4242, CONTENT)], TypeError, "not LabelledInt"),
        ([""], ValueError, "empty"),
        (["uvicorn.*"], ValueError, "covers the loggers below it"),
        (["*"], ValueError, "covers the loggers below it"),
        (["root"], ValueError, "application's own"),
        ([" uvicorn"], ValueError, "not a logger name"),
        (["uvicorn..access"], ValueError, "not a logger name"),
        (["uvicorn."], ValueError, "not a logger name"),
    ],
)
def test_an_entry_that_is_not_a_logger_name_is_refused_before_anything_is_set_up(
    trusted: Any, error: type[Exception], says: str
) -> None:
    logger = logging.getLogger("pgtest.refused")
    before = list(logger.filters)
    with pytest.raises(error, match=says) as raised:
        setup(logger, trusted_loggers=trusted)
    assert "4242" not in str(raised.value)  # an entry's type, never its value
    assert logger.filters == before


@pytest.mark.usefixtures("enforce_context")
def test_in_a_refusing_zone_extras_at_any_depth_are_redacted(marker: str) -> None:
    record = logging.LogRecord("pgtest.extras", logging.INFO, __file__, 1, "saved %s", ("draft",), None)
    record.__dict__.update({"payload": {"body": f"{marker}!"}, "amount": 129.99, "retries": 2})
    with pg.zone(tenant="contoso"):
        pg.label(marker, CONTENT)
        PurposeGuardFilter().filter(record)
    assert record.__dict__["payload"] == REDACTED and record.__dict__["amount"] == REDACTED
    assert record.__dict__["retries"] == 2
    assert marker not in repr(record.__dict__)
