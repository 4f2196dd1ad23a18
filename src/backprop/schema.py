"""Settings classes: each field carries its constraint, and a broken one is named in one line.

A settings class is a frozen pydantic dataclass in strict mode: a value of the wrong
type is refused rather than converted (``True`` is no learning rate), and an unknown
keyword is an error.  The constraint sits next to the field as an ``annotated-types``
marker, the way scikit-learn declares ``_parameter_constraints``::

    @settings
    class AdamConfig(OptimConfig):
        beta1: Annotated[float, Interval(ge=0, lt=1)] = 0.9

and the same marker writes the rule into the error, which names the key and quotes
the value: ``beta1 must be a number in [0, 1), got 1.5`` (a :class:`ConfigError`).

Fields annotated with :data:`RUN_OPTION` say how a run is carried out, not what it
computes (``train.resume``); :func:`identity` leaves them out of cache and
checkpoint keys.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

import pydantic
import pydantic.dataclasses
from annotated_types import Ge, Gt, Interval, Le, Lt, MinLen

from backprop.errors import ConfigError

T = TypeVar("T")

STRICT = pydantic.ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class OneOf:
    """The value must name an entry of ``table`` (a dict that modules may add to)."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.table = table

    def __call__(self, value: str) -> str:
        if value not in self.table:
            raise ValueError(f"must be {self}")
        return value

    def __str__(self) -> str:
        return "one of " + ", ".join(self.table)


def choice(table: Mapping[str, Any]) -> Any:
    """``Annotated[str, choice(TABLE)]``: a name from ``table``."""
    return pydantic.AfterValidator(OneOf(table))


class Rule:
    """A rule in words, for a constraint no marker can say (``a non-empty name``)."""

    def __init__(self, text: str, check: Callable[[Any], bool]) -> None:
        self.text, self.check = text, check

    def __call__(self, value: Any) -> Any:
        if not self.check(value):
            raise ValueError(f"must be {self.text}")
        return value


def rule(text: str, check: Callable[[Any], bool]) -> Any:
    return pydantic.AfterValidator(Rule(text, check))


class _RunOption:
    """Marks a field that says how a run is carried out, not what it computes."""


RUN_OPTION = _RunOption()

NonEmptyName = Annotated[str, rule("a non-empty name", lambda v: v.strip() != "")]


def settings(cls: type[T]) -> type[T]:
    """Make ``cls`` a strict, frozen pydantic dataclass whose errors are one-line ConfigErrors."""
    cls = pydantic.dataclasses.dataclass(frozen=True, config=STRICT)(cls)
    validated_init = cls.__init__

    @functools.wraps(validated_init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            validated_init(self, *args, **kwargs)
        except pydantic.ValidationError as err:
            raise _config_error(type(self), err, kwargs) from None

    cls.__init__ = __init__
    return cls


def build(cls: type[T], values: Mapping[str, Any] | None) -> T:
    """``cls(**values)``, refusing a mapping that is not one."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(f"must be a mapping of settings, got {values!r}")
    return cls(**{str(k): v for k, v in values.items()})


def identity(value: Any) -> Any:
    """The settings as plain data, without run options: what cache keys are made of."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = typing.get_type_hints(type(value), include_extras=True)
        return {
            f.name: identity(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if RUN_OPTION not in _markers(hints[f.name])
        }
    if isinstance(value, list | tuple):
        return [identity(v) for v in value]
    return value


def keys_of(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def describe(annotation: Any) -> str:
    """The rule of a field's annotation in words: ``a number in [0, 1)``, ``an integer >= 1``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return describe(inner[0]) + " or null"
    base, markers = annotation, []
    if typing.get_origin(annotation) is Annotated:
        base, *markers = args
    for marker in markers:
        words = getattr(marker, "func", None)
        if isinstance(words, OneOf | Rule):
            return str(words) if isinstance(words, OneOf) else words.text
    if typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        empty = (
            "non-empty "
            if any(isinstance(m, MinLen) and m.min_length >= 1 for m in markers)
            else ""
        )
        return f"a {empty}list of {_plural(describe(item))}"
    if base is bool:
        return "true or false"
    noun = {int: "an integer", float: "a number", str: "a text"}.get(
        base, getattr(base, "__name__", str(base))
    )
    bounds = _bounds(markers)
    return f"{noun}{bounds}"


def _bounds(markers: list[Any]) -> str:
    lower = upper = None
    for m in markers:
        if isinstance(m, Interval):
            lower = ("[", m.ge) if m.ge is not None else ("(", m.gt) if m.gt is not None else lower
            upper = ("]", m.le) if m.le is not None else (")", m.lt) if m.lt is not None else upper
        elif isinstance(m, Ge):
            lower = ("[", m.ge)
        elif isinstance(m, Gt):
            lower = ("(", m.gt)
        elif isinstance(m, Le):
            upper = ("]", m.le)
        elif isinstance(m, Lt):
            upper = (")", m.lt)
    if lower and upper:
        return f" in {lower[0]}{lower[1]:g}, {upper[1]:g}{upper[0]}"
    if lower:
        return f" {'>=' if lower[0] == '[' else '>'} {lower[1]:g}"
    if upper:
        return f" {'<=' if upper[0] == ']' else '<'} {upper[1]:g}"
    return ""


def _plural(text: str) -> str:
    """``an integer >= 1`` -> ``integers >= 1``."""
    noun, _, rest = text.removeprefix("an ").removeprefix("a ").partition(" ")
    return f"{noun}s {rest}".rstrip()


def _base(annotation: Any) -> Any:
    if typing.get_origin(annotation) is Annotated:
        return typing.get_args(annotation)[0]
    return annotation


def _markers(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Annotated:
        return list(typing.get_args(annotation)[1:])
    return []


def _config_error(
    cls: type, err: pydantic.ValidationError, given: Mapping[str, Any]
) -> ConfigError:
    first = err.errors(include_url=False)[0]
    loc = first["loc"]
    name = str(loc[0]) if loc else ""
    if first["type"] == "unexpected_keyword_argument":
        keys = ", ".join(keys_of(cls))
        return ConfigError(f"unknown key {{key}}; the keys of {{section}} are {keys}", name)
    hints = typing.get_type_hints(cls, include_extras=True)
    if name not in hints:  # positional arguments and the like: pydantic's own words
        return ConfigError(first["msg"])
    value = given.get(name, first.get("input"))
    if _base(hints[name]) is float and type(value) is int:
        value = float(value)  # as it would be stored: -1 is the number -1.0
    return ConfigError(f"must be {describe(hints[name])}, got {value!r}", name)
