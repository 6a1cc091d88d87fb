"""The project's shape: the product card's top level, the core/explorer split, and the Streamlit internals the
explorer relies on (so that a Streamlit upgrade that moves them fails here, not silently in production)."""

import ast
from pathlib import Path

from conftest import REPO

APP_ONLY = ("streamlit", "streamlit_drawable_canvas", "plotly", "pandas", "capsnet.explorer")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_top_level_is_the_product_cards():
    tracked = {path.name for path in REPO.iterdir() if not path.name.startswith(".")}
    card = {"app.py", "pages", "capsnet", "assets", "tests", "requirements.txt", "README.md", "docs", "pyproject.toml",
            "requirements-dev.txt"}
    assert tracked - {"data", "runs", "result", "__pycache__"} <= card


def test_the_core_never_imports_the_explorer_side():
    core = [path for path in (REPO / "capsnet").rglob("*.py") if "explorer" not in path.relative_to(REPO).parts]
    assert len(core) > 15
    for path in core:
        offending = {name for name in imported_modules(path)
                     if any(name == banned or name.startswith(banned + ".") for banned in APP_ONLY)}
        assert not offending, f"{path.relative_to(REPO)} imports {sorted(offending)}"


def test_pages_are_thin_and_the_app_routes_through_navigation():
    from capsnet.explorer.navigation import PAGES

    assert sorted(PAGES.values()) == sorted(f"pages/{p.name}" for p in (REPO / "pages").glob("*.py"))
    for page in (REPO / "pages").glob("*.py"):
        imports = imported_modules(page)
        assert not {"tensorflow", "keras", "plotly.graph_objects"} & imports, page.name  # model math lives elsewhere
        assert "enter_page(" in page.read_text(), f"{page.name} must start with navigation.enter_page"


def test_streamlit_still_has_what_the_explorer_patches():
    """runtime.keep_keras_session swaps Streamlit's after-run cleanup. (navigation.enter_page's reliance on page
    hashes that come from URL paths in both page modes is checked by the browser's deep-link test.)"""
    from streamlit.runtime.scriptrunner import script_runner

    from capsnet.explorer import runtime

    assert callable(script_runner._clean_problem_modules)
    original = script_runner._clean_problem_modules
    try:
        assert runtime.keep_keras_session() and runtime.keras_session_kept()
    finally:
        script_runner._clean_problem_modules = original


def test_app_start_up_installs_the_keras_session_patch(monkeypatch, tmp_path, random_model):
    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.testing.v1 import AppTest

    from capsnet.explorer import runtime

    monkeypatch.setenv("CAPSNET_WEIGHTS", str(random_model))
    monkeypatch.setenv("CAPSNET_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(script_runner, "_clean_problem_modules", lambda: None)  # as if Streamlit's own were there
    assert not runtime.keras_session_kept()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert runtime.keras_session_kept()


def capsnet_module_graph() -> dict[str, set[str]]:
    """capsnet's modules and the capsnet modules each imports, anywhere in the file (a deferred import inside a
    function ties two modules as much as one at the top)."""
    files = {".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
             for path in (REPO / "capsnet").rglob("*.py")}
    return {name: {imported for imported in imported_modules(path) if imported in files and imported != name}
            for name, path in files.items()}


def test_no_import_cycle_inside_capsnet():
    graph = capsnet_module_graph()
    assert {"capsnet.model", "capsnet.baseline", "capsnet.train"} <= set(graph)
    visiting, done = [], set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, " -> ".join([*visiting[visiting.index(module):], module])
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
