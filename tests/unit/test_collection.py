"""Fast checks of the model collection: recipes and notebooks are well formed.

Running them is the slow suite's job (tests/statistical/test_recipes.py); this only
reads the files.
"""

import ast
import json
from pathlib import Path

import pytest

import bayesmix as bm

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p for p in (ROOT / "models").glob("*.py") if not p.name.startswith("_"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_collection_is_there():
    assert len(RECIPES) >= 4
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_recipe_is_documented_and_uses_the_public_api(path):
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    doc = ast.get_docstring(tree)
    assert doc, f"{path.name} has no module docstring"
    for heading in ("Model", "Data", "What it shows", "--smoke"):
        assert heading in doc, f"{path.name}: the docstring should say {heading!r}"
    assert "--out" in source
    assert path.name in (ROOT / "models" / "README.md").read_text(encoding="utf-8")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bayesmix"):
            # only public modules: no bayesmix._private imports
            assert not any(part.startswith("_") for part in node.module.split(".")), node.module
        is_bm = isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "bm"
        if is_bm:
            assert node.attr in bm.__all__, f"{path.name}: bm.{node.attr} is not public"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stored_without_outputs_and_has_a_smoke_mode(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert code
    for cell in code:
        assert cell.get("outputs") == [], f"{path.name}: a code cell has stored outputs"
        assert cell.get("execution_count") is None
    source = "\n".join("".join(cell["source"]) for cell in code)
    assert 'os.environ.get("BAYESMIX_SMOKE")' in source
    for line in source.splitlines():
        if line.startswith(("import bayesmix", "from bayesmix")):
            assert "bayesmix._" not in line, line
