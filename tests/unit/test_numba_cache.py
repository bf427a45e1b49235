"""bayesmix._numba_cache: numba's on-disk cache never serves stale machine code.

Numba's own cache (``cache=True``) checks only the source of the file defining a cached
function, so a kernel calling a changed helper from another module keeps its old machine
code. ``test_plain_numba_serves_stale_code`` shows that on the installed numba;
``test_changed_helper_is_recompiled`` runs the same scenario through bayesmix's
decorators and checks that the new helper runs.
"""

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import numba
import pytest

from bayesmix import _numba_cache

# Run in a fresh process: imports the toy kernel and prints its value, whether it was
# loaded from numba's cache, and the helper's own value.
_RUN = textwrap.dedent(
    """
    import json
    from toykern import helper, kernel
    value = kernel.k(1.0)
    hits = sum(kernel.k.stats.cache_hits.values())
    print(json.dumps({"value": value, "hits": hits, "helper": helper.f(1.0)}))
    """
)


def _write_toy_package(src: Path, *, plain_numba: bool) -> None:
    if plain_numba:
        header, decorator = "import numba\n", "@numba.njit(cache=True)"
    else:
        header, decorator = "from bayesmix._numba_cache import njit\n", "@njit()"
    package = src / "toykern"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text(f"{header}\n\n{decorator}\ndef f(x):\n    return x + 1.0\n")
    (package / "kernel.py").write_text(
        f"{header}\nfrom toykern import helper\n\n\n"
        f"{decorator}\ndef k(x):\n    return helper.f(x)\n"
    )


def _change_helper(src: Path) -> None:
    helper = src / "toykern" / "helper.py"
    source = helper.read_text()
    assert "x + 1.0" in source
    # Same length, and the file's timestamp may not even change: numba 0.68 compares
    # content hashes, and Python writes no bytecode here (PYTHONDONTWRITEBYTECODE).
    helper.write_text(source.replace("x + 1.0", "x + 2.0"))


def _run(src: Path, cache_root: Path, numba_cache: Path) -> dict:
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["BAYESMIX_CACHE_DIR"] = str(cache_root)
    env["NUMBA_CACHE_DIR"] = str(numba_cache)
    done = subprocess.run(
        [sys.executable, "-c", _RUN], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _numba_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix in {".nbi", ".nbc"})


def test_changed_helper_is_recompiled(tmp_path):
    src, cache_root, numba_cache = tmp_path / "src", tmp_path / "cache", tmp_path / "numba"
    _write_toy_package(src, plain_numba=False)

    first = _run(src, cache_root, numba_cache)
    assert first == {"value": 2.0, "hits": 0, "helper": 2.0}
    written = _numba_files(cache_root)
    assert any(p.suffix == ".nbi" for p in written)
    assert any(p.suffix == ".nbc" for p in written)
    assert _numba_files(src) == []  # never next to the sources
    assert _numba_files(numba_cache) == []  # nor in NUMBA_CACHE_DIR

    second = _run(src, cache_root, numba_cache)
    assert second == {"value": 2.0, "hits": 1, "helper": 2.0}  # loaded from the cache
    assert _numba_files(cache_root) == written

    _change_helper(src)
    third = _run(src, cache_root, numba_cache)
    assert third == {"value": 3.0, "hits": 0, "helper": 3.0}
    assert _numba_files(src) == []


def test_plain_numba_serves_stale_code(tmp_path):
    # The failure the module exists for, on the installed numba: the same scenario with
    # numba.njit(cache=True) runs the old helper after it changed. If this starts failing,
    # numba has learned to track dependencies and bayesmix._numba_cache could be dropped.
    src, cache_root, numba_cache = tmp_path / "src", tmp_path / "cache", tmp_path / "numba"
    _write_toy_package(src, plain_numba=True)
    assert _run(src, cache_root, numba_cache)["value"] == 2.0
    _change_helper(src)
    stale = _run(src, cache_root, numba_cache)
    assert stale["helper"] == 3.0
    assert stale["hits"] == 1
    assert stale["value"] == 2.0, f"numba {numba.__version__} no longer serves stale code"


