"""Loading devices: the YAML layout and the old dispatcher's INI layout.

YAML layout (``--lava-devices DIR``)::

    DIR/<board>.yaml                  one file per board (device_type + what differs)
    DIR/device-types/<type>.yaml      defaults for every board of the type
    DIR/device-defaults.yaml          optional defaults for every board

Old dispatcher layout (detected by ``DIR/devices/*.conf``)::

    DIR/device-defaults.conf          optional
    DIR/device-types/<type>.conf
    DIR/devices/<board>.conf

INI files there are section-less, keys case-insensitive, later files win, ``%(hostname)s`` style
interpolation works and ``boot_cmds`` is split on commas with one layer of quotes removed, exactly
as the old dispatcher did, so existing lab configurations carry over unchanged.
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import re
import shlex
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigurationError, JobError, Problem, ProblemList
from ..jobs.loader import read_document
from .device import END_OF_JOB, LINE_ENDINGS, Device

_FIELDS = {f.name: f for f in dataclasses.fields(Device) if f.name not in ("name", "source", "extra")}
_HINTS = typing.get_type_hints(Device)
# old INI spellings -> model field names
_OLD_KEYS = {"client_type": "board_type", "power_on_cmd": "power_on_command",
             "power_off_cmd": "power_off_command", "lava_server_ip": "host_address"}
LIST_SPLIT_KEYS = ("boot_cmds", "boot_cmds_android", "boot_cmds_oe")
_CHOICES = {"line_ending": tuple(LINE_ENDINGS), "end_of_job": END_OF_JOB}  # settings with fixed values


@dataclass
class DeviceSet:
    directory: Path
    devices: dict[str, Device] = field(default_factory=dict)
    layout: str = "yaml"

    def by_type(self, device_type: str) -> list[Device]:
        return [d for d in self.devices.values() if d.device_type == device_type]

    def types(self) -> list[str]:
        return sorted({d.device_type for d in self.devices.values()})

    def select(self, *, target: str | None, device_type: str | None, job_file: str) -> list[Device]:
        """The boards a job may use: its target, or every board of its device type."""
        if target:
            if target in self.devices:
                return [self.devices[target]]
            raise JobError([Problem(job_file, "target", f"unknown board {target!r} in {self.directory}"
                                    + _hint(target, self.devices) + _known("boards", self.devices))])
        if device_type:
            boards = self.by_type(device_type)
            if boards:
                return boards
            raise JobError([Problem(job_file, "device_type",
                                    f"no board of type {device_type!r} in {self.directory}"
                                    + _hint(device_type, self.types()) + _known("types", self.types()))])
        raise JobError([Problem(job_file, "target", "the job names neither 'target' nor 'device_type' "
                                "(or pass --lava-device NAME)")])


def _hint(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _known(what: str, known: Any) -> str:
    names = sorted(known)
    return f" (known {what}: {', '.join(names)})" if names else f" (no {what} found)"


def load_devices(directory: str | Path) -> DeviceSet:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigurationError.single(str(directory), "", "device directory does not exist "
                                        "(set it with --lava-devices DIR or the lava_devices ini option)")
    if (directory / "devices").is_dir() and any((directory / "devices").glob("*.conf")):
        return _load_ini_layout(directory)
    return _load_yaml_layout(directory)


# --- YAML layout ------------------------------------------------------------------------------

def _load_yaml_layout(directory: Path) -> DeviceSet:
    problems: list[Problem] = []
    defaults: dict[str, Any] = {}
    defaults_file = directory / "device-defaults.yaml"
    if defaults_file.exists():
        defaults = _read_mapping(defaults_file, problems) or {}  # a broken file is reported, not used
    type_cache: dict[str, tuple[Path | None, dict[str, Any] | None]] = {}
    result = DeviceSet(directory)
    for path in sorted(directory.glob("*.y*ml")):
        if path.name.startswith("device-defaults.") or path.suffix not in (".yaml", ".yml"):
            continue
        data = _read_mapping(path, problems)
        if data is None:
            continue
        own = ProblemList(str(path))
        device_type = data.get("device_type")
        if not isinstance(device_type, str) or not device_type:
            own.add("device_type", "is required (the name of a file in device-types/)")
            problems.extend(own.problems)
            continue
        if device_type not in type_cache:
            type_file = _find_type_file(directory / "device-types", device_type)
            type_cache[device_type] = (type_file, _read_mapping(type_file, problems) if type_file else None)
        type_file, type_data = type_cache[device_type]
        if type_file is None:
            known = sorted(p.stem for p in (directory / "device-types").glob("*.y*ml"))
            own.add("device_type", f"unknown device type {device_type!r}: no device-types/{device_type}.yaml"
                    + _hint(device_type, known))
            problems.extend(own.problems)
            continue
        name = str(data.get("hostname") or path.stem)
        sources = [str(p) for p in (defaults_file, type_file, path) if p.exists()]
        merged: dict[str, Any] = {}
        layer_files = {}
        for layer, file in ((defaults, str(defaults_file)), (type_data or {}, str(type_file)), (data, str(path))):
            for key, value in layer.items():
                merged[key] = value
                layer_files[key] = file
        device = _build(name, merged, layer_files, problems, ini=False)
        if device:
            device.source = ",".join(sources)
            if name in result.devices:
                problems.append(Problem(str(path), "hostname", f"board {name!r} is defined twice"))
            result.devices[name] = device
    if problems:
        raise ConfigurationError(problems)
    return result


def _find_type_file(types_dir: Path, device_type: str) -> Path | None:
    for suffix in (".yaml", ".yml"):
        candidate = types_dir / f"{device_type}{suffix}"
        if candidate.exists():
            return candidate
    return None


def _read_mapping(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    doc = read_document(path)
    if doc.problem:
        problems.append(doc.problem)
        return None
    if not isinstance(doc.data, dict):
        problems.append(Problem(str(path), "", "must be a mapping of device settings", 1))
        return None
    return doc.data


# --- old dispatcher INI layout ------------------------------------------------------------------

def _load_ini_layout(directory: Path) -> DeviceSet:
    problems: list[Problem] = []
    result = DeviceSet(directory, layout="ini")
    defaults_file = directory / "device-defaults.conf"
    for path in sorted((directory / "devices").glob("*.conf")):
        name = path.stem
        first = _ini_parser(name)
        if not _ini_read(first, path, problems):
            continue
        device_type = first.defaults().get("device_type")
        if not device_type:
            problems.append(Problem(str(path), "device_type", "is required"))
            continue
        type_file = directory / "device-types" / f"{device_type}.conf"
        if not type_file.exists():
            known = sorted(p.stem for p in (directory / "device-types").glob("*.conf"))
            problems.append(Problem(str(path), "device_type", f"unknown device type {device_type!r}: no "
                                    f"device-types/{device_type}.conf" + _hint(device_type, known)))
            continue
        parser = _ini_parser(name)
        files = [f for f in (defaults_file, type_file, path) if f.exists()]
        layer_files: dict[str, str] = {}
        ok = True
        for f in files:
            before = dict(parser.defaults())
            ok = _ini_read(parser, f, problems) and ok
            for key, value in parser.defaults().items():
                if before.get(key) != value:
                    layer_files[_OLD_KEYS.get(key, key)] = str(f)
        if not ok:
            continue
        parser["DEFAULT"]["hostname"] = name
        values: dict[str, Any] = {}
        for key in parser.defaults():
            try:
                values[_OLD_KEYS.get(key, key)] = parser["DEFAULT"][key]
            except configparser.InterpolationMissingOptionError as exc:
                problems.append(Problem(layer_files.get(_OLD_KEYS.get(key, key), str(path)), key,
                                        f"%({exc.reference})s refers to a key that is not set"))
            except configparser.Error as exc:
                problems.append(Problem(layer_files.get(_OLD_KEYS.get(key, key), str(path)), key,
                                        f"bad interpolation: {exc.message}"))
        values.pop("hostname", None)
        device = _build(name, values, layer_files, problems, ini=True)
        if device:
            device.source = ",".join(str(f) for f in files)
            result.devices[name] = device
    if problems:
        raise ConfigurationError(problems)
    return result


def _ini_parser(name: str) -> configparser.ConfigParser:
    # strict=False: Python 2's ConfigParser let a key repeat in a file (the last one wins)
    parser = configparser.ConfigParser(interpolation=_OldInterpolation(), strict=False)
    parser["DEFAULT"]["hostname"] = name
    return parser


class _OldInterpolation(configparser.Interpolation):
    """Python 2's ``ConfigParser`` interpolation, which the old dispatcher used: only a value that
    contains ``%(`` is interpolated (a lone ``%`` in a bootloader command stays as written, where
    Python 3's ``BasicInterpolation`` would reject it), names are case-insensitive, 10 levels deep."""

    _KEY = re.compile(r"%\(([^)]*)\)s")

    def before_get(self, parser: Any, section: str, option: str, value: str, defaults: Any) -> str:
        for _ in range(10):
            if not value or "%(" not in value:
                return value
            value = self._KEY.sub(lambda m: f"%({parser.optionxform(m.group(1))})s", value)
            try:
                value = value % defaults
            except KeyError as exc:
                raise configparser.InterpolationMissingOptionError(option, section, value, exc.args[0]) from None
            except (ValueError, TypeError) as exc:
                raise configparser.InterpolationSyntaxError(option, section, f"bad '%' in {value!r}: {exc}") from None
        raise configparser.InterpolationDepthError(option, section, value)


def _ini_read(parser: configparser.ConfigParser, path: Path, problems: list[Problem]) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
        parser.read_string("[DEFAULT]\n" + text, source=str(path))
        return True
    except configparser.ParsingError as exc:
        line = exc.errors[0][0] - 1 if getattr(exc, "errors", None) else None
        problems.append(Problem(str(path), "", "INI syntax error: a line is neither 'key = value' nor a "
                                "continuation", line))
    except configparser.Error as exc:  # the line numbers count the '[DEFAULT]' line added above
        lineno = getattr(exc, "lineno", None)
        reason = str(exc.message).replace(f"While reading from {str(path)!r} [line {lineno:2d}]: ", "") \
            if lineno else exc.message
        problems.append(Problem(str(path), "", f"INI error: {reason}", lineno - 1 if lineno else None))
    except UnicodeDecodeError as exc:
        problems.append(Problem(str(path), "", f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
    except OSError as exc:
        problems.append(Problem(str(path), "", f"cannot be read: {exc.strerror or exc}"))
    return False


def split_old_list(value: str) -> list[str]:
    """The old dispatcher's ``string_to_list``: shlex, ',' the only separator, one quote layer off."""
    lex = shlex.shlex(value.replace("\n", " "), posix=True)
    lex.whitespace = ","
    lex.whitespace_split = True
    return [item.strip() for item in lex if item.strip()]


# --- typed assembly -----------------------------------------------------------------------------

def _build(name: str, values: dict[str, Any], files: dict[str, str], problems: list[Problem],
           *, ini: bool) -> Device | None:
    kwargs: dict[str, Any] = {"name": name}
    extra: dict[str, Any] = {}
    count = len(problems)
    for key, value in values.items():
        file = files.get(key, "")
        if key == "hostname":
            continue
        if key == "extra" and isinstance(value, dict) and not ini:
            extra.update(value)
            continue
        if key not in _FIELDS:
            if ini:
                extra[key] = value  # the old format has many keys we keep but do not model
            else:
                close = difflib.get_close_matches(key, list(_FIELDS), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else " (put site-specific keys under 'extra:')"
                problems.append(Problem(file, key, f"unknown device setting{hint}"))
            continue
        converted = _convert(key, value, ini)
        if key in _CHOICES and not isinstance(converted, _Bad) and converted not in _CHOICES[key]:
            converted = _Bad(f"{converted!r} is not one of: {', '.join(_CHOICES[key])}")
        if isinstance(converted, _Bad):
            problems.append(Problem(file, key, converted.reason))
        else:
            kwargs[key] = converted
    if len(problems) > count:
        return None
    if kwargs.get("connection") and kwargs.get("connection_command"):
        problems.append(Problem(files.get("connection_command", ""), "connection_command",
                                "give either 'connection' or 'connection_command', not both"))
        return None
    return Device(extra=extra, **kwargs)


@dataclass
class _Bad:
    reason: str


def _convert(key: str, value: Any, ini: bool) -> Any:
    hint = _HINTS[key]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    optional = origin in (typing.Union, types.UnionType) and type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    base_origin = typing.get_origin(base) or base
    if value is None or (ini and value == "" and optional):
        return None if optional else _Bad("must not be empty")
    if base_origin is list:
        if ini and isinstance(value, str) and key in LIST_SPLIT_KEYS:
            try:
                return split_old_list(value)
            except ValueError as exc:  # shlex: "No closing quotation"
                return _Bad(f"cannot be split into commands: {exc} in {value!r}")
        if ini and isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
            return _Bad(f"must be a list of strings, not {type(value).__name__}")
        return [str(v) for v in value]
    if base_origin is dict:
        if not isinstance(value, dict):
            return _Bad(f"must be a mapping, not {type(value).__name__}")
        if key == "timeouts":
            bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, int | float)]
            if bad:
                return _Bad(f"{bad[0]!r} must be a number of seconds")
            return {str(k): float(v) for k, v in value.items()}
        return {str(k): str(v) for k, v in value.items()}
    if base is float or base is int:
        if isinstance(value, str) and ini:
            try:
                value = base(value)
            except ValueError:
                return _Bad(f"must be a number, not {value!r}")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _Bad(f"must be a number, not {type(value).__name__} {value!r}")
        if value < 0:
            return _Bad(f"must not be negative, not {value}")
        return base(value)
    if base is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return _Bad(f"must be a string, not {type(value).__name__}")
        return str(value)
    return value
