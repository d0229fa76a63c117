"""Frozen config dataclasses to and from plain dicts (JSON sidecars, TOML tables, checkpoints),
refusing unknown keys, and their values checked field by field (`check_settings`, `refuse_non_finite`,
`refuse_out_of_range`)."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import types
import typing
from collections.abc import Callable, Collection
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound="DictConfig")


def dataclass_from_dict(cls: type[T], data: dict[str, Any], label: str, typed: bool = False) -> T:
    """``cls(**data)``; missing keys take the defaults, unknown keys raise ValueError naming them
    (``label`` says whose keys, e.g. "encoder config"). typed: also refuse a value its field's
    annotation does not allow (`check_types`)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {label} keys {unknown}; known: {sorted(known)}")
    if typed:
        check_types(cls, data, label)
    return cls(**data)


def check_types(cls: type, data: dict[str, Any], label: str) -> None:
    """ValueError naming the first value of ``data`` that its field's annotation in ``cls`` does not
    allow, e.g. "[data] crop = 64.5: expected an integer".

    A file's values otherwise reach the dataclass as written: ``crop = 64.5`` or ``crop = true``
    only failed (with a traceback) once training had started. int takes no bool (Python's bool is
    an int) and no float; float also takes an int; tuple and list take a list or tuple of their
    element types; a Literal takes its values; an Optional field also takes None; Any takes
    everything. Keys that are not fields (unknown keys, or records kept beside the fields, such as
    a training recipe's weights records in [model]) are left to the caller.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # not ClassVars such as DictConfig.LABEL
    for key, value in data.items():
        if key in fields and not _allows(hints[key], value):
            raise ValueError(f"{label} {key} = {json.dumps(value, default=str)}: expected {_expected(hints[key])}")


def _allows(hint: Any, value: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin is typing.Literal:  # the type too: True == 1 would let `true` through for a 1
        return any(type(value) is type(arg) and value == arg for arg in args)
    if origin in (typing.Union, types.UnionType):
        return any(_allows(arg, value) for arg in args)
    if hint in (int, float):
        return isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is list or args[-1:] == (Ellipsis,):
            return all(_allows(args[0], v) for v in value)
        return len(value) == len(args) and all(_allows(arg, v) for arg, v in zip(args, value))
    if origin is dict:
        return isinstance(value, dict) and all(_allows(args[0], k) and _allows(args[1], v) for k, v in value.items())
    return isinstance(value, hint)  # str, bool, a nested dataclass


_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"), str: ("a string", "strings"),
          bool: ("true or false", "booleans")}


def _expected(hint: Any, plural: bool = False) -> str:
    """``hint`` in the words of a TOML file's author: "a list of 2 numbers", "a table of strings"."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " or ".join(json.dumps(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        words = " or ".join(_expected(arg, plural) for arg in args if arg is not type(None))
        return f"{words} (or left out)" if type(None) in args else words
    if origin in (tuple, list):
        if origin is list or args[-1:] == (Ellipsis,):
            return f"a list of {_expected(args[0], plural=True)}"
        if len(set(args)) == 1:
            return f"a list of {len(args)} {_expected(args[0], plural=True)}"
        return f"a list [{', '.join(_expected(arg) for arg in args)}]"
    if origin is dict:
        return "a table" if args[1] is Any else f"a table of {_expected(args[1], plural=True)}"
    if hint in _NAMES:
        return _NAMES[hint][plural]
    return f"{hint.__name__} values" if plural else f"a {hint.__name__}"


def check_settings(kind: str, settings: object, rules: dict[str, tuple[str, bool]]) -> None:
    """ValueError naming every field of ``settings`` whose rule (name -> (what it must be, whether
    it is)) fails, with its value: "invalid DCF settings: lam must be positive, got 0.0"; a repr of
    the whole dataclass left the user to find which of a dozen fields (`--set NAME=VALUE`) was wrong."""
    bad = [f"{name} must be {rule}, got {getattr(settings, name)}" for name, (rule, ok) in rules.items() if not ok]
    if bad:
        raise ValueError(f"invalid {kind} settings: {'; '.join(bad)}")


