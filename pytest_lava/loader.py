"""Read a YAML or JSON file into plain data plus a map of field paths to line numbers.

Syntax errors become :class:`Problem` objects with the line the parser gives, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem


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
                _collect_lines(yaml.compose(text, Loader=_Loader), "", self.lines)
            except (yaml.YAMLError, RecursionError):
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
            return Document(name, problem=Problem(name, "", "JSON nested too deeply"))
    else:
        try:
            node, data = _compose_and_construct(text)
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
    if json_syntax:
        return Document(name, data, json_text=text)
    doc = Document(name, data)
    try:
        _collect_lines(node, "", doc.lines)
    except RecursionError:
        pass
    return doc


def _compose_and_construct(text: str) -> tuple[yaml.Node | None, Any]:
    """One parse gives both the node tree (for line numbers) and the data (``yaml.safe_load``)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        return node, (loader.construct_document(node) if node is not None else None)
    finally:
        loader.dispose()


def _collect_lines(node: yaml.Node | None, path: str, lines: dict[str, int], seen: set[int] | None = None) -> None:
    if node is None:
        return
    lines.setdefault(path, node.start_mark.line + 1)
    seen = set() if seen is None else seen
    if id(node) in seen:  # an alias: its children have lines already (and may nest exponentially)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                child = f"{path}.{key.value}" if path else str(key.value)
                lines.setdefault(child, key.start_mark.line + 1)
                _collect_lines(value, child, lines, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _collect_lines(item, f"{path}[{i}]", lines, seen)
