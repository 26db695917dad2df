"""Turn plain dicts into typed dataclasses, rejecting unknown keys, wrong types and bad values.

Every error is a :class:`ConfigError` naming the full key path (``train_loader.dataset.local``).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

from bertforge.errors import ConfigError, did_you_mean, join_key

_MISSING = dataclasses.MISSING
# keywords transformers 5 configs still take though neither their signature nor a default's to_dict has them:
# ModernBERT's 4.x fields, which 5 turns into rope_parameters and layer_types
FOLDED_KEYWORDS = {"ModernBertConfig": ("global_rope_theta", "local_rope_theta", "global_attn_every_n_layers")}


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if get_origin(tp) in (list, dict):
        return get_origin(tp).__name__
    return getattr(tp, "__name__", str(tp))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the type annotation ``tp``; return it (converted where lossless)."""
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        non_null = [a for a in args if a is not type(None)]
        if len(non_null) == 1:  # X | None: X's own error names the inner key (e.g. eval_loader.dataset.shufle)
            return coerce(value, non_null[0], key)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise ConfigError(key, f"{value!r} is not allowed; choose one of {choices}{did_you_mean(value, allowed)}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping of {tp.__name__} keys, got {value!r}")
        return from_dict(tp, value, key)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        (item_tp,) = get_args(tp) or (Any,)
        return [coerce(v, item_tp, join_key(key, i)) for i, v in enumerate(value)]
    if origin is tuple or tp is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        return tuple(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(key, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(key, f"expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(key, f"expected {tp.__name__}, got {value!r}")
    return value


def check_fields(cls: type, data: dict, key: str = "") -> dict:
    """``data``'s keys are fields of dataclass ``cls`` and its values have their types (coerced values returned),
    without building ``cls``: for values that go on top of another config (e.g. a converted checkpoint's)."""
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for name in data:
        if name not in fields:
            raise ConfigError(
                join_key(key, name),
                f"unknown key{did_you_mean(name, fields)}; {_valid_keys(fields)}",
            )
    return {name: coerce(value, hints[name], join_key(key, name)) for name, value in data.items()}


def from_dict(cls: type, data: dict, key: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``: unknown keys, missing keys and bad types fail by name."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    check_fields(cls, data, key)
    kwargs = {}
    for name, field in fields.items():
        sub = join_key(key, name)
        if name in data:
            kwargs[name] = coerce(data[name], hints[name], sub)
        elif field.default is _MISSING and field.default_factory is _MISSING:
            raise ConfigError(sub, f"required key is missing ({_type_name(hints[name])}); add it to the YAML")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if key and not err.key.startswith(key):
            raise ConfigError(join_key(key, err.key), str(err).split(": ", 1)[-1]) from None
        raise


def check_kwargs(fn: Callable, kwargs: dict, key: str, skip: tuple[str, ...] = ()) -> dict:
    """Check ``kwargs`` against ``fn``'s signature (unknown, missing, simple types) and return them."""
    sig = inspect.signature(fn)
    params = {
        n: p
        for n, p in sig.parameters.items()
        if n not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # annotations of third-party code may not resolve; check names only
        hints = {}
    out = {}
    for name, value in kwargs.items():
        if name not in params:
            if accepts_any:
                out[name] = value
                continue
            raise ConfigError(
                join_key(key, name),
                f"unknown key{did_you_mean(name, params)}; {_valid_keys(params)}",
            )
        out[name] = coerce(value, hints.get(name, Any), join_key(key, name))
    for name, p in params.items():
        if p.default is inspect.Parameter.empty and name not in kwargs:
            raise ConfigError(join_key(key, name), "required key is missing; add it to the YAML")
    return out


def _own_dataclass(cls: type) -> bool:
    """A dataclass config of ours; transformers 5 configs are dataclasses too, but they take any keyword and their
    annotations name types only a type checker imports (``torch.dtype``), so they go the keyword path below."""
    return dataclasses.is_dataclass(cls) and not any(c.__module__.startswith("transformers.") for c in cls.__mro__)


def folded_keywords(cls: type) -> set[str]:
    """The :data:`FOLDED_KEYWORDS` of ``cls`` that are no field of it (none under transformers 4)."""
    folded = FOLDED_KEYWORDS.get(cls.__name__, ())
    return set(folded) - set(cls().to_dict()) if folded else set()


def check_config(cls: type, data: dict, key: str) -> Any:
    """Construct config class ``cls`` from ``data`` so that its own checks run; errors name ``key.<field>``.

    ``cls`` is a dataclass (checked by :func:`from_dict`) or a class such as a transformers config that
    takes any keyword: there the keys must be ``__init__`` parameters or attributes of a default
    instance, and a value must have the type of that attribute's default.
    """
    if _own_dataclass(cls):
        return from_dict(cls, data, key)
    defaults = cls()
    attrs = defaults.to_dict() if hasattr(defaults, "to_dict") else vars(defaults)
    params = inspect.signature(cls).parameters.values()
    known = {**{p.name: None for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)},
             **dict.fromkeys(folded_keywords(cls)), **attrs}
    for name, value in data.items():
        if name not in known:
            raise ConfigError(join_key(key, name), f"unknown key for {cls.__name__}{did_you_mean(name, known)}")
        default = known[name]
        if value is not None and isinstance(default, (bool, int, float, str)):
            coerce(value, type(default), join_key(key, name))
    try:
        return cls(**data)
    except (ValueError, TypeError) as err:
        raise ConfigError(key, f"{cls.__name__} rejects these values: {str(err).strip().splitlines()[0]}") from None


def _valid_keys(names) -> str:
    """The tail of an unknown-key error: the keys a block takes, or that it takes none."""
    return f"valid keys here: {', '.join(sorted(names))}" if names else "this block takes no other keys"
