"""The error taxonomy.

Every error the plugin raises on purpose belongs to one of five kinds, and each kind maps onto
a pytest outcome:

* ``ConfigurationError`` — a device file, device-type file or option is wrong
  (pytest usage error, exit status 4, before anything touches a board);
* ``JobError`` — the job file is wrong (usage error too);
* ``InfrastructureError`` — the lab is broken: power, console, boot, network, download
  (the item is an *error*, not a failure);
* ``TestFailure`` — a test case failed (the item is a *failure*);
* ``LavaBug`` — an internal inconsistency; it carries a request to report it.

Anything else escaping action code is treated as a bug too.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class LavaError(Exception):
    """Base of every error the plugin raises deliberately."""

    kind = "bug"

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message if not self.details else f"{self.message}\n{self.details}"


@dataclass(frozen=True)
class Problem:
    """One mistake in an input file: where it is and why it is wrong."""

    file: str
    path: str = ""  # field path such as actions[2].parameters.tests
    reason: str = ""
    line: int | None = None

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f": {self.path}"
        return f"{where}: {self.reason}"


@dataclass
class ProblemList:
    """Collects every problem of a file before reporting, so a user sees them all at once."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: str, reason: str, line: int | None = None) -> None:
        self.problems.append(Problem(self.file, path, reason, line))

    def __bool__(self) -> bool:
        return bool(self.problems)


class InputError(LavaError):
    """A file given by the user is invalid; carries every problem found in it."""

    kind = "configuration"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid input")


class ConfigurationError(InputError):
    """A device, device-type or option is wrong."""

    kind = "configuration"

    @classmethod
    def single(cls, file: str, path: str, reason: str) -> ConfigurationError:
        return cls([Problem(file, path, reason)])


class JobError(InputError):
    """A job file is wrong."""

    kind = "job"

    @classmethod
    def single(cls, file: str, path: str, reason: str) -> JobError:
        return cls([Problem(file, path, reason)])


class ArtifactError(JobError):
    """An artifact a job points at is unusable or unsafe: a download that fails (HTTP 4xx, a host
    that does not answer), a checksum mismatch, a malformed or hostile archive or disk image.

    The job's fault, not the board's: it never counts against a board's health. Carries one
    :class:`Problem` (file ``artifact``) so code that reads ``problems`` keeps working."""

    kind = "job"

    def __init__(self, message: str, *, details: str = "") -> None:
        self.problems = [Problem("artifact", reason=message)]
        LavaError.__init__(self, message, details=details)


class InfrastructureError(LavaError):
    """The lab failed: power, console, bootloader, network, download. An error, not a failure."""

    kind = "infrastructure"


class TestFailure(LavaError):
    """A test case or test action failed on the board. A failure, not an error."""

    __test__ = False  # not a test class, whatever pytest thinks of the name
    kind = "test"


class LavaBug(LavaError):
    """An internal inconsistency in pytest-lava itself."""

    kind = "bug"

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(f"{message} (this is a bug in pytest-lava; please report it)", details=details)


def describe_value(value: object) -> str:
    """A value as an error message names it: ``a string 'x'``, ``an integer 3``, ``a list``."""
    if value is None:
        return "null"
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "a mapping"}
    text = repr(value) if not isinstance(value, list | dict) else ""
    if len(text) > 30:
        text = text[:27] + "..."
    return f"{names.get(type(value), type(value).__name__)}{' ' + text if text else ''}"


def kind_of(exc: BaseException) -> str:
    """The taxonomy kind of any exception; unknown exceptions are bugs."""
    return exc.kind if isinstance(exc, LavaError) else "bug"
