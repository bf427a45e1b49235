"""Numba's on-disk cache, keyed on the source of every module a kernel can reach.

Kernel modules write ``@njit(nogil=True, ...)`` and ``cfunc(sig, ...)`` from here instead
of ``@numba.njit(cache=True, ...)`` and ``numba.cfunc(sig, cache=True, ...)``. Both
compile with NumPy's floating-point error model unless told otherwise
(:data:`ERROR_MODEL`).

Why
---
Numba's cache checks only the source of the file that defines the cached function (a
hash of its bytes, in numba 0.68). A cached kernel that calls a jitted helper from
*another* module keeps serving the machine code compiled against the old helper after
that helper changes. And numba writes the cache into ``__pycache__`` next to the sources,
so a CI run that only rebuilds the virtual environment can test machine code that the
commit no longer contains.

The choice
----------
Each module's kernels are cached in their own directory,
``<root>/numba/<bayesmix version>-py<python version>-numba<numba version>-<hash>``, where
``<hash>`` is a SHA-256 (first 16 hex digits) of the source, path and bytes, of the
module and of every module of the same top-level package that it imports, transitively:
its *import closure*, found by parsing the ``import`` statements (those inside functions
too; those under ``if TYPE_CHECKING:`` never run and are left out). Any change to a
helper a kernel can reach changes the directory, so the kernel is compiled afresh: the
cache cannot serve stale code, whatever the file timestamps say. Within a directory,
numba's own check (a hash of the defining file) still applies.

``<root>`` is ``$BAYESMIX_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/bayesmix``, else
``~/.cache/bayesmix``: a per-user directory, never next to the sources. If it cannot be
written (a read-only home), a per-user directory under the system temporary directory is
used, and if that fails too the kernels are compiled in every process (no caching); both
are logged at debug level on the ``bayesmix`` logger.

Directories of older sources and versions are left behind; each holds a few megabytes
(the compiled kernels of one module). Deleting ``<root>`` is always safe: the kernels
are compiled again on first use.

Mechanism
---------
Numba picks a cached function's cache directory once, when the decorator runs
(``Dispatcher.enable_caching`` and ``CFunc.enable_caching`` build a ``FunctionCache``,
whose ``_CacheImpl`` asks ``UserProvidedCacheLocator`` first; that locator reads
``numba.config.CACHE_DIR``, the ``NUMBA_CACHE_DIR`` setting, and keeps the path it
computed). So the decorators here set ``numba.config.CACHE_DIR`` only while decorating
(and restore it after, so other libraries' numba caches, PyTensor's, are unaffected). On
numba versions with ``NUMBA_CACHE_LOCATOR_CLASSES`` they also restrict the locators to
that one while decorating, so numba cannot fall back to ``__pycache__``.

The hash covers only modules of the kernel's own top-level package; a change to another
package (numpy, numba itself) is covered by numba's version in the directory name and by
reinstalling, not by the hash. The closure of a module is computed once per process;
the import statements of each source file are parsed once per machine and remembered in
``<root>/imports``, keyed by a hash of the file's bytes (a changed file is parsed again).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import logging
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numba

__all__ = ["cache_dir", "cfunc", "njit"]

_log = logging.getLogger("bayesmix")

# Decorating sets process-wide numba configuration. Numba's compiler lock (re-entrant)
# keeps other threads from compiling, or decorating here, in between; it is the lock
# numba's own compilation takes, so holding it adds no new lock order.
try:
    from numba.core.compiler_lock import global_compiler_lock as _DECORATE_LOCK
except ImportError:  # pragma: no cover - numba moved it
    _DECORATE_LOCK = threading.RLock()

_HASH_LENGTH = 16

# The error model the decorators compile with unless given one. numba's default
# ("python") raises ZeroDivisionError, so it puts a branch before every floating-point
# division, and LLVM does not vectorise a loop with a branch in it: a kernel's loops over
# a block that divide (a vectorised logarithm, weights such as (nu + D) / (nu + q),
# reciprocals of normalisers) ran 2.5-4.5x slower per element. With "numpy", x / 0 gives
# inf or NaN, which the kernels' C entry points report as a non-finite density.
ERROR_MODEL = "numpy"
_ONLY_USER_LOCATOR = "UserProvidedCacheLocator"


def njit(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Return a decorator that compiles like ``numba.njit(**options)``, always cached.

    Parameters
    ----------
    **options
        Options for ``numba.njit`` (``nogil``, ``fastmath``, ``error_model``, ...);
        ``cache`` is not accepted: the kernel is always cached, in :func:`cache_dir`.
        ``error_model`` defaults to :data:`ERROR_MODEL`.

    Returns
    -------
    Callable
        A decorator turning a Python function into a numba dispatcher.

    Raises
    ------
    TypeError
        If ``cache`` is given.
    """
    _reject_cache_option(options)
    options.setdefault("error_model", ERROR_MODEL)

    def decorate(func: Callable[..., Any]) -> Any:
        return _decorate(func, lambda cache: numba.njit(cache=cache, **options))

    return decorate


