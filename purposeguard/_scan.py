"""A static scan of a source tree: what the code declares, found by parsing.

The scan never imports the code it reads (importing could run it, and the
code under review may need services that are not there). It finds every
``@purpose``/``with purpose``, ``@produces``, ``@transform``, ``Category``
and ``label`` use that resolves, through the file's own imports, to
purposeguard, and records the file, line, enclosing function and keys. Keys
are read from literals and from the constants they name (module-level
``EMAIL = "customer_data.content.email"``, imported from another scanned
module or not, tuples of them, class attributes), and field declarations
are found where the frameworks keep them: ``Category`` in an annotation
(directly or through an alias such as ``Body = Annotated[str,
pg.Category(...)]``) and ``info={"purposeguard": ...}`` on SQLAlchemy and
SQLModel columns. It never records a labelled value: for
``label(value, *categories)`` only the categories are read. Files that do not parse are skipped and named,
and so are folders of installed code (virtualenvs, ``site-packages``,
``node_modules``); only hidden folders and ``__pycache__`` are passed over
without a word.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ._files import read_regular

__all__ = ["Finding", "ScanResult", "scan", "KINDS", "MAX_SOURCE_BYTES"]

# A source file larger than this is skipped (named, with the reason), not
# read: hand-written modules stay far below it; what is past it is generated
# data or a file that never ends.
MAX_SOURCE_BYTES = 16 * 1024 * 1024

KINDS = ("purpose", "produces", "transform", "category", "label")
_CANONICAL = {
    "purpose": "purpose",
    "produces": "produces",
    "transform": "transform",
    "Category": "category",
    "label": "label",
    # The web integrations declare a route's purpose with their own decorator.
    "route_purpose": "purpose",
}
_MODULES = (
    "purposeguard",
    "purposeguard.integrations.asgi",
    "purposeguard.integrations.wsgi",
    "purposeguard.integrations._server",
)
# Folders that hold installed packages, never the team's own code: skipped,
# and named in ScanResult.skipped so nothing disappears unsaid. A folder
# called build, dist, env or venv is scanned like any other unless it is a
# virtualenv (it has a pyvenv.cfg): it may well be the team's own package.
_INSTALLED = {"site-packages": "installed packages", "node_modules": "JavaScript packages"}


@dataclass(frozen=True)
class Finding:
    """One use of the purposeguard API in the scanned code.

    ``keys`` are the literal keys (purpose, categories, or the transform id);
    ``dynamic`` says some argument was not a literal and could not be read.
    ``function`` is the module-qualified name of the enclosing function or
    class, or the module for module-level code.
    """

    kind: str
    path: str
    line: int
    function: str
    keys: tuple[str, ...]
    form: str  # "decorator", "with", "call"
    dynamic: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": self.path,
            "line": self.line,
            "function": self.function,
            "keys": list(self.keys),
            "form": self.form,
            "dynamic": self.dynamic,
        }


@dataclass
class ScanResult:
    """Everything one scan found, and the files it could not read."""

    root: str
    files: int = 0
    findings: list[Finding] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    # function -> names used in its parameters' annotations (to find classes
    # whose fields carry Category annotations)
    annotations: dict[str, set[str]] = field(default_factory=dict)
    # function -> names its body refers to (a model it queries: select(Post),
    # Note.objects.filter(...), a Core table)
    references: dict[str, set[str]] = field(default_factory=dict)
    # function -> names of the functions it calls (by their own name, not resolved)
    calls: dict[str, set[str]] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def purposes(self) -> dict[str, list[Finding]]:
        """Declared purpose -> the findings that declare it."""
        out: dict[str, list[Finding]] = {}
        for finding in self.of_kind("purpose"):
            for key in finding.keys:
                out.setdefault(key, []).append(finding)
        return out

    def class_categories(self) -> dict[str, set[str]]:
        """Short class name -> categories its annotated fields carry."""
        out: dict[str, set[str]] = {}
        for finding in self.of_kind("category"):
            out.setdefault(finding.function.rpartition(".")[2], set()).update(finding.keys)
        return out

    def flows(self) -> dict[tuple[str, str], list[str]]:
        """Declared (category, purpose) pairs -> the functions declaring them.

        A function handles a category when it ``produces`` it, ``label``s
        with it, takes a parameter whose type (a class in the scanned tree)
        has a field annotated with it, refers in its body to such a class or
        to a table whose columns declare it (a query), or calls a helper
        without a purpose that does. It declares a flow when it serves a
        purpose (``@purpose`` or a ``with purpose`` inside it) and handles a
        category, and so does every function with a purpose it calls: data a
        route loads reaches the features it calls (``pick_ad(note.body)``).
        Calls are matched by name, one level deep, so this over-approximates.
        """
        classes = self.class_categories()
        purposes: dict[str, set[str]] = {}
        own: dict[str, set[str]] = {}
        for finding in self.findings:
            if finding.kind == "purpose":
                purposes.setdefault(finding.function, set()).update(finding.keys)
            elif finding.kind in ("produces", "label", "category"):
                own.setdefault(finding.function, set()).update(finding.keys)
        for table in (self.annotations, self.references):
            for function, names in table.items():
                for name in names:
                    found = classes.get(name)
                    if found:
                        own.setdefault(function, set()).update(found)
        functions = set(purposes) | set(own) | set(self.calls)
        by_name: dict[str, list[str]] = {}
        for function in functions:
            by_name.setdefault(function.rpartition(".")[2], []).append(function)

        def handled(function: str) -> set[str]:
            found = set(own.get(function, ()))
            for name in self.calls.get(function, ()):
                for helper in by_name.get(name, ()):
                    if helper != function and helper not in purposes:
                        found |= own.get(helper, set())
            return found

        flows: dict[tuple[str, str], list[str]] = {}

        def add(categories: set[str], keys: set[str], function: str) -> None:
            for purpose in keys:
                for category in categories:
                    names = flows.setdefault((category, purpose), [])
                    if function not in names:
                        names.append(function)

        for function in sorted(functions):
            categories = handled(function)
            if not categories:
                continue
            add(categories, purposes.get(function, set()), function)
            for name in self.calls.get(function, ()):
                for callee in by_name.get(name, ()):
                    if callee != function:
                        add(categories, purposes.get(callee, set()), callee)
        return {key: sorted(names) for key, names in flows.items()}

    def to_dict(self) -> dict[str, object]:
        return {
            "root": self.root,
            "files": self.files,
            "findings": [f.to_dict() for f in self.findings],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }


def _module_name(relative: Path) -> str:
    parts = list(relative.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or relative.stem


# The ORMs whose column declarations (``info={"purposeguard": ...}``) the scan reads.
_ORM_MODULES = ("sqlalchemy", "sqlmodel")
_INFO_KEY = "purposeguard"
# How far one constant may refer to another (EMAIL = CONTENT = "...").
_DEPTH = 16


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


class _Definitions:
    """Module-level names of every scanned module (constants, ``Annotated``
    aliases, class attributes) and what each module imports, so a key
    written as a name resolves to the literal it stands for. Nothing is
    evaluated: only literals, and names bound to literals, resolve."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, ast.expr]] = {}
        # module -> local name -> (source module, name in it, or None for the module itself)
        self.imported: dict[str, dict[str, tuple[str, str | None]]] = {}
        self.visitors: dict[str, _Visitor] = {}

    def add(self, module: str, tree: ast.Module, is_package: bool, visitor: _Visitor) -> None:
        values: dict[str, ast.expr] = {}
        for node in tree.body:
            self._bind(node, values, "")
        imported: dict[str, tuple[str, str | None]] = {}
        package = module if is_package else module.rpartition(".")[0]
        for found in ast.walk(tree):
            if isinstance(found, ast.ImportFrom):
                source = found.module or ""
                if found.level:
                    base = package.split(".") if package else []
                    base = base[: len(base) - (found.level - 1)] if found.level > 1 else base
                    source = ".".join([*base, *([source] if source else [])])
                for alias in found.names:
                    imported[alias.asname or alias.name] = (source, alias.name)
            elif isinstance(found, ast.Import):
                for alias in found.names:
                    if alias.asname:
                        imported[alias.asname] = (alias.name, None)
                    else:
                        head = alias.name.partition(".")[0]
                        imported[head] = (head, None)
        self.values[module] = values
        self.imported[module] = imported
        self.visitors[module] = visitor

    def _bind(self, node: ast.stmt, values: dict[str, ast.expr], prefix: str) -> None:
        if isinstance(node, ast.Assign) and node.value is not None:
            for target in node.targets:
                if isinstance(target, ast.Name):
                    values[prefix + target.id] = node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
            values[prefix + node.target.id] = node.value
        elif isinstance(node, ast.ClassDef) and not prefix:
            for statement in node.body:
                self._bind(statement, values, node.name + ".")

    def definition(self, module: str, node: ast.expr, depth: int = 0) -> tuple[str, ast.expr] | None:
        """The (module, expression) a name or dotted name is bound to, if known."""
        dotted = _dotted(node)
        if dotted is None or depth > _DEPTH:
            return None
        return self._lookup(module, dotted, depth)

    def _lookup(self, module: str, dotted: str, depth: int) -> tuple[str, ast.expr] | None:
        if depth > _DEPTH:
            return None
        values = self.values.get(module)
        if values is None:
            return None
        if dotted in values:
            return module, values[dotted]
        head, _, rest = dotted.partition(".")
        source = self.imported.get(module, {}).get(head)
        if source is None:
            return None
        source_module, name = source
        if name is None:
            # import app.keys as keys; keys.EMAIL (or app.keys.EMAIL)
            parts = rest.split(".") if rest else []
            for cut in range(len(parts), 0, -1):
                candidate = ".".join([source_module, *parts[: cut - 1]]) if cut > 1 else source_module
                if candidate in self.values:
                    return self._lookup(candidate, ".".join(parts[cut - 1 :]), depth + 1)
            return None
        as_module = f"{source_module}.{name}" if source_module else name
        if rest and as_module in self.values:
            return self._lookup(as_module, rest, depth + 1)  # from app import keys; keys.EMAIL
        return self._lookup(source_module, name + ("." + rest if rest else ""), depth + 1)

    def keys(self, module: str, node: ast.expr, depth: int = 0) -> tuple[str, ...] | None:
        """The literal keys an argument stands for, or None when it is not a literal."""
        if depth > _DEPTH:
            return None
        if isinstance(node, ast.Constant):
            return (node.value,) if isinstance(node.value, str) else None
        if isinstance(node, ast.Starred):
            return self.keys(module, node.value, depth + 1)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            out: list[str] = []
            for element in node.elts:
                found = self.keys(module, element, depth + 1)
                if found is None:
                    return None
                out.extend(found)
            return tuple(out)
        bound = self.definition(module, node, depth)
        if bound is None:
            return None
        return self.keys(bound[0], bound[1], depth + 1)

    def categories_in(self, module: str, node: ast.expr, depth: int = 0, *, direct: bool = True) -> set[str]:
        """Categories an annotation declares through ``Category`` calls (when
        ``direct``) and through the aliases it names (``Mapped[Body]``)."""
        found: set[str] = set()
        if depth > _DEPTH:
            return found
        visitor = self.visitors.get(module)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Call):
                if direct and visitor is not None and visitor._resolve(sub.func) == "category":
                    for argument in sub.args:
                        found.update(self.keys(module, argument) or ())
            elif isinstance(sub, (ast.Name, ast.Attribute)):
                bound = self.definition(module, sub, depth)
                if bound is not None and isinstance(bound[1], (ast.Subscript, ast.Name, ast.Attribute)):
                    found |= self.categories_in(bound[0], bound[1], depth + 1)
        return found


