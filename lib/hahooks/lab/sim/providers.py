"""GEOM-style providers of a node (md units, ggate units, HAST devices, plain files a test
put in the dev dir) and the data operations the simulated tools share.

Every provider is a name under the node's dev dir ("md0", "ggate0", "hast/r0", "ada1")
backed by an image file; mirrors and ggated refer to providers by name and reach their
data through the image path recorded here (visible from every simulated node).
"""
from __future__ import annotations

import os

CHUNK = 1 << 20


def strip_dev(name: str) -> str:
    return name[5:] if name.startswith("/dev/") else name


def dev_path(store, node: str, prov: str) -> str:
    return os.path.join(store.dev_dir(node), strip_dev(prov))


def image_of(st: dict, store, node: str, prov: str) -> str | None:
    """The backing image of provider `prov` on `node`, or None when it does not exist."""
    prov = strip_dev(prov)
    if prov.startswith("md") and prov[2:].isdigit():
        unit = st.get("md", {}).get(node, {}).get(prov[2:])
        return unit["file"] if unit else None
    if prov.startswith("ggate") and prov[5:].isdigit():
        unit = st.get("ggate", {}).get(node, {}).get(prov[5:])
        return unit["image"] if unit else None
    if prov.startswith("hast/"):
        r = st.get("hast", {}).get(prov[5:])
        if r and r["device"].get(node):
            return store.path(r["image"])
        return None
    if prov.startswith("mirror/"):
        return None   # mirrors of mirrors are not simulated
    path = dev_path(store, node, prov)
    return os.path.realpath(path) if os.path.isfile(path) else None


def size_of(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def copy_data(src: str, dst: str) -> None:
    """Make dst hold src's bytes (a mirror synchronising a component, or the writes a
    synchronous mirror had already sent to it). Only differing chunks are written."""
    if same_file(src, dst):
        return
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        size = min(os.fstat(fin.fileno()).st_size, os.fstat(fout.fileno()).st_size)
        offset = 0
        changed = False
        while offset < size:
            block = fin.read(min(CHUNK, size - offset))
            if not block:
                break
            fout.seek(offset)
            if fout.read(len(block)) != block:
                fout.seek(offset)
                fout.write(block)
                changed = True
            offset += len(block)
        if changed:
            fout.flush()
            os.fsync(fout.fileno())


def equal_data(a: str, b: str) -> bool:
    if same_file(a, b):
        return True
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(CHUNK), fb.read(CHUNK)
            if x != y:
                return False
            if not x:
                return True
