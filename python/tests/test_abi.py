"""The ctypes structures match include/clattn.h: a small C program compiled
against the header prints every size and offset of clattn_desc and
clattn_device_profile, and each must equal what clattn._lib declares."""
import os
import shutil
import subprocess

import pytest

from clattn import _lib

HEADER_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "include")


def _compiler():
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    pytest.fail("no C compiler to check the ctypes layout against the header")


@pytest.mark.parametrize("struct,cname", [(_lib.Desc, "clattn_desc"),
                                          (_lib.DeviceProfile, "clattn_device_profile")])
def test_abi_layout_matches_header(tmp_path, struct, cname):
    lines = [f'printf("sizeof %zu\\n", sizeof({cname}));']
    for field, _ in struct._fields_:
        lines.append(f'printf("{field} %zu\\n", offsetof({cname}, {field}));')
    src = tmp_path / "layout.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include \"clattn.h\"\n"
                   "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run([_compiler(), "-std=c11", "-I", HEADER_DIR, str(src), "-o", str(exe)],
                   check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    got = dict(line.split() for line in out.splitlines())
    assert int(got.pop("sizeof")) == __import__("ctypes").sizeof(struct)
    for field, _ in struct._fields_:
        assert int(got[field]) == getattr(struct, field).offset, field
