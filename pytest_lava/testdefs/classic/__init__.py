"""The classic lava-test 0.14 library: the tests of ``lava-test`` (§13.1 of the old dispatcher's
reference) that make sense on the lab's emulated arm64 board, as lava-test-dialect definitions
with their old test ids, default options, parse patterns, ``fixupdict`` and ``appendall``.

Their ``install.deps`` are Debian packages that ``lava_test_install`` installs with apt on the
test image (the lab's Debian bookworm image and its apt repository, see lab/README.md). ``stream``
is the built-in library's. Names are looked up with ``-`` and ``_`` interchangeable, as lava-test
did. A lava-test 0.14 test the lab cannot run is named in :data:`UNAVAILABLE` with where to get
it; any other unknown name is an error listing what exists.
"""

from __future__ import annotations

import dataclasses
from importlib import resources

from ...core.errors import JobError, ProblemList
from ...jobs.loader import parse_text
from ..load import library_names, load_builtin, resolve
from ..model import TestDefinition, definition_from_document

PACKAGE = "pytest_lava.testdefs.classic"
FROM_LIBRARY = ("stream",)  # classic tests the built-in library already has
# lava-test's own parsers did more than a pattern: ids rewritten before lava-test's character rule
ID_REPLACE: dict[str, tuple[tuple[str, str], ...]] = {"posixtestsuite": (("/", "."),)}
LTP_HELP = ("Debian bookworm has no LTP package, and lava-test built it on the board from "
            "ltp-full-20120614.bz2 (hours under QEMU TCG): build LTP for arm64 (https://github.com/"
            "linux-test-project/ltp/releases), serve it, and give lava_test_install a lava-test "
            "definition of 'ltp' with 'register: [URL]' (runltp $(OPTIONS), default '-f syscalls -p -q', "
            "fixupdict TPASS/TFAIL/TBROK/TCONF/TINFO/TWARN)")
UNAVAILABLE = {
    "ltp": LTP_HELP,
    "ltp-snowball-tests": LTP_HELP,
    "pybench": "pybench is Python 2 only (removed from CPython 3.7); Debian bookworm has no Python 2",
    "bootchart": "Debian bookworm has no bootchart/bootchart2 package, and the lab boots with busybox init",
    "tiobench": "Debian bookworm has no tiobench package (lava-test downloaded and built its source)",
    "gmpbench": "lava-test downloaded gmpbench's source from gmplib.org; the lab has no network beyond itself",
}


def _key(name: str) -> str:
    return name.replace("_", "-")


def _files() -> dict[str, str]:
    folder = resources.files(PACKAGE)
    return {_key(p.name[:-5]): p.name for p in folder.iterdir() if p.name.endswith(".yaml")}


def classic_names() -> list[str]:
    """The classic library's test ids."""
    return sorted({p[:-5] for p in _files().values()} | set(FROM_LIBRARY))


def load_classic(name: str) -> TestDefinition | None:
    """The classic definition ``name`` (``-``/``_`` alike), or None."""
    if _key(name) in map(_key, FROM_LIBRARY):
        return load_builtin(name)
    filename = _files().get(_key(name))
    if filename is None:
        return None
    text = resources.files(PACKAGE).joinpath(filename).read_text(encoding="utf-8")
    source = f"classic:{filename[:-5]}"
    definition = definition_from_document(parse_text(text, source, json_syntax=False), name_hint=filename[:-5])
    definition.text = text
    replace = ID_REPLACE.get(definition.name)
    if replace and definition.parse is not None:
        definition.parse = dataclasses.replace(definition.parse, id_replace=replace)
    return definition


def known_names() -> list[str]:
    return sorted(set(classic_names()) | set(library_names()))


def unknown_reason(name: str) -> str:
    """Why ``name`` cannot be installed: where to get it, or what exists."""
    help_text = UNAVAILABLE.get(_key(name)) or UNAVAILABLE.get(name)
    if help_text:
        return f"lava-test test {name!r} is not in the lab's library: {help_text}"
    return (f"no lava-test test {name!r}: the classic library has {', '.join(classic_names())}; "
            f"built-in definitions: {', '.join(library_names())} (or give its URL in 'register')")


def resolve_test(ref: str, *, registered: dict[str, TestDefinition] | None = None, base=None) -> TestDefinition:
    """A test by name for lava_test_install/lava_test_run: registered, classic library, built-in
    library; paths and URLs as :func:`~pytest_lava.testdefs.load.resolve`."""
    if registered and ref in registered:
        return registered[ref]
    plain = "://" not in ref and "/" not in ref and not ref.endswith((".yaml", ".yml", ".json"))
    if plain:
        found = load_classic(ref)
        if found is not None:
            return found
        if ref not in library_names() and ref.replace("_", "-") not in library_names():
            raise JobError.single(f"library:{ref}", "", unknown_reason(ref))
    return resolve(ref, registered=registered, base=base)


def check_tests(params: dict, problems: ProblemList, path: str) -> None:
    """Validation of ``lava_test_install.tests``: every plain name must exist (classic or built-in)
    unless the action's ``register`` may supply it (its test ids are known only once fetched)."""
    if params.get("register"):
        return
    for i, name in enumerate(params.get("tests") or []):
        check_name(name, problems, f"{path}.tests[{i}]")


def check_name(name: object, problems: ProblemList, path: str) -> None:
    """A plain test name (not a path or URL) must be a classic or built-in definition."""
    if isinstance(name, str) and "/" not in name and "://" not in name \
            and not name.endswith((".yaml", ".yml", ".json")) and _key(name) not in {_key(n) for n in known_names()}:
        problems.add(path, unknown_reason(name))


__all__ = ["UNAVAILABLE", "check_name", "check_tests", "classic_names", "known_names", "load_classic", "resolve_test",
           "unknown_reason"]
