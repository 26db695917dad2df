"""Every name a YAML file may use, mapped to the code that builds it.

One registry per component kind. Components register beside their definition with
``@models.register("name")``; this module imports those definitions lazily so that a lookup
always sees every built-in component. Every component block in a YAML has one shape:
``{name: <registry key>, ...keyword arguments of the builder}``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bertforge.config.validate import check_kwargs
from bertforge.errors import ConfigError, did_you_mean, join_key

_BUILTIN_MODULES = (
    "bertforge.models.hf_bert",
    "bertforge.models.flexbert.build",
    "bertforge.models.m2.build",
    "bertforge.models.hf_classifier",
    "bertforge.optim.optimizers",
    "bertforge.optim.schedulers",
    "bertforge.callbacks.builtin",
    "bertforge.callbacks.batch_warmup",
    "bertforge.callbacks.throughput",
    "bertforge.callbacks.loggers",
)


@dataclass(frozen=True)
class Entry:
    """One registered component: its builder, the context arguments it takes first, and a summary."""

    builder: Callable[..., Any]
    context: tuple[str, ...]
    description: str


class Registry:
    """A named map from YAML names to builders of one component kind."""

    def __init__(self, kind: str, description: str, context: tuple[str, ...] = ()):
        self.kind = kind
        self.description = description
        self.context = context
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str = "") -> Callable:
        """Decorator: register ``builder`` under ``name`` (its docstring is the default description)."""

        def wrap(builder: Callable) -> Callable:
            if name in self._entries and self._entries[name].builder is not builder:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            doc = description or (builder.__doc__ or "").strip().split("\n")[0]
            self._entries[name] = Entry(builder, self.context, doc)
            return builder

        return wrap

    def names(self) -> list[str]:
        """All registered names, sorted."""
        _load_builtins()
        return sorted(self._entries)

    def get(self, name: str, key: str = "name") -> Entry:
        """The entry for ``name``; an unknown name fails naming ``key`` and the valid choices."""
        _load_builtins()
        if name not in self._entries:
            raise ConfigError(
                key,
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"choose one of {', '.join(self.names())}",
            )
        return self._entries[name]

    def validate(self, spec: dict, key: str) -> dict:
        """Check a ``{name: ..., **kwargs}`` block without building it; return the checked kwargs."""
        if not isinstance(spec, dict) or "name" not in spec:
            raise ConfigError(key, f"expected a block with a 'name' key naming a {self.kind}")
        kwargs = {k: v for k, v in spec.items() if k != "name"}
        entry = self.get(spec["name"], join_key(key, "name"))
        return check_kwargs(entry.builder, kwargs, key, skip=entry.context)

    def build(self, spec: dict, key: str, *context: Any, transform: Callable[[dict], dict] | None = None) -> Any:
        """Validate ``spec`` and call its builder with the context arguments and the YAML kwargs.

        ``transform`` (e.g. path expansion) sees the kwargs with the builder's defaults filled in.
        """
        kwargs = self.validate(spec, key)
        builder = self.get(spec["name"]).builder
        if transform is not None:
            bound = inspect.signature(builder).bind_partial(*context, **kwargs)
            bound.apply_defaults()
            kwargs = transform({k: v for k, v in bound.arguments.items() if k not in self.context})
        return builder(*context, **kwargs)


models = Registry("model", "encoder + task head as a ComposerModel", context=("tokenizer",))
classifiers = Registry(
    "classifier", "encoder + sequence classification/regression head as a ComposerModel",
    context=("tokenizer", "num_labels"),
)
optimizers = Registry("optimizer", "torch optimizers", context=("params",))
schedulers = Registry("scheduler", "Composer learning-rate schedules")
callbacks = Registry("callback", "Composer callbacks")
loggers = Registry("logger", "Composer loggers")

ALL = {r.kind: r for r in (models, classifiers, optimizers, schedulers, callbacks, loggers)}

_loaded = False


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
