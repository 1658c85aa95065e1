"""One shape for every config error of dapt-eval, dapt-data, dapt-trainer and dapt-local.

An error has a ``source`` (the config file, or another origin such as ``<flags/env>``) and
``problems``, one line each, every line naming its key: ``key.path = value: rule``, or
``key.path: rule`` where no single value is at fault. The message is

    Invalid <what> config '<source>' (N problem(s)):
      - key.path = value: rule

``validation_problems`` turns a pydantic ``ValidationError`` into such lines, all of them;
a model validator that finds several problems raises ``Problems`` with one line per key
(relative to its model), and each is reported under that model's key path.

This file is ``dapt_eval/config_errors.py`` and, byte for byte, ``dapt_trainer/config_errors.py``
(the trainer image does not install dapt-eval); a trainer test checks the copies are identical.
dapt-data subclasses the dapt-eval one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import ValidationError


class ConfigError(ValueError):
    """A config failed validation; ``problems`` lists every one as ``key.path = value: rule``.

    Subclasses set ``what`` (``trainer``, ``data pipeline``, ``run``, ...), the word the message
    uses for the kind of config."""

    what: ClassVar[str] = ""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        kind = f"{self.what} config" if self.what else "config"
        super().__init__(f"Invalid {kind} '{source}' ({len(self.problems)} problem(s)):\n{lines}")


class Problems(ValueError):  # noqa: N818 - a list of problems, not an error of its own
    """Raised by a model validator with several problems, each relative to the model's key."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def validation_problems(err: ValidationError, prefix: str = "") -> list[str]:
    """One ``key.path = value: rule`` line per problem of ``err``, keys under ``prefix``."""
    problems: list[str] = []
    for detail in err.errors():
        path = ".".join(p for p in (prefix, *(str(part) for part in detail["loc"])) if p)
        key = path or "<root>"
        cause = detail.get("ctx", {}).get("error")
        if isinstance(cause, Problems):
            problems += [f"{path}.{p}" if path else p for p in cause.problems]
        elif detail["type"] == "missing":
            problems.append(f"{key}: field required")
        elif detail["type"] == "extra_forbidden":
            problems.append(f"{key} = {short(detail.get('input'))}: unknown key")
        else:
            message = str(detail["msg"]).removeprefix("Value error, ")
            problems.append(f"{key} = {short(detail.get('input'))}: {message}")
    return problems


def short(value: Any) -> str:
    """``repr(value)``, cut to ``REPR_LIMIT`` characters."""
    text = repr(value)
    return text if len(text) <= REPR_LIMIT else text[: REPR_LIMIT - 3] + "..."


REPR_LIMIT = 80
"""Characters of a value shown in a problem line (a whole section would drown the rule)."""
