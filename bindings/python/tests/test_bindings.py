"""The ctypes declarations agree with include/wsbroker.h and the loaded library."""

from __future__ import annotations

import ast
import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Set

import pytest

import wsbroker
from wsbroker import _ffi, _native

REPO = Path(__file__).resolve().parents[3]
HEADER = REPO / "include" / "wsbroker.h"
GEN = REPO / "scripts" / "gen_bindings.py"


def test_generated_module_is_fresh() -> None:
    r = subprocess.run([sys.executable, str(GEN), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def header_functions() -> Set[str]:
    """Every function the header declares; a parse independent of the generator's: each `name(`
    at the start of a declaration."""
    text = re.sub(r"/\*.*?\*/", "", HEADER.read_text(), flags=re.S)
    return set(re.findall(r"^[A-Za-z_][\w\s\*]*?\b(wsb_\w+)\(", text, re.M))


def test_every_header_function_is_declared() -> None:
    declared = header_functions()
    assert declared == set(_ffi.FUNCTIONS)
    lib = _native.lib()
    for name, (restype, argtypes, params) in _ffi.FUNCTIONS.items():
        fn = getattr(lib, name)
        assert fn.restype is restype, name
        assert list(fn.argtypes) == argtypes, name
        assert len(argtypes) == len(params), name


def wrapped_functions() -> Set[str]:
    """The wsb_ functions the hand-written modules use: attribute accesses (``lib().wsb_x``) and
    names held as strings (``_free_name = "wsb_x_free"``, setter tables), docstrings excluded."""
    used: Set[str] = set()
    for path in Path(wsbroker.__file__).parent.glob("*.py"):
        if path.name == "_ffi.py":  # generated: it declares every function, wrapped or not
            continue
        tree = ast.parse(path.read_text(), str(path))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        }  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("wsb_"):
                used.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if re.fullmatch(r"wsb_\w+", node.value):
                    used.add(node.value)
    return used


def test_every_header_function_has_a_wrapper() -> None:
    """A C function added to the header without a Python wrapper fails here."""
    missing = sorted(header_functions() - wrapped_functions())
    assert missing == [], "C functions no hand-written module of the binding calls: " + ", ".join(missing)


def test_enums_match_header() -> None:
    text = HEADER.read_text()
    for member in wsbroker.Result:
        assert re.search(rf"\bWSB_RESULT_{member.name} = {member.value},", text), member
    for member in wsbroker.EventType:
        assert re.search(rf"\bWSB_EVENT_TYPE_{member.name} = {member.value},", text), member
    assert len(re.findall(r"\bWSB_RESULT_\w+ = \d+,", text)) == len(wsbroker.Result)


def test_client_event_types_match_the_library() -> None:
    text = HEADER.read_text()
    found = {k: int(v) for k, v in re.findall(r"\bWSB_CLIENT_EVENT_TYPE_(\w+) = (\d+),", text)}
    assert found == {m.name: m.value for m in wsbroker.ClientEventType}


def _ctypes_structs() -> list:
    """Every struct of _ffi with fields (the opaque ones have none)."""
    return [
        v for v in vars(_ffi).values()
        if isinstance(v, type) and issubclass(v, ctypes.Structure) and getattr(v, "_fields_", None)
    ]


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_struct_layout_matches_c_compiler(tmp_path: Path) -> None:
    structs = _ctypes_structs()
    # Every struct with a body in the header is checked, and nothing else.
    in_header = set(re.findall(r"^typedef struct (\w+) \{", HEADER.read_text(), re.M))
    assert {s.__name__ for s in structs} == in_header
    assert len(in_header) >= 7
    checks = []
    expected = []
    for struct in structs:
        name = struct.__name__
        checks.append(f'printf("{name} size %zu align %zu\\n", sizeof(struct {name}), _Alignof(struct {name}));')
        expected.append(f"{name} size {ctypes.sizeof(struct)} align {ctypes.alignment(struct)}")
        for field, _ in struct._fields_:
            checks.append(f'printf("{name}.{field} %zu %zu\\n", offsetof(struct {name}, {field}), sizeof(((struct {name} *)0)->{field}));')
            expected.append(f"{name}.{field} {getattr(struct, field).offset} {getattr(struct, field).size}")
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"wsbroker.h\"\nint main(void) {\n"
        + "\n".join(checks)
        + "\nreturn 0;\n}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-std=c11", "-I", str(REPO / "include"), str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:-1] == expected


def test_library_version_matches_header() -> None:
    assert wsbroker.version() == _ffi.HEADER_VERSION
    text = HEADER.read_text()
    assert f'#define WSB_VERSION_STRING "{_ffi.HEADER_VERSION}"' in text
    assert wsbroker.__version__ == _ffi.HEADER_VERSION
    pyproject = (REPO / "bindings" / "python" / "pyproject.toml").read_text()
    assert f'version = "{_ffi.HEADER_VERSION}"' in pyproject


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
@pytest.mark.parametrize("version,number", [("9.9.9", 90909), ("0.1.0", 99)])
def test_mismatched_library_is_refused(tmp_path: Path, version: str, number: int) -> None:
    src = tmp_path / "fake.c"
    src.write_text(
        f'const char *wsb_version(void) {{ return "{version}"; }}\n'
        f"unsigned wsb_version_number(void) {{ return {number}; }}\n"
    )
    so = tmp_path / "libfake.so"
    subprocess.run(["cc", "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    with pytest.raises(wsbroker.LibraryError, match="generated from the 0.1.0"):
        _native.load_library(so)


def test_library_lacking_a_function_is_refused(tmp_path: Path) -> None:
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    src = tmp_path / "partial.c"
    src.write_text(
        f'const char *wsb_version(void) {{ return "{_ffi.HEADER_VERSION}"; }}\n'
        f"unsigned wsb_version_number(void) {{ return {_ffi.HEADER_VERSION_NUMBER}; }}\n"
    )
    so = tmp_path / "libpartial.so"
    subprocess.run(["cc", "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    with pytest.raises(wsbroker.LibraryError, match="lacks a function"):
        _native.load_library(so)


def test_wsbroker_lib_pointing_nowhere_fails_loudly(tmp_path: Path) -> None:
    code = "import wsbroker\ntry:\n    wsbroker.version()\nexcept wsbroker.LibraryError as e:\n    print('LibraryError', e)\n"
    env = {"WSBROKER_LIB": str(tmp_path / "missing.so"), "PYTHONPATH": str(REPO / "bindings" / "python")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.stdout.startswith("LibraryError cannot load"), r.stdout + r.stderr


def test_result_strings_come_from_the_library() -> None:
    assert wsbroker.result_str(wsbroker.Result.OK)
    assert wsbroker.result_str(9999) == "unknown result"
