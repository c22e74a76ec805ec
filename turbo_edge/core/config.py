"""Versioned dataclass configs: validated on construction, round-trip through JSON, written beside artifacts."""

from __future__ import annotations

import dataclasses
import json
import shlex
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T", bound="StageConfig")


@dataclasses.dataclass
class StageConfig:
    """Base for every stage's config. Subclasses set ``KIND`` and validate in ``__post_init__``."""

    KIND: typing.ClassVar[str] = "stage"
    VERSION: typing.ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "version": self.VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        data = dict(data)
        kind, version = data.pop("kind", cls.KIND), data.pop("version", cls.VERSION)
        if kind != cls.KIND:
            raise ValueError(f"config is for stage {kind!r}, expected {cls.KIND!r}")
        if version != cls.VERSION:
            raise ValueError(f"{cls.KIND} config version {version} is not supported (this build reads {cls.VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown {cls.KIND} config keys {unknown}; valid keys: {sorted(names)}")
        hints = typing.get_type_hints(cls)
        for key, value in data.items():  # JSON has no tuples
            if isinstance(value, list) and "tuple" in str(hints.get(key, "")):
                data[key] = tuple(value)
        return cls(**data)

    @classmethod
    def load(cls: type[T], path: str | Path) -> T:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    def overrides(self) -> dict[str, Any]:
        """The fields that differ from the class defaults, as JSON values (what a command line must carry)."""
        try:
            default = type(self)().to_dict()
        except (TypeError, ValueError):  # a config without a valid default instance: every field is carried
            default = {}
        return {k: v for k, v in self.to_dict().items() if k not in ("kind", "version") and default.get(k, _MISSING) != v}

    def command_line(self, command: str, first: tuple[str, ...] = ()) -> str:
        """A runnable ``turbo-edge COMMAND --set key=value ...`` that rebuilds exactly this config from its defaults.

        Unlike ``--config run/x_config.json`` it needs no file from the run directory, so it works on a fresh
        clone. ``first`` names fields to put first (for readability, e.g. ``("teacher", "out")``).
        """
        items = self.overrides()
        keys = [k for k in first if k in items] + [k for k in items if k not in first]
        parts = ["turbo-edge", command] + [f"--set {shlex.quote(k + '=' + json.dumps(items[k], separators=(',', ':')))}" for k in keys]
        return " ".join(parts)


_MISSING = object()


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
