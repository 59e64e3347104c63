"""How an action is described: its parameter schema, cross-field rules and names.

The old dispatcher declared a JSON schema per action; here each action declares a small table of
typed parameters plus optional rules, which lets validation say exactly which field is wrong and
why, and lets the README's job reference be generated from the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ProblemList

# what an action is, for the plugin: a setup fixture, a test item, or a submit at session end
SETUP, TEST, SUBMIT = "setup", "test", "submit"

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a mapping"}


@dataclass(frozen=True)
class Param:
    """One parameter of an action."""

    type: type | tuple[type, ...]
    required: bool = False
    items: type | tuple[type, ...] | None = None  # element type for lists
    choices: tuple[Any, ...] = ()
    default: Any = None
    help: str = ""
    secret: bool = False  # masked in plans, logs and bundles

    def type_name(self) -> str:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):  # bool is an int in Python, but not in a job file
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


Rule = Callable[[dict[str, Any], ProblemList, str], None]
# a rule that also sees the whole job: [(command, parameters), ...] of every action, in order
JobRule = Callable[[dict[str, Any], ProblemList, str, list[tuple[str, dict[str, Any]]]], None]
ActionRun = Callable[..., Any]


@dataclass
class ActionSpec:
    """An action the job format knows. ``run`` is filled in by the implementation module; an
    action without one fails at run time with a clear 'not implemented yet' error."""

    name: str
    kind: str  # SETUP, TEST or SUBMIT
    params: dict[str, Param] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    job_rules: tuple[JobRule, ...] = ()  # checked once every action's own parameters are valid
    default_timeout: float = 1200.0
    summary: str = ""
    # the test_case_id in the `lava` run, e.g. "lava_test_run (stream)"
    result_name: Callable[[dict[str, Any]], str] | None = None
    # for test items: the label inside the brackets, e.g. "stream" in lava_test_run[stream]
    item_label: Callable[[dict[str, Any]], str] | None = None
    run: ActionRun | None = None
    board_types: tuple[str, ...] = ()  # empty: any board type

    def check(self, parameters: Any, problems: ProblemList, path: str) -> None:
        """Validate ``parameters`` (the action's ``parameters`` value) into ``problems``."""
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            problems.add(path, f"must be a mapping of parameters, not {type(parameters).__name__}")
            return
        for key, value in parameters.items():
            if not isinstance(key, str):  # YAML allows `{0: x}`
                problems.add(f"{path}.{key}", f"a parameter name must be a string, not {_describe(key)}")
                continue
            param = self.params.get(key)
            if param is None:
                problems.add(f"{path}.{key}", _unknown(key, self))
                continue
            if not _is(value, param.type):
                # never echo a secret, even a mistyped one
                shown = type(value).__name__ if param.secret else _describe(value)
                problems.add(f"{path}.{key}", f"must be {param.type_name()}, not {shown}")
                continue
            if key == "timeout" and value <= 0 and value != -1:
                # -1 was the old dispatcher's "the default" (pexpect's); 0 or less would end at once
                problems.add(f"{path}.{key}", f"must be a positive number of seconds (or -1 for the action's "
                                              f"default), not {value}")
                continue
            if param.items is not None and isinstance(value, list):
                for i, item in enumerate(value):
                    if not _is(item, param.items):
                        expected = Param(param.items).type_name()
                        problems.add(f"{path}.{key}[{i}]", f"must be {expected}, not {_describe(item)}")
            if param.choices and value not in param.choices:
                choices = ", ".join(repr(c) for c in param.choices)
                problems.add(f"{path}.{key}", f"must be one of {choices}, not {value!r}")
        for key, param in self.params.items():
            if param.required and key not in parameters:
                problems.add(f"{path}.{key}", f"is required by {self.name}")
        if not problems.problems or all(not p.path.startswith(path) for p in problems.problems):
            for rule in self.rules:
                rule(parameters, problems, path)

    def test_case_id(self, parameters: dict[str, Any]) -> str:
        return self.result_name(parameters) if self.result_name else self.name

    def label(self, parameters: dict[str, Any]) -> str:
        return self.item_label(parameters) if self.item_label else ""

    def timeout(self, parameters: dict[str, Any]) -> float:
        value = parameters.get("timeout") if isinstance(parameters, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return self.default_timeout


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _unknown(key: str, spec: ActionSpec) -> str:
    import difflib

    known = sorted(spec.params)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    allowed = ", ".join(known) if known else "none"
    return f"unknown parameter of {spec.name}{hint} (allowed: {allowed})"


# --- reusable rules -------------------------------------------------------------------------

def requires(key: str, other: str) -> Rule:
    def rule(params: dict[str, Any], problems: ProblemList, path: str) -> None:
        if key in params and other not in params:
            problems.add(f"{path}.{key}", f"needs {other!r} as well")
    return rule


def excludes(key: str, other: str) -> Rule:
    def rule(params: dict[str, Any], problems: ProblemList, path: str) -> None:
        if key in params and other in params:
            problems.add(f"{path}.{other}", f"cannot be used together with {key!r}")
    return rule


def one_of(*keys: str) -> Rule:
    def rule(params: dict[str, Any], problems: ProblemList, path: str) -> None:
        if not any(k in params for k in keys):
            problems.add(path, "needs one of " + " or ".join(repr(k) for k in keys))
    return rule


def non_empty(key: str) -> Rule:
    def rule(params: dict[str, Any], problems: ProblemList, path: str) -> None:
        if key in params and not params[key]:
            problems.add(f"{path}.{key}", "must not be empty")
    return rule
