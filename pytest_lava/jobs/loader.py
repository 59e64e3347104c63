"""Read a YAML or JSON file into plain data plus a map of field paths to line numbers.

Syntax errors become :class:`Problem` objects with the line the parser gives, never a traceback.

Job files and the test definitions they name are not trusted, so a document is also refused
(a :class:`Problem` with file, line, field and reason) when

* its YAML aliases would expand it by more than :data:`MAX_ALIAS_VALUES` values or
  :data:`MAX_ALIAS_TEXT` characters (a "billion laughs" alias bomb: a few hundred bytes that
  become billions of values wherever the data is later walked or turned into text);
* an alias refers to the node that contains it (a structure that contains itself);
* it nests more than :data:`MAX_DEPTH` mappings/lists (YAML or JSON): deeper data would hit
  Python's recursion limit in whatever walks it later.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import Problem

MAX_DEPTH = 100  # nested mappings/lists; real jobs, devices and test definitions use fewer than 10
MAX_ALIAS_VALUES = 100_000  # values YAML aliases may add to a document (each use counts its whole node)
MAX_ALIAS_TEXT = 10_000_000  # characters of scalar text YAML aliases may add to a document


@dataclass
class Document:
    file: str
    data: Any = None
    lines: dict[str, int] = field(default_factory=dict)  # "actions[2].parameters.tests" -> 14
    problem: Problem | None = None
    json_text: str | None = field(default=None, repr=False)  # JSON whose line map is built when first needed

    def line(self, path: str) -> int | None:
        """The line of ``path``, or of its closest parent that has one."""
        if self.json_text is not None:  # only a file with a problem needs its lines: most JSON never does
            text, self.json_text = self.json_text, None
            try:  # JSON is (nearly) YAML: the composed node tree gives the line numbers
                _Walk(self.lines).walk(yaml.compose(text, Loader=_Loader))
            except (yaml.YAMLError, RecursionError, _Refused):
                pass
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None


# libyaml when present: the pure-Python parser made validation ~5 ms per job slower
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

def read_document(path: Path) -> Document:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Document(name, problem=Problem(name, "", "file not found"))
    except IsADirectoryError:
        return Document(name, problem=Problem(name, "", "is a directory, not a file"))
    except UnicodeDecodeError as exc:
        return Document(name, problem=Problem(name, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
    except OSError as exc:
        return Document(name, problem=Problem(name, "", f"cannot be read: {exc.strerror}"))
    return parse_text(text, name, json_syntax=path.suffix.lower() == ".json")


def parse_text(text: str, name: str, *, json_syntax: bool) -> Document:
    if not text.strip():
        return Document(name, problem=Problem(name, "", "the file is empty"))
    if json_syntax:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            return Document(name, problem=Problem(name, "", f"JSON syntax error: {exc.msg} (column {exc.colno})",
                                                  exc.lineno))
        except RecursionError:
            return Document(name, problem=Problem(name, "", f"JSON nested too deeply (more than {MAX_DEPTH} "
                                                  "levels of objects and arrays are refused)", _json_deep_line(text)))
        too_deep = _json_too_deep(data)
        if too_deep is not None:
            return Document(name, problem=Problem(name, _short(too_deep), _TOO_DEEP, _json_deep_line(text)))
        return Document(name, data, json_text=text)
    lines: dict[str, int] = {}
    try:
        data = _load_yaml(text, lines)
    except _Refused as exc:
        return Document(name, problem=Problem(name, _short(exc.path), exc.reason, exc.line))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = f"YAML syntax error: {exc.problem or exc.context}"
        if mark is not None:
            where = f"column {mark.column + 1}"
            start = exc.context_mark
            if exc.problem and exc.context and start is not None and start.line != mark.line:
                # an unclosed bracket or a bad indent is found later than where it begins
                where += f"; {exc.context} started on line {start.line + 1}"
            reason += f" ({where})"
        return Document(name, problem=Problem(name, "", reason, mark.line + 1 if mark else None))
    except (yaml.YAMLError, RecursionError) as exc:
        return Document(name, problem=Problem(name, "", f"YAML error: {exc}"))
    return Document(name, data, lines)


def _load_yaml(text: str, lines: dict[str, int]) -> Any:
    """One parse gives both the node tree (for line numbers, checked before anything is built
    from it) and the data (``yaml.safe_load``)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _Walk(lines).walk(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _short(path: str, keep: int = 80) -> str:
    """A field path cut for a message (a path 100 levels deep is long)."""
    return path if len(path) <= keep else path[:keep] + "..."


_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep (mappings and lists); refused"


class _Refused(Exception):
    """A document refused by :class:`_Walk`: where and why."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        super().__init__(reason)
        self.path, self.line, self.reason = path, line, reason


class _Walk:
    """One pass over a composed YAML node tree: records the line of every field path, and
    refuses the document (:class:`_Refused`) when it nests too deeply, when an alias refers to a
    node that contains it, or when its aliases expand it too much.

    An alias is the same node object met again: its expanded size is known by then (an anchor
    comes before its aliases), so the cost is one visit per node however the aliases nest.
    """

    def __init__(self, lines: dict[str, int]) -> None:
        self.lines = lines
        self.sizes: dict[int, tuple[int, int, int]] = {}  # id(node) -> (values, characters, levels)
        self.open: set[int] = set()  # collections being walked (an alias to one would be a cycle)
        self.added_values = 0
        self.added_text = 0

    def walk(self, node: yaml.Node) -> None:
        self._node(node, "", 0, node.start_mark.line + 1)

    def _node(self, node: yaml.Node, path: str, depth: int, line: int) -> tuple[int, int, int]:
        """``(values, characters of scalar text, nesting levels)`` of ``node`` fully expanded;
        ``line`` is where the reference to it is written (the line of its key, or of its list)."""
        self.lines.setdefault(path, node.start_mark.line + 1)
        key = id(node)
        size = self.sizes.get(key)
        if size is not None:  # an alias
            self.added_values += size[0]
            self.added_text += size[1]
            if self.added_values > MAX_ALIAS_VALUES:
                raise _Refused(path, line, f"YAML aliases expand the document by more than {MAX_ALIAS_VALUES:,} "
                               "values (an alias bomb?); write the repeated part out or use fewer aliases")
            if self.added_text > MAX_ALIAS_TEXT:
                raise _Refused(path, line, f"YAML aliases expand the document by more than {MAX_ALIAS_TEXT:,} "
                               "characters of text (an alias bomb?); use fewer aliases of long strings")
            if depth + size[2] > MAX_DEPTH:
                raise _Refused(path, line, _TOO_DEEP + " (through an alias)")
            return size
        if key in self.open:
            raise _Refused(path, line, "a YAML alias refers to a node that contains it (a structure that "
                           "contains itself is refused)")
        if isinstance(node, yaml.ScalarNode):
            size = (1, len(node.value), 0)
        else:
            if depth >= MAX_DEPTH:
                raise _Refused(path, node.start_mark.line + 1, _TOO_DEEP)
            self.open.add(key)
            values, text, levels = 1, 0, 0
            here = node.start_mark.line + 1
            children: list[tuple[yaml.Node, str, int]] = []
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode):
                        child = f"{path}.{k.value}" if path else str(k.value)
                        self.lines.setdefault(child, k.start_mark.line + 1)
                        children += [(k, child, k.start_mark.line + 1), (v, child, k.start_mark.line + 1)]
                    else:  # a complex key: counted, no field path of its own
                        children += [(k, path, k.start_mark.line + 1), (v, path, k.start_mark.line + 1)]
            elif isinstance(node, yaml.SequenceNode):
                children = [(item, f"{path}[{i}]", here) for i, item in enumerate(node.value)]
            for child_node, child_path, child_line in children:
                v_count, v_text, v_levels = self._node(child_node, child_path, depth + 1, child_line)
                values += v_count
                text += v_text
                levels = max(levels, v_levels)
            self.open.discard(key)
            size = (values, text, levels + 1)
        self.sizes[key] = size
        return size


def _json_too_deep(value: Any, depth: int = 0) -> str | None:
    """The field path of the first object/array nested :data:`MAX_DEPTH` levels deep, else None
    (recursion bounded by the limit itself)."""
    if depth >= MAX_DEPTH:
        return ""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        if isinstance(child, dict | list):
            below = _json_too_deep(child, depth + 1)
            if below is not None:
                here = f"[{key}]" if isinstance(value, list) else (f".{key}" if depth else str(key))
                return here + below
    return None


_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _json_deep_line(text: str) -> int | None:
    """The line of the first ``[``/``{`` that opens level :data:`MAX_DEPTH` + 1 (strings skipped)."""
    depth = 0
    for m in _JSON_TOKEN.finditer(text):
        token = m.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return text.count("\n", 0, m.start()) + 1
        elif token in ("]", "}"):
            depth -= 1
    return None
