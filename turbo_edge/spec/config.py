"""Versioned dataclass configs: validated on construction, round-trip through JSON, written beside artifacts.

A config may nest others (``DistillConfig.loop`` is a ``TrainLoop``); nested configs serialise as nested JSON
objects, as torchao's configs do. Each field can carry command-line metadata (``opt(help=..., choices=...)``);
``turbo_edge.cli`` builds every subcommand's flags from it, so a flag cannot drift from the field it sets.
Keys address fields flat (``steps``) where the name is unique in the tree, or dotted (``loop.steps``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shlex
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="StageConfig")
_MISSING = object()


def opt(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING, help: str = "",
        choices: tuple[Any, ...] | None = None, flag: str | None = None, positional: bool = False,
        negative: str | None = None, parse: Callable[[str], Any] | None = None, append: bool = False,
        cli: bool = True) -> Any:
    """A config field with command-line metadata.

    ``flag``: the option's name (default ``--field-name``); ``positional``: a positional argument;
    ``negative``: an extra flag that sets a bool field False (``--freeze-text-encoder``); ``parse``: the text ->
    value function of one occurrence (``append``: repeatable, values collected in a list); ``cli=False``: the
    field is settable with ``--set`` / ``--config`` only.
    """
    meta = {"help": help, "choices": choices, "flag": flag, "positional": positional, "negative": negative,
            "parse": parse, "append": append, "cli": cli}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def is_config(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, StageConfig)


# Ranges every config field of that name is held to, whatever the stage (a stage's ``__post_init__`` adds its own):
# name (or ``*_suffix``) -> (low, high, low excluded). Checked with the types, before any stage code runs.
RANGES: dict[str, tuple[float, float, bool] | None] = {
    "threads": (0, 4096, False),
    "lr": (0.0, 1.0, True),
    "*_lr": (0.0, 1.0, True),
    "grad_clip": (0.0, 1e6, True),
    "steps": (0, 10**9, False),
    "*_steps": (0, 10**9, False),
    "batch": (1, 1 << 16, False),
    "batch_size": (1, 1 << 16, False),
    "*_batch": (1, 1 << 16, False),
    "max_batch": None,  # the stages bound their own (serve: rows per request; export: the bundle's profile)
    "num": (0, 10**9, False),
    "*_every": (1, 10**9, False),
}
_INT_BOUND = 2**63  # JSON integers are unbounded; every consumer (torch, numpy, Triton) stops at int64


def _range_of(name: str) -> tuple[float, float, bool] | None:
    if name in RANGES:
        return RANGES[name]
    return next((r for key, r in RANGES.items() if key.startswith("*") and name.endswith(key[1:])), None)


def _scalar_kinds(tp: Any) -> tuple[tuple[type, ...], bool] | None:
    """The scalar types a hint allows and whether None is allowed; None for non-scalar hints (lists, dicts...)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = typing.get_args(tp)
    else:
        args = (tp,)
    optional = type(None) in args
    kinds = tuple(a for a in args if a is not type(None))
    if not kinds or any(k not in (int, float, str, bool) for k in kinds):
        return None
    return kinds, optional


