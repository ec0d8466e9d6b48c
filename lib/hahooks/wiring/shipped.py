"""The wiring files hahooks ships: hooks/, devd/, ocf/, heartbeat-resource.d/ and man/.

They have one source, the top of the repository. A built wheel carries a copy under
hahooks/_wiring/ (setup.py's build step), found here through importlib.resources; an
editable install or a checkout has no copy and reads the repository's own directories.
"""
from __future__ import annotations

import importlib.resources
import os

from hahooks.errors import NotInstalled

# keep in step with setup.py's WIRING_DIRS
WIRING_DIRS = ("hooks", "devd", "ocf", "heartbeat-resource.d", "man")
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))       # lib/hahooks/wiring/shipped.py -> the repository


def root() -> str:
    """The directory holding WIRING_DIRS: the package's copy, else the checkout."""
    packaged = importlib.resources.files("hahooks").joinpath("_wiring")
    if packaged.is_dir():
        return str(packaged)          # a wheel is installed unzipped: a real directory
    if all(os.path.isdir(os.path.join(_CHECKOUT, d)) for d in WIRING_DIRS):
        return _CHECKOUT
    raise NotInstalled("the wiring files are missing: hahooks was installed from a build "
                       "without hahooks/_wiring and is not a checkout; reinstall it with "
                       "`pip install .` from the source tree")


def path(directory: str, name: str) -> str:
    """The path of one shipped file, e.g. path("ocf", "hahooks")."""
    if directory not in WIRING_DIRS:
        raise ValueError(f"{directory!r} is not one of {WIRING_DIRS}")
    found = os.path.join(root(), directory, name)
    if not os.path.isfile(found):
        raise NotInstalled(f"{directory}/{name} is not among the shipped wiring files")
    return found


def names(directory: str) -> list[str]:
    """The files of one shipped directory, sorted."""
    top = os.path.join(root(), directory)
    return sorted(n for n in os.listdir(top) if os.path.isfile(os.path.join(top, n)))
