"""Fails when include/wsbroker.h declares a function that bindings/cpp/wsbroker.hpp never uses,
so a C export added without its C++ wrapper does not go unnoticed.

usage: api_coverage.py   (from the repository root; prints the missing functions, exits 1)
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def code(path: Path) -> str:
    """The file without its comments (a name only mentioned in one is not a use)."""
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", path.read_text(), flags=re.S)


def main() -> int:
    # Each `wsb_name(` that starts a declaration.
    declared = set(re.findall(r"^[A-Za-z_][\w\s\*]*?\b(wsb_\w+)\(", code(ROOT / "include" / "wsbroker.h"), re.M))
    used = set(re.findall(r"\bwsb_\w+", code(ROOT / "bindings" / "cpp" / "wsbroker.hpp")))
    missing = sorted(declared - used)
    if len(declared) < 100:
        print(f"only {len(declared)} functions found in the header: the parse is broken")
        return 1
    if missing:
        print("functions of include/wsbroker.h that wsbroker.hpp never uses: " + ", ".join(missing))
        return 1
    print(f"all {len(declared)} header functions are used by wsbroker.hpp")
    return 0


if __name__ == "__main__":
    sys.exit(main())
