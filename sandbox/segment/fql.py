"""The subset of Segment's FQL that destination subscription triggers use here.

Grammar (docs/ARCHITECTURE.md, "FQL subset"):

    expr       := and_expr ("or" and_expr)*
    and_expr   := primary ("and" primary)*
    primary    := "(" expr ")" | comparison
    comparison := field ("=" | "!=") string
    field      := "type" | "event"
    string     := '"' (any char but '"' or '\\', or an escape '\\"' / '\\\\')* '"'

Anything else is refused with `FqlError` (the emulator answers 422 ValidationFailure),
so a provider cannot generate a trigger the real Segment would read differently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FIELDS = frozenset({"type", "event"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\["\\])*")
      | (?P<op>!=|=)
      | (?P<paren>[()])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


class FqlError(ValueError):
    """A trigger outside the supported subset; the message says where and why."""


@dataclass(frozen=True)
class Comparison:
    field: str
    negated: bool
    value: str

    def matches(self, event: Mapping[str, Any]) -> bool:
        equal = event.get(self.field) == self.value
        return not equal if self.negated else equal


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Node, ...]

    def matches(self, event: Mapping[str, Any]) -> bool:
        results = (operand.matches(event) for operand in self.operands)
        return all(results) if self.op == "and" else any(results)


Node = Comparison | BoolOp


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise FqlError(f"unexpected character at offset {position}: {text[position:][:10]!r}")
        tokens.append((match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, description: str) -> tuple[str, str, int]:
        token = self.peek()
        if token is None:
            raise FqlError(f"expected {description}, found the end of the trigger")
        self.index += 1
        return token

    def is_word(self, word: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1] == word

    def expr(self) -> Node:
        operands = [self.and_expr()]
        while self.is_word("or"):
            self.index += 1
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.primary()]
        while self.is_word("and"):
            self.index += 1
            operands.append(self.primary())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def primary(self) -> Node:
        kind, text, offset = self.take("a comparison or '('")
        if kind == "paren" and text == "(":
            node = self.expr()
            closing = self.take("')'")
            if closing[1] != ")":
                raise FqlError(f"expected ')' at offset {closing[2]}, found {closing[1]!r}")
            return node
        if kind != "word" or text not in FIELDS:
            raise FqlError(
                f"unsupported field {text!r} at offset {offset}: "
                f"only {sorted(FIELDS)} are supported"
            )
        op_kind, op, op_offset = self.take("'=' or '!='")
        if op_kind != "op":
            raise FqlError(f"expected '=' or '!=' at offset {op_offset}, found {op!r}")
        value_kind, value, value_offset = self.take("a double-quoted string")
        if value_kind != "string":
            raise FqlError(f"expected a double-quoted string at offset {value_offset}")
        unescaped = re.sub(r"\\([\"\\])", r"\1", value[1:-1])
        return Comparison(field=text, negated=op == "!=", value=unescaped)


def parse_trigger(text: str) -> Node:
    """Parse a trigger into a tree with `.matches(event)`; raise `FqlError` outside the subset."""
    if not text.strip():
        raise FqlError("the trigger is empty")
    parser = _Parser(text)
    node = parser.expr()
    leftover = parser.peek()
    if leftover is not None:
        raise FqlError(f"unexpected {leftover[1]!r} at offset {leftover[2]}")
    return node


def trigger_matches(text: str, event: Mapping[str, Any]) -> bool:
    return parse_trigger(text).matches(event)