def cfunc(signature: Any, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Return a decorator that compiles like ``numba.cfunc(signature, **options)``, cached.

    Parameters
    ----------
    signature
        The C signature, as for ``numba.cfunc``.
    **options
        Options for ``numba.cfunc`` (``nogil``, ``fastmath``, ``locals``, ...);
        ``cache`` is not accepted: the callback is always cached, in :func:`cache_dir`.
        ``error_model`` defaults to :data:`ERROR_MODEL`.

    Returns
    -------
    Callable
        A decorator turning a Python function into a compiled numba C callback.

    Raises
    ------
    TypeError
        If ``cache`` is given.
    """
    _reject_cache_option(options)
    options.setdefault("error_model", ERROR_MODEL)

    def decorate(func: Callable[..., Any]) -> Any:
        return _decorate(func, lambda cache: numba.cfunc(signature, cache=cache, **options))

    return decorate


def cache_dir(module_name: str) -> Path:
    """Return the directory the kernels of module ``module_name`` are cached in.

    The directory is not created. It changes whenever the source of the module, or of a
    module of its package that it imports (transitively), changes.

    Parameters
    ----------
    module_name
        The module's dotted name, e.g. ``"bayesmix.families.gaussian._em_kernels"``.

    Returns
    -------
    pathlib.Path
        ``<root>/numba/<bayesmix version>-py<X.Y>-numba<version>-<hash>``.

    Raises
    ------
    ValueError
        If the module's source file cannot be found.
    """
    return _cache_root() / "numba" / _version_tag(_closure_hash(module_name))


# --- the decorators' common part ------------------------------------------------------


def _reject_cache_option(options: dict[str, Any]) -> None:
    if "cache" in options:
        raise TypeError("bayesmix._numba_cache always caches; do not pass `cache`")


def _decorate(func: Callable[..., Any], make: Callable[[bool], Callable[[Any], Any]]) -> Any:
    """Apply ``make(cache)`` to ``func``, caching in the module's directory if possible."""
    directory = _usable_cache_dir(func)
    if directory is None:
        return make(False)(func)
    with _DECORATE_LOCK, _numba_cache_config(directory):
        try:
            return make(True)(func)
        except RuntimeError as error:
            # numba found no usable locator (the directory vanished meanwhile): compile
            # uncached rather than fail, and never in ``__pycache__``.
            if "cannot cache function" not in str(error):
                raise
            _log.debug("numba cannot cache %s in %s: %s", func.__qualname__, directory, error)
    return make(False)(func)


@contextlib.contextmanager
def _numba_cache_config(directory: Path) -> Iterator[None]:
    """Point numba's user cache directory at ``directory`` inside the block only."""
    config = numba.config
    previous_dir = config.CACHE_DIR
    has_locator_setting = hasattr(config, "CACHE_LOCATOR_CLASSES")
    previous_locators = getattr(config, "CACHE_LOCATOR_CLASSES", "")
    config.CACHE_DIR = str(directory)
    if has_locator_setting:
        config.CACHE_LOCATOR_CLASSES = _ONLY_USER_LOCATOR
    try:
        yield
    finally:
        config.CACHE_DIR = previous_dir
        if has_locator_setting:
            config.CACHE_LOCATOR_CLASSES = previous_locators


def _usable_cache_dir(func: Callable[..., Any]) -> Path | None:
    """Return a writable cache directory for ``func``, or None to compile uncached."""
    try:
        source = inspect.getfile(func)
    except TypeError:
        source = ""
    if not os.path.isfile(source):
        _log.debug("not caching %r: its source file %r does not exist", func, source)
        return None
    module_name = getattr(func, "__module__", None) or ""
    try:
        name = _version_tag(_closure_hash(module_name))
    except (ValueError, OSError) as error:
        _log.debug("not caching %r: %s", func, error)
        return None
    directory = _writable_dir(f"numba/{name}")
    if directory is None:
        _log.debug("not caching %r: no writable cache directory", func)
    return directory


def _writable_dir(relative: str) -> Path | None:
    """Return ``<root>/<relative>`` if writable, else the same below :func:`_temp_root`."""
    primary = _cache_root() / relative
    if _writable(primary):
        return primary
    fallback_root = _temp_root()
    if fallback_root is not None:
        fallback = fallback_root / relative
        if _writable(fallback):
            _log.debug("%s is not writable; using %s", primary, fallback)
            return fallback
    _log.debug("%s is not writable, nor a temporary one", primary)
    return None


def _writable(directory: Path) -> bool:
    # numba's own check (``_CacheLocator.ensure_cache_path``): create it, write a file.
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError:
        return False
    return True


def _temp_root() -> Path | None:
    """Return a per-user directory under the system temporary directory, or None.

    Numba's cache files are pickles, so a directory another user can write to would let
    them run code in this process: use it only if this user owns it and no one else can
    write to it.
    """
    getuid = getattr(os, "getuid", None)
    user = str(getuid()) if getuid is not None else os.environ.get("USERNAME", "user")
    root = Path(tempfile.gettempdir()) / f"bayesmix-{user}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        info = root.stat()
    except OSError:
        return None
    if getuid is not None and (
        info.st_uid != getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        return None
    return root


# --- the directory's name ---------------------------------------------------------------


def _cache_root() -> Path:
    explicit = os.environ.get("BAYESMIX_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore a relative path.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "bayesmix"


def _version_tag(source_hash: str) -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"{_bayesmix_version()}-py{python}-numba{numba.__version__}-{source_hash}"


@functools.cache
def _bayesmix_version() -> str:
    try:
        return importlib.metadata.version("bayesmix")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def _closure_hash(module_name: str) -> str:
    """Hash the sources of ``module_name`` and of its package's modules it imports."""
    origin = _module_file(module_name)
    if origin is None:
        raise ValueError(f"cannot find the source file of module {module_name!r}")
    is_package = origin.name == "__init__.py"
    depth = module_name.count(".") + (1 if is_package else 0)
    # The directory on sys.path holding the top-level package (or the top-level module).
    search_dir = origin.parents[depth] if depth < len(origin.parents) else origin.parent
    top = module_name.partition(".")[0]

    digest = hashlib.sha256()
    for relative, source in sorted(_import_closure(module_name, origin, search_dir, top)):
        for part in (relative.encode(), source):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
    return digest.hexdigest()[:_HASH_LENGTH]


def _module_file(module_name: str) -> Path | None:
    module = sys.modules.get(module_name)
    origin = getattr(module, "__file__", None)
    if origin is None and module_name:
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None and spec.has_location else None
    if origin is None or not origin.endswith(".py"):
        return None
    return Path(origin)


def _import_closure(
    module_name: str, origin: Path, search_dir: Path, top: str
) -> list[tuple[str, bytes]]:
    """Return ``(relative path, source)`` of the module and the modules it reaches."""
    found: dict[str, tuple[str, bytes]] = {}
    pending = [(module_name, origin)]
    memo = _writable_dir("imports")  # once per closure, not once per file
    while pending:
        name, path = pending.pop()
        if name in found:
            continue
        source = path.read_bytes()
        found[name] = (path.relative_to(search_dir).as_posix(), source)
        for imported in _imported_names(source, name, path.name == "__init__.py", memo):
            if imported.partition(".")[0] != top or imported in found:
                continue
            imported_path = _resolve(imported, search_dir)
            if imported_path is not None:
                pending.append((imported, imported_path))
    return list(found.values())


def _resolve(module_name: str, search_dir: Path) -> Path | None:
    """Return the source file of ``module_name`` below ``search_dir``, if there is one."""
    base = search_dir.joinpath(*module_name.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(
    source: bytes, module_name: str, is_package: bool, directory: Path | None
) -> set[str]:
    """Return :func:`_parse_imports` of ``source``, remembered in ``directory`` by its hash.

    Parsing the import closure of a kernel module took 0.1-0.15 s in every process
    (``ast.parse`` and a walk of every module it reaches); the names depend only on the
    source bytes, the module's name and whether it is a package, so they are kept in
    ``<root>/imports/<sha256 of those>.json`` and read back in later processes. With
    ``directory`` None (nothing writable) the source is parsed every time.
    """
    key = hashlib.sha256(
        b"\0".join([source, module_name.encode(), b"package" if is_package else b"module"])
    ).hexdigest()
    if directory is not None:
        try:
            return set(json.loads((directory / f"{key}.json").read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            pass  # not there yet (or unreadable): parse, and write it
    names = _parse_imports(source, module_name, is_package)
    if directory is not None:
        partial = directory / f"{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            partial.write_text(json.dumps(sorted(names)), encoding="utf-8")
            os.replace(partial, directory / f"{key}.json")  # atomic: no half-written file
        except OSError as error:
            _log.debug("cannot remember the imports of %s: %s", module_name, error)
            with contextlib.suppress(OSError):
                partial.unlink()
    return names


def _parse_imports(source: bytes, module_name: str, is_package: bool) -> set[str]:
    """Return the modules that ``source`` may import, relative imports resolved.

    ``import a.b.c`` binds ``a``, so it reaches ``a``, ``a.b`` and ``a.b.c`` (only
    ``a.b.c`` with ``as``); ``from a.b import c`` reaches ``a.b`` and, if it is a module,
    ``a.b.c``. Names that are not modules are dropped later, when no file is found.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    package = module_name if is_package else module_name.rpartition(".")[0]
    names: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
                if alias.asname is None:
                    names.update(_parents(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue
                kept = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*kept, node.module] if node.module else kept)
            else:
                base = node.module or ""
            if not base:
                continue
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Walk ``tree``, skipping the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
