"""The config conventions every Python package keeps, as checks their tests share.

Each config problem names its key (``problem_key`` reads it back), and each config field says
what it is: pydantic ``Field(description=...)``, or an attribute docstring on a dataclass
(``undocumented`` walks the config classes reachable from the roots and lists the fields
without a one-sentence description). Used by every package's ``test_config_conventions.py``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel


def problem_key(problem: str) -> str:
    """The key a problem line names: the text before ` = value` or `: rule`."""
    return problem.split(" = ", 1)[0].split(": ", 1)[0]


def undocumented(roots: Iterable[type]) -> tuple[list[type], list[str]]:
    """The config classes reachable from `roots` through their fields, and `Class.field` for
    each field without a one-sentence description: pydantic `Field(description=...)`, or, on a
    dataclass, an attribute docstring."""
    visited: list[type] = []
    missing: list[str] = []

    def visit(cls: type) -> None:
        if cls in visited:
            return
        visited.append(cls)
        if issubclass(cls, BaseModel):
            fields = {n: (f.description, f.annotation) for n, f in cls.model_fields.items()}
        else:
            assert dataclasses.is_dataclass(cls), cls
            hints = typing.get_type_hints(cls)
            docs = attribute_docstrings(cls)
            fields = {f.name: (docs.get(f.name), hints[f.name]) for f in dataclasses.fields(cls)}
        for name, (text, annotation) in fields.items():
            if not text or not text.strip().endswith("."):
                missing.append(f"{cls.__name__}.{name}")
            for nested in config_classes(annotation):
                visit(nested)

    for root in roots:
        visit(root)
    return visited, missing


def config_classes(annotation: Any) -> Iterator[type]:
    """Pydantic models and dataclasses named anywhere in a type annotation."""
    if isinstance(annotation, type) and (
        issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)
    ):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from config_classes(arg)


def attribute_docstrings(cls: type) -> dict[str, str]:
    """The string literal right after each annotated attribute of a class body."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for stmt, after in zip(body.body, body.body[1:], strict=False):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = after.value.value
    return docs
