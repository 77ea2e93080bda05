"""One registry per extension point: model families, training recipes, GAN criteria, data layouts.

A `Registry` maps a name to an entry (a small frozen dataclass with a ``name``), in registration
order. Every consumer reads it: the configs' validation, `get_preset`, `build_model`, layout
detection and discovery, the CLI's choices and help. Adding a model family, a recipe, a criterion or
a layout is therefore one registration, as a keras-hub preset is one entry and a junyanz model is one
file. The registries themselves live beside what they register:

- `gan_mri.config.FAMILY_REGISTRY` (`Family`) and `gan_mri.config.RECIPE_REGISTRY` (`Recipe`);
- `gan_mri.config.CRITERION_REGISTRY` (`GANCriterion`; `gan_mri.losses` registers the built-in terms and
  re-exports both);
- `gan_mri.data.layouts.LAYOUT_REGISTRY` (`Layout`).

This module is standard library only, so that the CLI can read registries to build its parser without
importing Keras.

Example:
    >>> from gan_mri.config import RECIPE_REGISTRY, Recipe, get_preset
    >>> with RECIPE_REGISTRY.registered(Recipe("fast", {"g_learning_rate": 5e-3}, "a faster G")):
    ...     get_preset("unit", recipe="fast").g_learning_rate
    0.005
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

Entry = TypeVar("Entry")


class Registry(Mapping, Generic[Entry]):
    """Name -> entry of one extension point, in registration order (a read-only `Mapping`).

    Args:
        kind: what an entry is, for error messages ("model family", "data layout").
        check: optional ``check(entry, registry)`` run before an entry is added; it raises
            `ValueError` for an entry that would not work (e.g. a family without its config class).
    """

    def __init__(self, kind: str, check: Callable[[Any, Registry], None] | None = None):
        self.kind = kind
        self._check = check
        self._entries: dict[str, Entry] = {}

    def __getitem__(self, name: str) -> Entry:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"

    def register(self, entry: Entry, replace: bool = False) -> Entry:
        """Adds ``entry`` under ``entry.name``, after the entries registered before it.

        Args:
            entry: the entry; its ``name`` attribute is the key.
            replace: replace an entry of the same name (it keeps its place) instead of refusing it.

        Returns:
            ``entry``.

        Raises:
            ValueError: for a name that is not a non-empty string, a name already registered (without
                ``replace``), or an entry the registry's check refuses.
        """
        name = getattr(entry, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string; found {name!r}")
        if name in self._entries and not replace:
            raise ValueError(f"{self.kind} {name!r} is already registered (pass replace=True to replace it); "
                             f"registered are {list(self._entries)}")
        if self._check is not None:
            self._check(entry, self)
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> Entry:
        """Removes the entry registered under ``name`` and returns it.

        Raises:
            ValueError: if no entry has that name (listing the registered ones).
        """
        if name not in self._entries:
            raise ValueError(f"{self.kind} {name!r} is not registered; registered are {list(self._entries)}")
        return self._entries.pop(name)

    @contextlib.contextmanager
    def registered(self, entry: Entry, replace: bool = False):
        """Registers ``entry`` for the duration of a ``with`` block (a test, an experiment), then
        removes it, or puts back the entry it replaced.

        Yields:
            ``entry``.
        """
        before = self._entries.get(entry.name) if replace else None
        self.register(entry, replace=replace)
        try:
            yield entry
        finally:
            if before is None:
                self._entries.pop(entry.name, None)
            else:
                self._entries[entry.name] = before

    def view(self, value: Callable[[Entry], Any]) -> Mapping:
        """A live read-only mapping name -> ``value(entry)``: it follows later registrations (the
        old dict-shaped names, e.g. `gan_mri.losses.DECISION_THRESHOLDS`, are such views)."""
        return _View(self, value)

    def names(self, *leading: str) -> Sequence[str]:
        """A live tuple-like sequence of ``leading`` followed by the registered names (e.g.
        `gan_mri.data.layouts.LAYOUTS`: "auto", then every layout)."""
        return _Names(self, leading)


class _View(Mapping):
    def __init__(self, registry: Registry, value):
        self._registry, self._value = registry, value

    def __getitem__(self, name: str):
        return self._value(self._registry[name])

    def __iter__(self):
        return iter(self._registry)

    def __len__(self) -> int:
        return len(self._registry)

    def __repr__(self) -> str:
        return repr(dict(self))


class _Names(Sequence):
    def __init__(self, registry: Registry, leading: tuple[str, ...]):
        self._registry, self._leading = registry, tuple(leading)

    def _tuple(self) -> tuple[str, ...]:
        return self._leading + tuple(self._registry)

    def __getitem__(self, index):
        return self._tuple()[index]

    def __len__(self) -> int:
        return len(self._tuple())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and not isinstance(other, str) and self._tuple() == tuple(other)

    __hash__ = None

    def __repr__(self) -> str:
        return repr(self._tuple())
