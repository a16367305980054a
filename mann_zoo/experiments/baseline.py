"""An earlier revision's cores, imported beside this checkout's, so that ``mann-zoo speed --baseline REF``
times "before" and "after" in one process, in interleaved rounds.

``git archive REF mann_zoo`` is unpacked into a temporary folder and imported as the package
``mann_zoo_<revision>``; its modules import each other relatively (``from .. import memory``), so its
cores run on its own memory primitives (and register their custom operators under that name). A
revision whose models imported ``mann_zoo`` by absolute name would run this checkout's code there; none
does. Only the models are used: tasks, batches and the timing loop are this checkout's, so the two are
measured on the same data.
"""

from __future__ import annotations

import atexit
import functools
import importlib
import importlib.util
import inspect
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..models.registry import CoreSpec

PACKAGE = "mann_zoo"


@functools.cache
def checkout_revision(repository: Path | None = None) -> str | None:
    """``"<short hash>"`` of the git checkout this package runs from (default), with ``" + local changes"``
    where its ``mann_zoo/`` differs from that commit; None outside a git checkout (an installed copy, also
    one in a virtual environment inside a checkout: the checkout's top must be ``repository`` itself)."""
    repository = (repository or Path(__file__).resolve().parents[2]).resolve()
    git = ["git", "-C", str(repository)]
    try:
        top = subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True,
                             timeout=30).stdout.strip()
        if Path(top).resolve() != repository:
            return None
        revision = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                  check=True, timeout=30).stdout.strip()
        changes = subprocess.run([*git, "status", "--porcelain", "--", PACKAGE], capture_output=True, text=True,
                                 check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return revision + (" + local changes" if changes else "")


def load_revision(ref: str, repository: Path | None = None):
    """The package ``mann_zoo`` as of git revision ``ref`` of ``repository`` (default: the checkout this
    package lives in), imported as ``mann_zoo_<short hash>``. Raises ``ValueError`` (one line) when ``ref`` is
    not a revision there or the folder is not a git checkout."""
    repository = repository or Path(__file__).resolve().parents[2]
    git = ["git", "-C", str(repository)]
    try:
        revision = subprocess.run([*git, "rev-parse", "--short", f"{ref}^{{commit}}"], capture_output=True,
                                  text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ValueError(f"--baseline: {ref!r} is not a revision of the git checkout at {repository}") from None
    name = f"{PACKAGE}_{revision}"
    if name in sys.modules:
        return sys.modules[name]
    archive = subprocess.run([*git, "archive", "--format=tar", revision, PACKAGE], capture_output=True).stdout
    folder = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: refuse links and paths outside
            tar.extractall(folder, filter="data")
        else:
            tar.extractall(folder)
    root = folder / PACKAGE
    spec = importlib.util.spec_from_file_location(name, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        importlib.import_module(f"{name}.models")  # the cores, and through them the memory primitives
    except Exception as error:  # noqa: BLE001 - any revision that does not import: one line
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        raise ValueError(f"--baseline: {PACKAGE} at revision {revision} does not import here: "
                         f"{type(error).__name__}: {error}") from None
    module.revision = revision
    return module


def spec_at_revision(spec: CoreSpec, package) -> CoreSpec:
    """``spec`` with its class taken from ``package`` (a :func:`load_revision` result) when it is one of
    this package's classes; ``ValueError`` when the class is not in this package or not in that revision."""
    prefix = PACKAGE + "."
    if not spec.class_path.startswith(prefix):
        raise ValueError(f"--baseline: {spec.class_path} is not a class of {PACKAGE}; nothing to compare it with")
    class_path = package.__name__ + "." + spec.class_path[len(prefix):]
    module_name, _, name = class_path.rpartition(".")
    if not hasattr(importlib.import_module(module_name), name):
        raise ValueError(f"--baseline: {spec.class_path} does not exist at revision {package.revision}")
    # An argument added since that revision, at its default value, asks for what the revision did anyway:
    # it is left out (a config parsed today lists every argument, defaults included).
    old = inspect.signature(getattr(importlib.import_module(module_name), name)).parameters
    today = inspect.signature(spec.load()).parameters
    init_args = {key: value for key, value in spec.init_args.items()
                 if key in old or key not in today or value != today[key].default}
    return CoreSpec(class_path, init_args)
