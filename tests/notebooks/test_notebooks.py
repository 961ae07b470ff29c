"""Every notebook in notebooks/ runs top to bottom without error, in a fresh kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ has no notebooks"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = " ".join(o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {}))
    expected = {
        "quickstart.ipynb": ["pilothouse Model"],
        "drift.ipynb": ["Profile of 50,000 rows", "ph-drift-", "dataset drift", "enterprise"],
        "registry.ipynb": ["models:/churn/2", "Lineage of models:/churn/2", "2 versions"],
    }
    for fragment in expected.get(path.name, []):
        assert fragment in html, f"{path.name}: no rich output showing {fragment!r}"
