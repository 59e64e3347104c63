"""lava-android-test's test model, on the host (old reference §13.2).

An :class:`AndroidTest` has *install* files (pushed with ``adb push`` into
``/data/lava-android-test/installed-tests/<id>/`` and made executable), *run* steps (each one
``adb shell`` command; ``$(INSTALL_DIR)``, ``$(RESULTDIR)`` and ``$(OPTIONS)`` are replaced) and a
*parser*: a regex with the named groups ``test_case_id``, ``result``, ``measurement``, ``units``
(and ``message``), plus a ``fixupdict``. Without a fixupdict a result word is read as
lava-android-test did: PASS/OK/TRUE/DONE are ``pass``, FAIL/NG/FALSE ``fail``, SKIP ``skip``; a
pattern with no ``result`` group makes every match a ``pass``.

The output is parsed by the same :class:`~pytest_lava.testdefs.parse.CaseCollector` as every other
test definition (each matching line is a test case at once), through :meth:`AndroidTest.definition`.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..core.errors import JobError
from ..core.secrets import redact_url
from ..testdefs.model import ParseSpec, TestDefinition

ANDROID_TEST = "lava-android-test"  # the dialect name of the definitions made here
TEST_HOME = "/data/lava-android-test"
INSTALLED = f"{TEST_HOME}/installed-tests"
RESULTS = f"{TEST_HOME}/results"
_WORDS = {"pass": ("PASS", "OK", "TRUE", "DONE"), "fail": ("FAIL", "NG", "FALSE"), "skip": ("SKIP",)}
ANDROID_FIXUP = {form: result for result, words in _WORDS.items()
                 for word in words for form in (word, word.lower(), word.capitalize())}


def parse_spec(pattern: str, fixupdict: dict[str, str] | None = None, *, where: str = "parser") -> ParseSpec:
    """A :class:`ParseSpec` from a lava-android-test pattern; a bad regex is a :class:`JobError`."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise JobError.single("job", where, f"not a valid regular expression: {exc}") from None
    if "test_case_id" not in compiled.groupindex:
        raise JobError.single("job", where, "needs a named group (?P<test_case_id>...)")
    appendall = {} if "result" in compiled.groupindex else {"result": "pass"}
    return ParseSpec(compiled, dict(fixupdict) if fixupdict else dict(ANDROID_FIXUP), appendall)


@dataclass
class AndroidTest:
    """One test of the library, or a run-custom test built from a job."""

    __test__ = False  # not a pytest test class

    test_id: str
    description: str
    run_steps: list[str]
    parse: ParseSpec | None
    files: dict[str, str] = field(default_factory=dict)  # name -> content, pushed at install
    host_files: dict[str, str] = field(default_factory=dict)  # name -> host path, pushed at install
    default_options: str = ""
    source: str = ""
    dirname: str = ""  # under INSTALLED; default: the test id with unsafe characters replaced

    @property
    def install_dir(self) -> str:
        return f"{INSTALLED}/{self.dirname or re.sub(r'[^A-Za-z0-9._+-]', '_', self.test_id)}"

    def steps(self, options: str | None, result_dir: str) -> list[str]:
        """The run steps with the placeholders replaced; the options are the job's words, each
        quoted for the board's shell (``8; reboot`` is two arguments, never a second command)."""
        chosen = quote_options(options if options is not None else self.default_options)
        return [s.replace("$(INSTALL_DIR)", self.install_dir).replace("$(RESULTDIR)", result_dir)
                .replace("$(OPTIONS)", chosen) for s in self.run_steps]

    def definition(self) -> TestDefinition:
        """The definition :class:`CaseCollector` parses with (and the bundle's attributes)."""
        text = json.dumps({"test_id": self.test_id, "description": self.description, "run": self.run_steps,
                           "files": sorted([*self.files, *self.host_files]),
                           "parse": self.parse.pattern.pattern if self.parse else None}, indent=2)
        return TestDefinition(name=self.test_id, dialect=ANDROID_TEST, source=self.source or f"library:{self.test_id}",
                              run_steps=list(self.run_steps), parse=self.parse or ParseSpec(re.compile(r"(?!x)x")),
                              metadata={"description": self.description}, text=text)


def quote_options(options: str, where: str = "parameters.option") -> str:
    """A job's ``option`` string as words, each quoted for the board's shell."""
    try:
        return " ".join(shlex.quote(word) for word in shlex.split(options))
    except ValueError as exc:
        raise JobError.single("job", where, f"cannot split {options!r} into words: {exc}") from None


def command_file_name(url: str) -> str:
    """The name a run-custom command file gets on the board: the last component of the URL's
    path (never its query, user or password), reduced to safe characters."""
    path = urlsplit(url).path.rstrip("/")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", path.rsplit("/", 1)[-1]).lstrip(".") or "command-file"


def custom_test(commands: list[str] | None, command_file: str | None, parser: str | None,
                where: str = "parameters") -> AndroidTest:
    """``run-custom``: the commands, or the downloaded command file (pushed as ``custom/<file>``)."""
    parse = parse_spec(parser, where=f"{where}.parser") if parser else None
    if commands:
        shown = ",".join(commands)
        test_id = f"custom(command=[{shown[:40]}])"
        return AndroidTest(test_id, "lava_android_test_run_custom commands", list(commands), parse,
                           source="job: commands")
    if not command_file:
        raise JobError.single("job", where, "lava_android_test_run_custom needs 'commands' (a non-empty list) "
                                            "or 'command_file'")
    name = command_file_name(command_file)
    shown_url = redact_url(command_file)
    return AndroidTest(f"custom(command_file={name})", f"lava_android_test_run_custom {shown_url}",
                       [f"sh $(INSTALL_DIR)/{shlex.quote(name)}"], parse, host_files={name: ""}, source=shown_url,
                       dirname="custom")