class _Visitor(ast.NodeVisitor):
    def __init__(
        self, result: ScanResult, path: str, module: str, definitions: _Definitions | None = None
    ) -> None:
        self.result = result
        self.path = path
        self.module = module
        self.scope: list[str] = [module]
        self.module_aliases: set[str] = set()
        self.names: dict[str, str] = {}
        self.handled: set[int] = set()
        self.definitions = definitions or _Definitions()
        self.orm = False
        # The name a module-level assignment binds (messages = Table(...)):
        # the owner of the column declarations inside it.
        self.target: str | None = None

    # -- imports ----------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name in _MODULES:
                self.module_aliases.add(alias.asname or alias.name)
            if alias.name.partition(".")[0] in _ORM_MODULES:
                self.orm = True

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and (node.module or "").partition(".")[0] in _ORM_MODULES:
            self.orm = True
        if node.level == 0 and node.module in _MODULES:
            for alias in node.names:
                if alias.name in _CANONICAL:
                    self.names[alias.asname or alias.name] = alias.name

    def _resolve(self, node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            name = self.names.get(node.id)
            return _CANONICAL[name] if name else None
        if (
            isinstance(node, ast.Attribute)
            and node.attr in _CANONICAL
            and isinstance(node.value, ast.Name)
            and node.value.id in self.module_aliases
        ):
            return _CANONICAL[node.attr]
        return None

    # -- scopes -----------------------------------------------------------------

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            if isinstance(decorator, ast.Call):
                kind = self._resolve(decorator.func)
                if kind is not None and kind != "category":
                    self._record(decorator, kind, "decorator", owner=node.name)
        self.scope.append(node.name)
        qualname = ".".join(self.scope)
        names: set[str] = set()
        arguments = node.args
        for arg in (
            arguments.posonlyargs
            + arguments.args
            + arguments.kwonlyargs
            + [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
        ):
            if arg.annotation is not None:
                names.update(_annotation_names(arg.annotation))
        if names:
            self.result.annotations.setdefault(qualname, set()).update(names)
        referenced = {
            sub.id if isinstance(sub, ast.Name) else sub.attr
            for sub in _own_nodes(node.body)
            if isinstance(sub, ast.Name)
            or (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name))
        }
        if referenced:
            self.result.references.setdefault(qualname, set()).update(referenced)
        called = {
            sub.func.id if isinstance(sub.func, ast.Name) else sub.func.attr
            for sub in _own_nodes(node.body)
            if isinstance(sub, ast.Call)
            and isinstance(sub.func, (ast.Name, ast.Attribute))
            and self._resolve(sub.func) is None
        }
        if called:
            self.result.calls.setdefault(qualname, set()).update(called)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        self.scope.append(node.name)
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign):
                # A field typed with an alias (body: Mapped[Body]) declares what the alias does.
                through_alias = self.definitions.categories_in(
                    self.module, statement.annotation, direct=False
                )
                if through_alias:
                    self.result.findings.append(
                        Finding(
                            "category",
                            self.path,
                            statement.lineno,
                            ".".join(self.scope),
                            tuple(sorted(through_alias)),
                            "annotation",
                        )
                    )
            self.visit(statement)
        self.scope.pop()

    def visit_Assign(self, node: ast.Assign) -> None:
        if len(self.scope) == 1 and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.target = node.targets[0].id
            try:
                self.generic_visit(node)
            finally:
                self.target = None
        else:
            self.generic_visit(node)

    def _with(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            expr = item.context_expr
            if isinstance(expr, ast.Call) and self._resolve(expr.func) == "purpose":
                self._record(expr, "purpose", "with")
        self.generic_visit(node)

    visit_With = _with
    visit_AsyncWith = _with

    def visit_Call(self, node: ast.Call) -> None:
        if id(node) not in self.handled:
            kind = self._resolve(node.func)
            if kind is not None:
                self._record(node, kind, "call")
        if self.orm:
            for info in _info_dicts(node):
                self._record_info(info)
        self.generic_visit(node)

    def _record_info(self, info: ast.Dict) -> None:
        for key, value in zip(info.keys, info.values, strict=True):
            if isinstance(key, ast.Constant) and key.value == _INFO_KEY:
                keys = self.definitions.keys(self.module, value)
                owner = self.scope + ([self.target] if self.target and len(self.scope) == 1 else [])
                self.result.findings.append(
                    Finding(
                        "category", self.path, value.lineno, ".".join(owner), keys or (), "info", keys is None
                    )
                )

    # -- recording ----------------------------------------------------------------

    def _record(self, call: ast.Call, kind: str, form: str, owner: str | None = None) -> None:
        self.handled.add(id(call))
        if kind == "label":
            # The first argument is the value itself: never read it.
            arguments = list(call.args[1:])
            arguments += [k.value for k in call.keywords if k.arg == "categories"]
        elif kind in ("purpose", "transform"):
            arguments = list(call.args[:1]) + [
                k.value for k in call.keywords if k.arg in ("key", "transform_id")
            ]
        else:
            arguments = list(call.args)
        keys: list[str] = []
        dynamic = False
        for argument in arguments:
            found = self.definitions.keys(self.module, argument)
            if found is None:
                dynamic = True
            else:
                keys.extend(found)
        if kind == "label" and any(k.arg is None for k in call.keywords):
            dynamic = True
        function = ".".join(self.scope + ([owner] if owner else []))
        self.result.findings.append(
            Finding(kind, self.path, call.lineno, function, tuple(keys), form, dynamic)
        )


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """The nodes of a function body, without those of the functions and
    classes defined inside it (they are functions of their own)."""
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    pending: list[ast.AST] = [statement for statement in body if not isinstance(statement, nested)]
    while pending:
        node = pending.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, nested):
                pending.append(child)


