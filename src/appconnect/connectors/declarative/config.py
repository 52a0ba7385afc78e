"""Loading and validating declarative connector configurations against the published JSON Schema.

A configuration is the reference server's `proxyConfig` (`meta`, `auth`, `requestDefaults`, `operations`). It
is checked once, at start, so a typo stops the server with one line naming where it is
(`operations.findContact.responseMapping.lisPath: not allowed`) instead of failing a user's call later.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from appconnect.connectors.declarative.hosts import secret_host_errors, template_names

SCHEMA_PATH = Path(__file__).with_name("schema.json")
#: a configuration file larger than this is refused (it is read whole at start)
MAX_CONFIG_BYTES = 1024 * 1024
#: what a platform name may be: it is a URL query value, a settings prefix and part of stored user ids
_PLATFORM_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,39}$")

JsonDict = dict[str, Any]


class ConfigError(ValueError):
    """A configuration that cannot run: the message is one line naming the file and the path in it."""


@cache
def schema() -> JsonDict:
    """The published JSON Schema of a configuration (`schema.json` beside this module)."""
    loaded: JsonDict = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema())


def _dotted(parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def _describe(error: ValidationError) -> str:
    """One error as `<path>: <what is wrong>`; never quotes a value from the configuration (it may be a secret)."""
    path = _dotted(error.absolute_path)
    prefix = f"{path}." if path else ""
    instance = error.instance
    wanted: Any = error.validator_value
    rules: Any = error.schema
    if error.validator == "required" and isinstance(instance, dict):
        missing = [name for name in wanted if name not in instance]
        return f"{prefix}{missing[0] if missing else '?'}: required"
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(rules.get("properties", {}) if isinstance(rules, dict) else {})
        extra = sorted(k for k in instance if k not in known)
        return f"{prefix}{extra[0] if extra else '?'}: not allowed"
    where = path or "(top level)"
    if error.validator == "type":
        return f"{where}: must be {' or '.join(_as_list(wanted))}"
    if error.validator == "pattern" and path.endswith("method"):
        return f"{where}: must be GET, POST, PUT, PATCH or DELETE"
    if error.validator == "enum":
        return f"{where}: must be one of {', '.join(str(v) for v in wanted)}"
    if error.validator in _BOUNDS:
        return f"{where}: must be {_BOUNDS[error.validator]} {wanted:g}"
    return f"{where}: {error.validator} {wanted!r} not met"


#: how a numeric bound of the schema reads in an error
_BOUNDS = {
    "minimum": "at least",
    "exclusiveMinimum": "more than",
    "maximum": "at most",
    "exclusiveMaximum": "less than",
}


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def validation_errors(config: Any) -> list[str]:
    """Every problem of a configuration, one line each, in document order; empty when it is valid."""
    errors = sorted(_validator().iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    found = [_describe(e) for e in errors]
    if not found:
        found = _semantic_errors(config)
    return found


def _semantic_errors(config: JsonDict) -> list[str]:
    """What the schema cannot say: a marker the marker search can find, distinct step names."""
    problems: list[str] = []
    operations: JsonDict = config.get("operations") or {}
    for create, search in (("createCallLog", "findCallLog"), ("createMessageLog", "findMessageLog")):
        if search in operations:
            if create not in operations:
                problems.append(f"operations.{search}: needs operations.{create}")
            elif "marker" not in template_names(operations[create]):
                problems.append(f"operations.{create}: must write {{{{marker}}}} for operations.{search}")
    for op_name, op in operations.items():
        names = [s.get("name") for s in op.get("steps", []) if s.get("name")]
        if len(names) != len(set(names)):
            problems.append(f"operations.{op_name}.steps: step names repeat")
    problems.extend(secret_host_errors(config))
    return problems


def _no_constant(name: str) -> Any:
    """`NaN` and `Infinity` are not JSON (Python's reader takes them; a NaN would pass every numeric bound)."""
    raise ValueError(f"{name} is not JSON")


def load_file(path: Path) -> JsonDict:
    """One configuration file, read and validated; raises :class:`ConfigError` with the first problem."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path.name}: larger than {MAX_CONFIG_BYTES} bytes")
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path.name}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        config = json.loads(raw, parse_constant=_no_constant)
    except ValueError as exc:
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ConfigError(f"{path.name}: not JSON ({where})") from None
    errors = validation_errors(config)
    if not errors:
        errors = _name_platform(config, path)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{path.name}: {errors[0]}{more}")
    loaded: JsonDict = config
    return loaded


def _name_platform(config: JsonDict, path: Path) -> list[str]:
    """Fill what the reference lets a configuration leave out: `meta.name` (its Developer Console leaves it
    blank, a proxy id names the connector there) becomes the file's name, `operations` an empty set. The name
    is the platform the client asks for, so it must be one."""
    meta: JsonDict = config.setdefault("meta", {})
    config.setdefault("operations", {})
    if meta.get("name"):
        if not _PLATFORM_NAME.match(meta["name"]):
            return ["meta.name: must be a letter then letters or digits (at most 40)"]
        return []
    if not _PLATFORM_NAME.match(path.stem):
        return [
            "meta.name: blank, and the file's name is not a platform name (a letter then letters or digits)"
        ]
    meta["name"] = path.stem
    return []


def config_files(setting: str) -> list[Path]:
    """The files a setting names: comma-separated files or folders (a folder: its `*.json` files, sorted)."""
    files: list[Path] = []
    for part in (p.strip() for p in setting.split(",")):
        if not part:
            continue
        path = Path(part).expanduser()
        if path.is_dir():
            files.extend(sorted(path.glob("*.json")))
        elif path.exists():
            files.append(path)
        else:
            raise ConfigError(f"{path.name}: no such file or folder")
    return files


def load_all(setting: str) -> list[JsonDict]:
    """Every configuration a setting names, validated; two with one `meta.name` are refused."""
    configs: list[JsonDict] = []
    seen: dict[str, str] = {}
    for path in config_files(setting):
        config = load_file(path)
        name = config["meta"]["name"]
        if name in seen:
            raise ConfigError(f"{path.name}: meta.name {name!r} is also the name in {seen[name]}")
        seen[name] = path.name
        configs.append(config)
    return configs
