"""Every name a YAML file may use, mapped to the code that builds it.

One registry per component kind. Components register beside their definition with
``@models.register("name")``; this module imports those definitions lazily so that a lookup
always sees every built-in component. Every component block in a YAML has one shape:
``{name: <registry key>, ...keyword arguments of the builder}``.

Components from outside bertforge register the same way, from a file named in the YAML's
``code_paths`` (:func:`import_code_paths`) or from an installed package's entry points in the
group ``bertforge.<kind>s`` (``bertforge.models``, ``bertforge.optimizers``, ``bertforge.collators``, ...).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bertforge.config.validate import check_config, check_kwargs
from bertforge.errors import ConfigError, UserError, did_you_mean, join_key

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
    "bertforge.callbacks.samples",
    "bertforge.data.mlm",
    "bertforge.data.mdlm",
    "bertforge.data.nsp",
    "bertforge.data.sft",
)


ConfigClass = type | Callable[[dict], type | None]
"""The class of a block's ``model_config``, or a function of the block's arguments returning it (or None)."""


@dataclass(frozen=True)
class Entry:
    """One registered component: its builder, the context arguments it takes first, a summary, and the
    class its ``model_config`` block must fit (checked by :meth:`Registry.validate`, before any work)."""

    builder: Callable[..., Any]
    context: tuple[str, ...]
    description: str
    config_class: ConfigClass | None = None


class Registry:
    """A named map from YAML names to builders of one component kind."""

    def __init__(self, kind: str, description: str, context: tuple[str, ...] = ()):
        self.kind = kind
        self.description = description
        self.context = context
        self.entry_point_group = f"bertforge.{kind}s"
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, description: str = "", config_class: ConfigClass | None = None) -> Callable:
        """Decorator: register ``builder`` under ``name`` (its docstring is the default description).

        ``config_class``: the dataclass (or transformers config class) that the block's ``model_config``
        must construct, or a function of the block's arguments (defaults filled in) that returns it.
        """

        def wrap(builder: Callable) -> Callable:
            old = self._entries.get(name)
            if old is not None and old.builder is not builder:
                raise ValueError(f"{self.kind} '{name}' is already registered by {old.builder.__module__}; "
                                 "register yours under another name")
            doc = description or (builder.__doc__ or "").strip().split("\n")[0]
            self._entries[name] = Entry(builder, self.context, doc, config_class)
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
        checked = check_kwargs(entry.builder, kwargs, key, skip=entry.context)
        if entry.config_class is not None:
            _check_model_config(entry, checked, key)
        return checked

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
collators = Registry(
    "collator", "a list of samples -> a batch dict of tensors (see bertforge.data.mlm for the interface)",
    context=("tokenizer", "mlm_probability", "deterministic"),
)

ALL = {r.kind: r for r in (models, classifiers, optimizers, schedulers, callbacks, loggers, collators)}

_loaded = False


def _check_model_config(entry: Entry, kwargs: dict, key: str) -> None:
    """Construct the entry's config class from the block's ``model_config`` (its checks run, nothing is built)."""
    config_class = entry.config_class
    if not isinstance(config_class, type):
        bound = inspect.signature(entry.builder).bind_partial(**kwargs)
        bound.apply_defaults()
        config_class = config_class(dict(bound.arguments))
    if config_class is not None:
        check_config(config_class, kwargs.get("model_config") or {}, join_key(key, "model_config"))


def _load_builtins() -> None:
    """Import the built-in components once, then every installed package's ``bertforge.*`` entry points."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    try:
        _load_entry_points()
    except BaseException:
        _loaded = False  # the next lookup reports the broken plugin again
        raise


def _load_entry_points() -> None:
    """Register each registry's entry points: a module registers itself on import; an object is registered
    under the entry point's name."""
    found = importlib.metadata.entry_points()
    for reg in ALL.values():
        for ep in found.select(group=reg.entry_point_group):
            try:
                obj = ep.load()
            except Exception as err:
                dist = getattr(getattr(ep, "dist", None), "name", None)
                origin = f" (package {dist})" if dist else ""
                raise UserError(f"entry point '{ep.name} = {ep.value}' in group '{reg.entry_point_group}'{origin} "
                                f"failed to load: {_one_line(err)}; fix or uninstall that package") from None
            if not inspect.ismodule(obj):
                reg.register(ep.name)(obj)


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def import_code_paths(paths: Sequence[str], key: str = "code_paths") -> None:
    """Import each Python file in ``paths`` (the YAML's ``code_paths``) so that its ``register`` decorators run.

    A path is relative to the working directory; a file is imported once per process. A missing file or
    a failing import is one line naming ``code_paths[i]``.
    """
    _load_builtins()  # a user name that clashes with a built-in then fails here, naming the file
    for i, path in enumerate(paths):
        _import_file(str(path), join_key(key, i))


def _import_file(path: str, key: str) -> None:
    full = os.path.abspath(os.path.expanduser(path))
    if not os.path.isfile(full):
        raise ConfigError(key, f"file not found: {path} (from {os.getcwd()}); give the path of a .py file")
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(full))[0])
    name = f"bertforge_code_{stem}_{hashlib.sha1(full.encode()).hexdigest()[:8]}"  # flat: pickle can find it
    if name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise ConfigError(key, f"{path} cannot be imported; give the path of a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise ConfigError(key, f"importing {path} failed: {_one_line(err)}") from None