def _info_dicts(call: ast.Call) -> Iterator[ast.Dict]:
    """The column ``info`` dicts of a call: ``info={...}`` and, for SQLModel,
    ``sa_column_kwargs={"info": {...}}``."""
    for keyword in call.keywords:
        if keyword.arg == "info" and isinstance(keyword.value, ast.Dict):
            yield keyword.value
        elif isinstance(keyword.value, ast.Dict):
            for key, value in zip(keyword.value.keys, keyword.value.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "info" and isinstance(value, ast.Dict):
                    yield value


def _annotation_names(node: ast.expr) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            yield sub.id
        elif isinstance(sub, ast.Attribute):
            yield sub.attr
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            # A string (forward) annotation: "Message" or "list[Message]".
            try:
                parsed = ast.parse(sub.value, mode="eval")
            except SyntaxError:
                continue
            yield from _annotation_names(parsed.body)


def _skip_reason(directory: Path, name: str) -> str | None:
    """Why a folder is not scanned, or None to scan it."""
    if (directory / name / "pyvenv.cfg").is_file():
        return "a virtualenv (it has a pyvenv.cfg), not the project's code"
    if name in _INSTALLED:
        return f"{_INSTALLED[name]}, not the project's code"
    return None


def _python_files(root: Path, skipped: list[tuple[str, str]]) -> Iterator[Path]:
    if root.is_file():
        yield root
        return

    def on_error(error: OSError) -> None:
        skipped.append((str(error.filename or root), error.strerror or str(error)))

    for directory, subdirs, files in os.walk(root, onerror=on_error):
        here = Path(directory)
        kept = []
        for name in sorted(subdirs):
            # Hidden folders (.git, .venv, .tox) and bytecode caches go unsaid:
            # they never hold the project's own source.
            if name.startswith(".") or name == "__pycache__" or name.endswith(".egg-info"):
                continue
            reason = _skip_reason(here, name)
            if reason is not None:
                skipped.append(((here / name).relative_to(root).as_posix() + "/", reason))
                continue
            kept.append(name)
        subdirs[:] = kept
        for name in sorted(files):
            if name.endswith(".py"):
                yield here / name


def scan(source: str | os.PathLike[str]) -> ScanResult:
    """Scan a directory (or one ``.py`` file) without importing anything.

    Raises ``FileNotFoundError`` or ``PermissionError`` when ``source``
    itself cannot be read; files inside it that cannot be read or parsed
    are listed in :attr:`ScanResult.skipped` instead.
    """
    root = Path(source)
    if not root.exists():
        raise FileNotFoundError(2, "no such file or directory", str(root))
    if not os.access(root, os.R_OK) or (root.is_dir() and not os.access(root, os.X_OK)):
        raise PermissionError(13, "permission denied", str(root))
    base = root.parent if root.is_file() else root
    result = ScanResult(root=str(root))
    definitions = _Definitions()
    parsed: list[tuple[_Visitor, ast.Module]] = []
    for path in _python_files(root, result.skipped):
        relative = path.relative_to(base)
        shown = relative.as_posix()
        try:
            # Never a FIFO (it would block), a device (/dev/zero never ends)
            # or a file past the limit: each is named as skipped instead.
            text = read_regular(path, MAX_SOURCE_BYTES)
        except OSError as error:
            result.skipped.append((shown, error.strerror or str(error)))
            continue
        try:
            tree = ast.parse(text, filename=shown)
        except SyntaxError as error:
            where = f"line {error.lineno}: " if error.lineno else ""
            result.skipped.append((shown, f"does not parse ({where}{error.msg})"))
            continue
        except (ValueError, RecursionError, MemoryError) as error:
            result.skipped.append((shown, f"does not parse ({type(error).__name__})"))
            continue
        result.files += 1
        module = _module_name(relative)
        visitor = _Visitor(result, shown, module, definitions)
        # Imports first, wherever they are, so a decorator above a late
        # import still resolves.
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                visitor.visit(node)
        definitions.add(module, tree, relative.name == "__init__.py", visitor)
        parsed.append((visitor, tree))
    # Every module's names are known before any is read: a key may be a
    # constant another module defines.
    for visitor, tree in parsed:
        visitor.visit(tree)
    return result