def check_value(name: str, value: Any, tp: Any) -> None:
    """``ValueError`` naming ``name`` unless ``value`` has the field's type (a bool is not an int, an int is a float,
    floats are finite) and lies in its ``RANGES`` entry."""
    spec = _scalar_kinds(tp)
    if spec is None:
        return
    kinds, optional = spec
    if name == "seed" and value is not None and int in kinds:  # one rule for seeds everywhere, with its own message
        from turbo_edge.spec.inputs import check_seed

        check_seed(value)
        return
    if value is None:
        if optional:
            return
        raise ValueError(f"{name} must be {_kind_words(kinds)}, got null")
    if bool in kinds and isinstance(value, bool):
        return
    ok = (str in kinds and isinstance(value, str)) or (
        not isinstance(value, bool) and ((int in kinds and isinstance(value, int)) or (float in kinds and isinstance(value, (int, float)))))
    if not ok:
        raise ValueError(f"{name} must be {_kind_words(kinds)}, got {json.dumps(value) if _jsonable(value) else repr(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if isinstance(value, int) and not -_INT_BOUND < value < _INT_BOUND:
        raise ValueError(f"{name} must fit in 64 bits, got {value}")
    bounds = _range_of(name) if isinstance(value, (int, float)) else None
    if bounds is not None:
        low, high, open_low = bounds
        if value < low or (open_low and value == low) or value > high:
            raise ValueError(f"{name} must be in {'(' if open_low else '['}{low:g}, {high:g}], got {value:g}")


def _kind_words(kinds: tuple[type, ...]) -> str:
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if float in kinds:
        kinds = tuple(k for k in kinds if k is not int)
    return " or ".join(words[k] for k in kinds)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_fields(config: StageConfig) -> None:
    """Every scalar field of ``config`` checked by type and range (``check_value``); runs before the stage's own
    ``__post_init__``, so no stage code ever sees a NaN, a bool as a count or a string as a number."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        check_value(f.name, getattr(config, f.name), hints.get(f.name))


@dataclasses.dataclass
class StageConfig:
    """Base for every stage's config. Subclasses set ``KIND`` and validate in ``__post_init__``.

    ``MIGRATIONS[v]`` turns a version-``v`` dict into a version-``v + 1`` dict, so configs recorded by earlier
    builds (in model cards, run directories) still load.
    """

    KIND: typing.ClassVar[str] = "stage"
    VERSION: typing.ClassVar[int] = 1
    MIGRATIONS: typing.ClassVar[dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}

    def __post_init__(self) -> None:
        check_fields(self)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A subclass's own ``__post_init__`` runs after the type and range checks (``check_fields``)."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__post_init__")
        if own is not None and not getattr(own, "_checked", False):
            @functools.wraps(own)
            def post_init(self: StageConfig) -> None:
                check_fields(self)
                own(self)

            post_init._checked = True  # type: ignore[attr-defined]
            cls.__post_init__ = post_init  # type: ignore[method-assign]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "version": self.VERSION, **self.fields_dict()}

    def fields_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.fields_dict() if isinstance(value, StageConfig) else _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise ValueError(f"a {cls.KIND} config is a JSON object, got {type(data).__name__}")
        data = dict(data)
        kind, version = data.pop("kind", cls.KIND), data.pop("version", cls.VERSION)
        if kind != cls.KIND:
            raise ValueError(f"config is for stage {kind!r}, expected {cls.KIND!r}")
        if not isinstance(version, int) or not 1 <= version <= cls.VERSION or any(v not in cls.MIGRATIONS for v in range(version, cls.VERSION)):
            raise ValueError(f"{cls.KIND} config version {version} is not supported (this build reads {cls.VERSION})")
        for v in range(version, cls.VERSION):
            data = cls.MIGRATIONS[v](data)
        return cls.from_fields(data)

    @classmethod
    def from_fields(cls: type[T], data: dict[str, Any]) -> T:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.KIND} config keys {unknown}; valid keys: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        values = dict(data)
        for key, value in data.items():
            tp = hints.get(key)
            if is_config(tp) and isinstance(value, dict):
                values[key] = tp.from_fields(value)
            elif isinstance(value, list) and "tuple" in str(tp):  # JSON has no tuples
                values[key] = tuple(value)
        return cls(**values)

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def make(cls: type[T], **fields: Any) -> T:
        """Build from flat or dotted keys (``DistillConfig.make(steps=5)`` sets ``loop.steps``); the rest are defaults."""
        data: dict[str, Any] = {}
        for key, value in fields.items():
            set_path(data, resolve_key(cls, key), value.fields_dict() if isinstance(value, StageConfig) else value)
        return cls.from_fields(data)

    def replace(self: T, **changes: Any) -> T:
        """A copy with fields changed; flat or dotted keys reach nested configs (``steps`` or ``loop.steps``)."""
        data = self.fields_dict()
        for key, value in changes.items():
            set_path(data, resolve_key(type(self), key), value.fields_dict() if isinstance(value, StageConfig) else value)
        return type(self).from_fields(data)

    def overrides(self) -> dict[str, Any]:
        """The leaf fields that differ from the class defaults, by dotted key, as JSON values."""
        keys = leaf_fields(type(self))
        try:
            base = type(self)().fields_dict()
            default = {k: get_path(base, k) for k in keys}
        except (TypeError, ValueError):  # a config without a valid default instance: every field is carried
            default = {}
        mine = self.fields_dict()
        return {k: get_path(mine, k) for k in keys if default.get(k, _MISSING) != get_path(mine, k)}

    def command_line(self, command: str, first: tuple[str, ...] = ()) -> str:
        """A runnable ``turbo-edge COMMAND --set key=value ...`` that rebuilds exactly this config from its defaults.

        Unlike ``--config run/x_config.json`` it needs no file from the run directory, so it works on a fresh
        clone. Keys are written flat where that is unambiguous. ``first`` names fields to put first.
        """
        items = {short_key(type(self), k): v for k, v in self.overrides().items()}
        keys = [k for k in first if k in items] + [k for k in items if k not in first]
        parts = ["turbo-edge", command] + [f"--set {shlex.quote(k + '=' + json.dumps(items[k], separators=(',', ':')))}" for k in keys]
        return " ".join(parts)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def leaf_fields(cls: type[StageConfig], prefix: str = "") -> dict[str, tuple[dataclasses.Field, Any]]:
    """Every leaf field of ``cls`` (nested configs expanded) by dotted key: (field, its type hint)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[dataclasses.Field, Any]] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if is_config(tp):
            out.update(leaf_fields(tp, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (f, tp)
    return out


def resolve_key(cls: type[StageConfig], key: str) -> str:
    """The dotted key a flat or dotted ``key`` names in ``cls``; ``ValueError`` naming the valid keys otherwise."""
    leaves = leaf_fields(cls)
    if key in leaves:
        return key
    matches = [k for k in leaves if k.rsplit(".", 1)[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ValueError(f"{key!r} is ambiguous in a {cls.KIND} config: say one of {matches}")
    raise ValueError(f"--set {key}: not a {cls.KIND} config key; valid keys: {sorted(short_key(cls, k) for k in leaves)}")


def short_key(cls: type[StageConfig], dotted: str) -> str:
    """``loop.steps`` -> ``steps`` where no other leaf shares the name."""
    leaf = dotted.rsplit(".", 1)[-1]
    return leaf if sum(k.rsplit(".", 1)[-1] == leaf for k in leaf_fields(cls)) == 1 else dotted


def get_path(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for p in parents:
        data = data.setdefault(p, {})
    data[leaf] = value


def parse_set(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` from ``--set``: VALUE is JSON (numbers, lists, objects, true/false/null), else a plain string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set takes KEY=VALUE (VALUE as JSON or a plain string), got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def move_into(name: str, keys: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A migration that moves flat ``keys`` of an older config into the nested config ``name``."""
    def migrate(data: dict[str, Any]) -> dict[str, Any]:
        data = dict(data)
        inner = dict(data.get(name) or {})
        for k in keys:
            if k in data:
                inner[k] = data.pop(k)
        data[name] = inner
        return data

    return migrate
