"""PyYAML's safe loading on libyaml's C parser when PyYAML was built with it (~5-10× faster).

The C parser only scans and composes; resolving and constructing stay PyYAML's Python code, so the
results are those of `yaml.safe_load` (and loaders derived from `Base()` keep their own resolvers and
constructors). Without libyaml, the pure-Python SafeLoader is used.
"""

from __future__ import annotations

from typing import Any


def Base() -> type:  # noqa: N802 - it returns a class, named like one
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=Base())  # noqa: S506 - a safe loader (CSafeLoader or SafeLoader)


def safe_load_all(text: str) -> list[Any]:
    import yaml

    return list(yaml.load_all(text, Loader=Base()))  # noqa: S506 - a safe loader
