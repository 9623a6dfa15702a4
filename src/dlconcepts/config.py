"""Lab configs: dataclasses whose fields carry their own help text and limits.

A lab's config is resolved in this order, each step overriding the one before:
defaults -> quick-mode overrides -> a TOML file (`--config`) -> `--set key=value` pairs.
A lab may put one more layer right after the defaults: defaults that depend on the config itself
(`Lab.defaults_for`, e.g. PPO settings chosen by an environment's action space; see
`labs.runner.resolve_config`). Every value is checked against the field's type and limits; a mistake is a
`ConfigError` whose message names the key, the accepted values and the closest key when it was misspelled.
A field typed `float | None` also takes `none` (`--set target=none`): no value.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dlconcepts.errors import ConfigError, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


def param(
    default: Any,
    help: str,
    *,
    positive: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Sequence[Any] | None = None,
) -> Any:
    """A config field with its one-line help and the limits its values must respect."""
    meta = {"help": help, "positive": positive, "minimum": minimum, "maximum": maximum, "choices": choices}
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class FieldInfo:
    name: str
    type: Any
    default: Any
    help: str
    positive: bool
    minimum: float | None
    maximum: float | None
    choices: Sequence[Any] | None

    def accepted(self) -> str:
        """The accepted values, in words, for error messages and `--help`."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        kind = _type_words(self.type)
        limits = []
        if self.positive:
            limits.append("> 0")
        if self.minimum is not None:
            limits.append(f">= {self.minimum:g}")
        if self.maximum is not None:
            limits.append(f"<= {self.maximum:g}")
        return kind + (" " + " and ".join(limits) if limits else "")


def fields_of(config_cls: type) -> list[FieldInfo]:
    hints = typing.get_type_hints(config_cls)
    infos = []
    for f in dataclasses.fields(config_cls):
        m = f.metadata
        infos.append(
            FieldInfo(
                name=f.name,
                type=hints[f.name],
                default=f.default,
                help=m.get("help", ""),
                positive=m.get("positive", False),
                minimum=m.get("minimum"),
                maximum=m.get("maximum"),
                choices=m.get("choices"),
            )
        )
    return infos


def _optional(tp: Any) -> Any:
    """The X of a field typed `X | None`, else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return next(a for a in args if a is not type(None))
    return None


def _type_words(tp: Any) -> str:
    inner = _optional(tp)
    if inner is not None:
        return f"{_type_words(inner)} or none"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin = typing.get_origin(tp)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        return f"a comma-separated list of {'integers' if inner is int else 'numbers'}"
    return str(tp)


def _parse_scalar(tp: Any, text: str) -> Any:
    text = text.strip()
    if tp is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ValueError
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    raise ValueError


def parse_text(info: FieldInfo, text: str) -> Any:
    """Turn the text of `--set key=text` into a value of the field's type."""
    tp = _optional(info.type) or info.type
    if tp is not info.type and text.strip().lower() in ("none", "null"):
        return None
    try:
        if typing.get_origin(tp) is tuple:
            inner = typing.get_args(tp)[0]
            parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
            return tuple(_parse_scalar(inner, p) for p in parts)
        return _parse_scalar(tp, text)
    except ValueError:
        raise ConfigError(
            f"{info.name}={text!r} is not {_type_words(info.type)}; expected {info.accepted()}"
            f" (default: {_show(info.default)})"
        ) from None


def coerce(info: FieldInfo, value: Any) -> Any:
    """Check a value that already has a type (from TOML or Python) against the field's type."""
    tp = _optional(info.type) or info.type
    if tp is not info.type and value is None:
        return None
    ok: bool
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        if isinstance(value, (list, tuple)) and all(_scalar_ok(inner, v) for v in value):
            return tuple(inner(v) for v in value)
        ok = False
    else:
        ok = _scalar_ok(tp, value)
        if ok:
            return tp(value)
    raise ConfigError(
        f"{info.name}={value!r} is not {_type_words(info.type)}; expected {info.accepted()}"
        f" (default: {_show(info.default)})"
    )


def _scalar_ok(tp: Any, value: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return False


def check_limits(info: FieldInfo, value: Any) -> None:
    if value is None and _optional(info.type) is not None:
        return
    values = value if isinstance(value, tuple) else (value,)
    if isinstance(value, tuple) and not value:
        raise ConfigError(f"{info.name} is empty; expected {info.accepted()}")
    for v in values:
        problem = None
        if info.choices is not None and v not in info.choices:
            problem = f"{info.name}={_show(v)} is not accepted{did_you_mean(str(v), map(str, info.choices))}"
        elif isinstance(v, float) and not math.isfinite(v):
            problem = f"{info.name}={v} is not a finite number"
        elif info.positive and v <= 0:
            problem = f"{info.name}={_show(v)} is impossible: it must be > 0"
        elif info.minimum is not None and v < info.minimum:
            problem = f"{info.name}={_show(v)} is impossible: it must be >= {info.minimum:g}"
        elif info.maximum is not None and v > info.maximum:
            problem = f"{info.name}={_show(v)} is impossible: it must be <= {info.maximum:g}"
        if problem:
            raise ConfigError(f"{problem}; expected {info.accepted()}")


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    return str(value)


def parse_set_pairs(pairs: Sequence[str]) -> list[tuple[str, str]]:
    """`["lr=0.01", "hidden=30,15"]` -> `[("lr", "0.01"), ("hidden", "30,15")]`."""
    out = []
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r} is not key=value; write it like --set epochs=200")
        out.append((key.strip(), text))
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass the path of a .toml file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def resolve(
    config_cls: type,
    *overrides: Mapping[str, Any],
    set_pairs: Sequence[tuple[str, str]] = (),
    owner: str = "",
    check: bool = True,
) -> Any:
    """Build a config: defaults, then each mapping of typed overrides, then `--set` texts.

    `check=False` skips the config's own `check()` (keys, types and limits are still checked): a first
    resolution that only reads a key or two (`Lab.defaults_for`), before the layer it decides is added."""
    infos = {info.name: info for info in fields_of(config_cls)}
    values: dict[str, Any] = {}
    where = f" for lab '{owner}'" if owner else ""

    def lookup(key: str) -> FieldInfo:
        if key not in infos:
            raise ConfigError(
                f"unknown config key '{key}'{where}{did_you_mean(key, infos)}; "
                f"accepted keys: {', '.join(infos)}"
            )
        return infos[key]

    for mapping in overrides:
        for key, value in mapping.items():
            values[key] = coerce(lookup(key), value)
    for key, text in set_pairs:
        values[key] = parse_text(lookup(key), text)
    for key, value in values.items():
        check_limits(infos[key], value)
    config = config_cls(**values)
    whole_check = getattr(config, "check", None)
    if check and whole_check is not None:
        whole_check()
    return config


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