def python_number(value: Any) -> Any:
    """A NumPy scalar (``np.int32(3)``, ``np.float32(0.05)``, as computed values come) as Python's own
    number; anything else as it is. Kept as NumPy's, ``n_previous=np.int32(3)`` failed at the first frame
    ("an integer is required"), an ``np.float32`` NaN passed `refuse_non_finite` (it is no ``float``),
    and a results' record holding one could not be written as JSON."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def python_numbers(config: object) -> None:
    """Every field of the dataclass ``config`` (frozen or not) that holds a NumPy scalar made Python's
    own number, in place (`python_number`): for a ``__post_init__``, before its checks."""
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, field.name)
        if (number := python_number(value)) is not value:
            object.__setattr__(config, field.name, number)


def refuse_non_finite(config: object, label: str | None = None) -> None:
    """ValueError naming the first float field of the dataclass ``config`` (or float in a tuple or
    list field) that is NaN or infinite: "UVCConfig temperature = nan: expected a finite number".
    ``label``: how the config's other errors name it ("[optim]", "stage 'joint':"; default: its
    class name). The configs' range checks are comparisons, which NaN passes: a config built in code
    with ``temperature=float("nan")`` trained to a NaN loss and went into run.json as invalid JSON
    (recipe files refuse such values when read, `recipe_files._refuse_non_finite`)."""
    for field in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, field.name)
        items = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise ValueError(f"{label or type(config).__name__} {field.name} = {plain(value)}: "
                             "expected a finite number")


# A value rule: (what a value must be, in the words of "expected ...", and the test). One definition
# for the command line's argparse types (`vidcorr.cli.common.positive_int`, ...) and the settings
# built in Python (`TopKConfig`, the preset), so that both accept the same values.
Rule = tuple[str, Callable[[Any], bool]]


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


POSITIVE_INTEGER: Rule = ("a positive integer", lambda v: _is_integer(v) and v >= 1)
NON_NEGATIVE_INTEGER: Rule = ("an integer >= 0", lambda v: _is_integer(v) and v >= 0)
POSITIVE_NUMBER: Rule = ("a positive number", lambda v: _is_number(v) and v > 0)
NON_NEGATIVE_NUMBER: Rule = ("a number >= 0", lambda v: _is_number(v) and v >= 0)
BELOW_ONE_FROM_ZERO: Rule = ("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1)


def or_none(rule: Rule) -> Rule:
    """``rule``, or None (a field whose None means "not used": no local window, no multiple)."""
    what, ok = rule
    return f"{what} or None", lambda v: v is None or ok(v)


def one_of(choices: Collection[Any]) -> Rule:
    """One of ``choices`` (a Literal field's values: `typing.get_args`)."""
    return " or ".join(repr(c) for c in choices), lambda v: any(v == c and type(v) is type(c) for c in choices)


def refuse_out_of_range(config: object, rules: dict[str, Rule], label: str | None = None) -> None:
    """ValueError naming the first field of ``config`` (name -> `Rule`) outside its rule, in the
    command line's words: "TopKConfig temperature: expected a positive number, got 0" (argparse:
    "argument --temperature: expected a positive number, got 0"). ``label``: default the class name."""
    for name, rule in rules.items():
        refuse_argument(label or type(config).__name__, name, getattr(config, name), rule)


def refuse_argument(function: str, name: str, value: Any, rule: Rule) -> None:
    """ValueError naming a function's (or a config's) argument outside its rule: "dense_topk
    temperature: expected a positive number, got 0"."""
    what, ok = rule
    if not ok(value):
        raise ValueError(f"{function} {name}: expected {what}, got {value!r}")


def plain(value: Any) -> Any:
    """Nested dicts, lists and tuples as dicts and lists: what JSON, TOML and ``weights_only``
    checkpoints hold."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class DictConfig:
    """Mixin for a frozen config dataclass: `to_dict` gives plain containers (tuples as lists) and
    `from_dict` is its inverse. ``LABEL`` names the config in errors ("unknown UVC config keys")."""

    LABEL: ClassVar[str] = "config"

    def to_dict(self) -> dict[str, Any]:
        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Missing keys take the defaults, unknown keys raise ValueError naming them."""
        return dataclass_from_dict(cls, data, cls.LABEL)