# --- in-process tests on toy packages with unique names --------------------------------


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Return a function writing a fresh uniquely named package; its modules are unloaded."""
    src = tmp_path / "src"
    src.mkdir()
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setenv("BAYESMIX_CACHE_DIR", str(tmp_path / "cache"))
    names = []

    def write(modules: dict[str, str]) -> tuple[str, Path]:
        name = f"toy_{uuid.uuid4().hex}"
        names.append(name)
        package = src / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        for module, source in modules.items():
            (package / f"{module}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return name, package

    yield write
    for module in list(sys.modules):
        if module.partition(".")[0] in names:
            del sys.modules[module]
    _numba_cache._closure_hash.cache_clear()


def _fresh_cache_dir(module: str) -> Path:
    _numba_cache._closure_hash.cache_clear()
    return _numba_cache.cache_dir(module)


def test_cache_dir_follows_the_import_closure(toy, tmp_path):
    name, package = toy(
        {
            "kernel": """
                from typing import TYPE_CHECKING
                from . import helper
                if TYPE_CHECKING:
                    from . import typing_only

                def g():
                    from .lazy import h
                    return h
            """,
            "helper": "from .deep import d\n",
            "deep": "d = 1\n",
            "lazy": "h = 1\n",
            "typing_only": "t = 1\n",
            "unrelated": "u = 1\n",
        }
    )
    module = f"{name}.kernel"
    before = _numba_cache.cache_dir(module)
    assert before.parent == tmp_path / "cache" / "numba"
    version, python, numba_version, digest = before.name.split("-")
    assert version == importlib.metadata.version("bayesmix")
    assert python == f"py{sys.version_info.major}.{sys.version_info.minor}"
    assert numba_version == f"numba{numba.__version__}"
    assert len(digest) == 16
    int(digest, 16)
    assert _fresh_cache_dir(module) == before  # deterministic

    # Modules the kernel cannot reach do not matter.
    for unreachable in ("unrelated", "typing_only"):
        (package / f"{unreachable}.py").write_text("changed = 2\n")
        assert _fresh_cache_dir(module) == before, unreachable

    # Every module it imports, directly, transitively, or inside a function, does.
    seen = {before}
    for reachable in ("helper", "deep", "lazy", "kernel"):
        path = package / f"{reachable}.py"
        path.write_text(path.read_text() + "\nchanged = 2\n")
        after = _fresh_cache_dir(module)
        assert after not in seen, reachable
        seen.add(after)


def test_cache_dir_of_unknown_module_raises():
    with pytest.raises(ValueError, match="source file"):
        _fresh_cache_dir(f"toy_{uuid.uuid4().hex}.missing")


def test_cache_option_is_rejected():
    with pytest.raises(TypeError, match="cache"):
        _numba_cache.njit(cache=False)
    with pytest.raises(TypeError, match="cache"):
        _numba_cache.cfunc("float64(float64)", cache=True)


_KERNEL_MODULE = """
    from bayesmix._numba_cache import njit

    @njit(nogil=True)
    def k(x):
        return 2.0 * x
"""


_DIVIDING_MODULE = """
    from bayesmix._numba_cache import cfunc, njit

    @njit(nogil=True)
    def ratio(x, y):
        return x / y

    @njit(error_model="python")
    def strict_ratio(x, y):
        return x / y

    callback = cfunc("float64(float64, float64)")(lambda x, y: x / y)
"""


def test_kernels_compile_with_numpys_error_model_unless_told(toy):
    # A division by zero gives inf / NaN (no ZeroDivisionError branch before each
    # division, which keeps loops from vectorising); a kernel can still ask for Python's.
    name, _ = toy({"kern": _DIVIDING_MODULE})
    kern = importlib.import_module(f"{name}.kern")
    assert kern.ratio(1.0, 0.0) == float("inf")
    assert kern.ratio(2.0, 4.0) == 0.5
    assert kern.callback.ctypes(-1.0, 0.0) == float("-inf")
    with pytest.raises(ZeroDivisionError):
        kern.strict_ratio(1.0, 0.0)
    assert _numba_cache.ERROR_MODEL == "numpy"


def test_unwritable_root_falls_back_to_a_temporary_directory(toy, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("BAYESMIX_CACHE_DIR", str(blocker / "cache"))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    name, package = toy({"kern": _KERNEL_MODULE})
    kern = importlib.import_module(f"{name}.kern")
    assert kern.k(2.0) == 4.0
    assert _numba_files(temp)  # cached in the temporary fallback
    assert _numba_files(package) == []


def test_no_writable_directory_compiles_uncached(toy, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("BAYESMIX_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(blocker / "tmp"))

    name, _ = toy({"kern": _KERNEL_MODULE})
    with caplog.at_level("DEBUG", logger="bayesmix"):
        kern = importlib.import_module(f"{name}.kern")
    assert kern.k(2.0) == 4.0
    assert "not caching" in caplog.text
    assert _numba_files(tmp_path) == []


def test_numba_config_is_restored(toy, tmp_path, monkeypatch):
    monkeypatch.setattr(numba.config, "CACHE_DIR", "/elsewhere/numba-cache")
    monkeypatch.setattr(numba.config, "CACHE_LOCATOR_CLASSES", "", raising=False)
    name, _ = toy(
        {
            "callbacks": """
                def good(x):
                    return x + 1.0

                def bad(x):
                    return x.no_such_attribute
            """
        }
    )
    callbacks = importlib.import_module(f"{name}.callbacks")

    compiled = _numba_cache.cfunc("float64(float64)", nogil=True)(callbacks.good)
    assert compiled.ctypes(1.0) == 2.0
    assert numba.config.CACHE_DIR == "/elsewhere/numba-cache"
    assert numba.config.CACHE_LOCATOR_CLASSES == ""
    assert _numba_files(tmp_path / "cache")

    with pytest.raises(numba.core.errors.TypingError):
        _numba_cache.cfunc("float64(float64)")(callbacks.bad)
    assert numba.config.CACHE_DIR == "/elsewhere/numba-cache"
    assert numba.config.CACHE_LOCATOR_CLASSES == ""


def test_imports_are_parsed_once_per_source(toy, tmp_path, monkeypatch):
    name, package = toy({"kernel": "from . import helper\n", "helper": "h = 1\n"})
    module = f"{name}.kernel"
    first = _fresh_cache_dir(module)
    memo = tmp_path / "cache" / "imports"
    files = sorted(memo.glob("*.json"))
    assert len(files) == 3  # the package's __init__, kernel and helper
    assert sorted(json.loads(files[0].read_text())) == json.loads(files[0].read_text())

    def refuse(*args):
        raise AssertionError("parsed a source whose imports are remembered")

    parse = _numba_cache._parse_imports
    monkeypatch.setattr(_numba_cache, "_parse_imports", refuse)
    assert _fresh_cache_dir(module) == first  # served from the memo, same closure

    # A changed file has a new key: it is parsed (here: refused), never served stale.
    (package / "helper.py").write_text("from . import extra\n")
    (package / "extra.py").write_text("e = 1\n")
    with pytest.raises(AssertionError, match="parsed a source"):
        _fresh_cache_dir(module)
    monkeypatch.setattr(_numba_cache, "_parse_imports", parse)
    changed = _fresh_cache_dir(module)
    assert changed != first

    # The new helper's imports were parsed: extra.py is in the closure now.
    (package / "extra.py").write_text("e = 2\n")
    assert _fresh_cache_dir(module) != changed


def test_unreadable_import_memo_is_parsed_again(toy, tmp_path):
    name, _ = toy({"kernel": "from . import helper\n", "helper": "h = 1\n"})
    module = f"{name}.kernel"
    first = _fresh_cache_dir(module)
    for path in (tmp_path / "cache" / "imports").glob("*.json"):
        path.write_text("{not json")
    assert _fresh_cache_dir(module) == first
    for path in (tmp_path / "cache" / "imports").glob("*.json"):
        json.loads(path.read_text())  # rewritten whole
