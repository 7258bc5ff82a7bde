"""The `[...]` expression language: parsing to a small AST and evaluating it.

A JSON string is an expression when it starts with `[` and ends with `]`; `[[` escapes a literal
bracket. Function names are case-insensitive; arguments are evaluated eagerly except for the few
functions that must not evaluate every argument (`if` takes one branch only, `and`/`or`/`coalesce`
stop early, `lambda` keeps its body). Functions themselves live in `functions.py`; this module only
knows how to call them, which keeps the evaluator small enough to audit for the recursion and time
limits ARM imposes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

MAX_EXPRESSION_LENGTH = 24576
MAX_NESTING = 64
MAX_FUNCTION_DEPTH = 16
MAX_STRING_LENGTH = 4 * 1024 * 1024

PURE = "pure"  # fn(*args)
CONTEXT = "context"  # fn(evaluator, scope, node, args): needs the deployment, the template or the scope
LAZY = "lazy"  # fn(evaluator, scope, node): evaluates its own arguments (if, and, or, coalesce, lambda)


class ExpressionError(Exception):
    """An expression is malformed or cannot be evaluated; the planner adds where it happened."""


class NeedsRuntime(Exception):
    """`reference`/`list*` was reached while planning: the value exists only once resources are deployed."""


class Runtime(Protocol):
    """What the applier supplies so `reference()` and `list*()` can read deployed resources."""

    def reference(self, resource_id: str, api_version: str | None, full: bool) -> Any:
        """The resource's `properties` (or, with `full`, the whole resource body incl. `identity`)."""
        ...

    def invoke_list(self, resource_id: str, action: str, api_version: str | None, body: Any) -> Any:
        """`POST {resource_id}/{action}` (e.g. `listCredentials`) and return its JSON body."""
        ...


# --- AST -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    value: Any


@dataclass(frozen=True)
class Call:
    name: str  # as written, e.g. "resourceGroup" or "ns.fn"
    args: tuple[Node, ...]

    @property
    def key(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Member:
    target: Node
    name: str


@dataclass(frozen=True)
class Index:
    target: Node
    index: Node


Node = Literal | Call | Member | Index

_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<id>[A-Za-z_$][A-Za-z0-9_$]*)
                     |(?P<punct>[()\[\],.])|(?P<bad>\S))""", re.VERBOSE)
_TOKEN_NAMES = {"(": "LeftParenthesis", ")": "RightParenthesis", "[": "LeftSquareBracket",
                "]": "RightSquareBracket", ",": "Comma", ".": "Dot"}


def is_expression(value: Any) -> bool:
    """True for a JSON string the engine must evaluate (not an escaped `[[` literal)."""
    return (isinstance(value, str) and len(value) >= 2 and value[0] == "[" and value[-1] == "]"
            and not value.startswith("[["))


def unescape(value: str) -> str:
    """A `[[...]` literal loses its first bracket; other strings are unchanged."""
    return value[1:] if value.startswith("[[") else value


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens: list[tuple[str, str]] = []
        for match in _TOKEN.finditer(source):
            kind = match.lastgroup or "bad"
            if kind == "bad":
                raise ExpressionError(
                    f"The language expression '{source}' is not valid: the string character "
                    f"'{match.group(kind)}' at position '{match.start(kind)}' is not expected.")
            self.tokens.append((kind, match.group(kind)))
        self.i = 0

    def describe(self) -> str:
        if self.i >= len(self.tokens):
            return "EndOfData"
        kind, text = self.tokens[self.i]
        return {"str": "String", "num": "Integer", "id": "Identifier"}.get(kind) or _TOKEN_NAMES[text]

    def expect(self, punct: str) -> None:
        if self.i < len(self.tokens) and self.tokens[self.i] == ("punct", punct):
            self.i += 1
            return
        raise ExpressionError(f"Unable to parse language expression '{self.source}': expected token "
                              f"'{_TOKEN_NAMES[punct]}' and actual '{self.describe()}'.")

    def at(self, punct: str) -> bool:
        return self.i < len(self.tokens) and self.tokens[self.i] == ("punct", punct)

    def parse(self) -> Node:
        node = self.expression(0)
        if self.i != len(self.tokens):
            raise ExpressionError(f"Unable to parse language expression '{self.source}': expected token "
                                  f"'EndOfData' and actual '{self.describe()}'.")
        return node

    def expression(self, depth: int) -> Node:
        if depth > MAX_NESTING:
            raise ExpressionError(f"The language expression '{self.source[:200]}' exceeds the maximum nesting "
                                  f"depth of '{MAX_NESTING}'.")
        node = self.primary(depth)
        while True:
            if self.at("."):
                self.i += 1
                if self.i >= len(self.tokens) or self.tokens[self.i][0] != "id":
                    raise ExpressionError(f"Unable to parse language expression '{self.source}': expected token "
                                          f"'Identifier' and actual '{self.describe()}'.")
                node = Member(node, self.tokens[self.i][1])
                self.i += 1
            elif self.at("["):
                self.i += 1
                node = Index(node, self.expression(depth + 1))
                self.expect("]")
            else:
                return node

    def primary(self, depth: int) -> Node:
        if self.i >= len(self.tokens):
            raise ExpressionError(f"Unable to parse language expression '{self.source}': expected token "
                                  "'Identifier' and actual 'EndOfData'.")
        kind, text = self.tokens[self.i]
        if kind == "str":
            self.i += 1
            return Literal(text[1:-1].replace("''", "'"))
        if kind == "num":
            self.i += 1
            return Literal(float(text) if "." in text else int(text))
        if kind != "id":
            raise ExpressionError(f"Unable to parse language expression '{self.source}': expected token "
                                  f"'Identifier' and actual '{self.describe()}'.")
        self.i += 1
        name = text
        if self.at(".") and self.i + 2 < len(self.tokens) and self.tokens[self.i + 1][0] == "id" \
                and self.tokens[self.i + 2] == ("punct", "("):
            name = f"{text}.{self.tokens[self.i + 1][1]}"
            self.i += 2
        self.expect("(")
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.expression(depth + 1))
            while self.at(","):
                self.i += 1
                args.append(self.expression(depth + 1))
        self.expect(")")
        return Call(name, tuple(args))


_CACHE: dict[str, Node] = {}


def parse(expression: str) -> Node:
    """Parse the text of a `[...]` string (with the brackets) into an AST; cached, templates repeat themselves."""
    node = _CACHE.get(expression)
    if node is None:
        if len(expression) > MAX_EXPRESSION_LENGTH:
            raise ExpressionError(f"The template language expression exceeds the limit of '{MAX_EXPRESSION_LENGTH}'"
                                  f" characters; actual '{len(expression)}'.")
        inner = expression[1:-1]
        if not inner.strip():
            raise ExpressionError(f"The language expression '{inner}' is not valid: the expression is empty.")
        node = _Parser(inner).parse()
        if len(_CACHE) < 20000:
            _CACHE[expression] = node
    return node


# --- evaluation ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Where an expression is evaluated: loop indices, lambda variables, UDF arguments, allowed functions."""

    copy_indices: tuple[tuple[str, int], ...] = ()
    lambda_vars: tuple[tuple[str, Any], ...] = ()
    function_args: Mapping[str, Any] | None = None
    function_depth: int = 0
    section: str = "resources"  # parameters | variables | resources | outputs | functions

    def with_copy(self, name: str, index: int) -> Scope:
        return Scope(((name, index), *self.copy_indices), self.lambda_vars, self.function_args,
                     self.function_depth, self.section)

    def with_lambda(self, bindings: dict[str, Any]) -> Scope:
        return Scope(self.copy_indices, (*bindings.items(), *self.lambda_vars), self.function_args,
                     self.function_depth, self.section)


@dataclass(frozen=True)
class Lambda:
    """A `lambda(...)` value; only the functions that take lambdas may receive one."""

    params: tuple[str, ...]
    body: Node
    scope: Scope


class Host(Protocol):
    """The template being evaluated and its deployment: the planner implements these lookups."""

    subscription_id: str
    resource_group_name: str | None

    def parameter(self, name: str, scope: Scope) -> Any: ...

    def variable(self, name: str, scope: Scope) -> Any: ...

    def user_function(self, name: str) -> Callable[[Evaluator, Scope, list[Any]], Any]: ...

    def resolve_reference(self, target: str) -> tuple[str, str | None]: ...

    def resource_info(self, symbolic_name: str) -> dict[str, Any]: ...

    def resource_group_object(self) -> dict[str, Any]: ...

    def subscription_object(self) -> dict[str, Any]: ...

    def tenant_object(self) -> dict[str, Any]: ...

    def deployment_object(self) -> dict[str, Any]: ...

    def environment_object(self) -> dict[str, Any]: ...

    def now(self) -> datetime: ...


@dataclass
class Evaluator:
    """Evaluates ASTs against a host template; one per plan, shared by nested templates for the time budget."""

    host: Host
    functions: FunctionTable
    deadline: float
    runtime: Runtime | None = None

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError

    def evaluate(self, node: Node, scope: Scope) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Call):
            return self.call(node, scope)
        if isinstance(node, Member):
            return member(self.evaluate(node.target, scope), node.name)
        return index(self.evaluate(node.target, scope), self.evaluate(node.index, scope))

    def call(self, node: Call, scope: Scope) -> Any:
        self.check_time()
        key = node.key
        if "." in key:
            return self.host.user_function(node.name)(self, scope, [self.evaluate(a, scope) for a in node.args])
        entry = self.functions.get(key)
        if entry is None and key.startswith("list") and len(key) > 4:
            entry = self.functions["list*"]
        if entry is None:
            raise ExpressionError(f"The template function '{node.name}' is not valid. Please see "
                                  "https://aka.ms/arm-functions for usage details.")
        fn, min_args, max_args, kind = entry
        count = len(node.args)
        if count < min_args or (max_args is not None and count > max_args):
            raise ExpressionError(_arity_message(node.name, min_args, max_args, count))
        if kind == LAZY:
            result = fn(self, scope, node)
        else:
            args = [self.evaluate(a, scope) for a in node.args]
            for arg in args:
                if isinstance(arg, Lambda) and key not in _LAMBDA_TAKERS:
                    raise ExpressionError(f"The template function '{node.name}' does not accept lambda "
                                          "expressions as arguments.")
            result = fn(self, scope, node, args) if kind == CONTEXT else fn(*args)
        if isinstance(result, str) and len(result) > MAX_STRING_LENGTH:
            raise ExpressionError(f"The template function '{node.name}' produced a value longer than the limit of "
                                  f"'{MAX_STRING_LENGTH}' characters.")
        return result

    def call_lambda(self, fn: Any, args: list[Any], function: str) -> Any:
        if not isinstance(fn, Lambda):
            raise ExpressionError(f"The template function '{function}' expects a lambda expression.")
        if len(args) < len(fn.params):
            raise ExpressionError(f"The lambda expression passed to '{function}' expects {len(fn.params)} "
                                  f"parameter(s) but {len(args)} are available.")
        return self.evaluate(fn.body, fn.scope.with_lambda(dict(zip(fn.params, args, strict=False))))


_LAMBDA_TAKERS = frozenset({"map", "filter", "reduce", "sort", "toobject", "groupby", "mapvalues"})


def _arity_message(name: str, min_args: int, max_args: int | None, count: int) -> str:
    if max_args == min_args:
        wanted = f"'{min_args}'"
    elif max_args is None:
        wanted = f"at least '{min_args}'"
    else:
        wanted = f"between '{min_args}' and '{max_args}'"
    return (f"Unable to evaluate template language function '{name}': function requires {wanted} argument(s) "
            f"while '{count}' were provided. Please see https://aka.ms/arm-functions for usage details.")


def type_name(value: Any) -> str:
    """ARM's (Json.NET's) name for a value's type, as used in its messages."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, dict):
        return "Object"
    return "Lambda" if isinstance(value, Lambda) else type(value).__name__


def lookup(obj: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """Property lookup as ARM does it: exact name first, then ignoring case."""
    if name in obj:
        return True, obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return True, value
    return False, None


def member(target: Any, name: str) -> Any:
    """`x.name`; a missing property is an error (use tryGet for optional ones)."""
    if not isinstance(target, dict):
        raise ExpressionError(f"The language expression property '{name}' can't be evaluated, property name must "
                              f"be a string and the target must be an object; the target is of type "
                              f"'{type_name(target)}'.")
    found, value = lookup(target, name)
    if not found:
        available = ", ".join(target.keys())
        raise ExpressionError(f"The language expression property '{name}' doesn't exist, available properties are "
                              f"'{available}'.")
    return value


def index(target: Any, key: Any) -> Any:
    """`x[i]` for arrays (integer) and `x['k']` for objects."""
    if isinstance(target, list):
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExpressionError(f"The language expression property array index '{key}' is not valid: the index "
                                  "must be an integer.")
        if not 0 <= key < len(target):
            raise ExpressionError(f"The language expression property array index '{key}' is out of bounds.")
        return target[key]
    if isinstance(target, dict) and isinstance(key, str):
        return member(target, key)
    raise ExpressionError(f"The language expression property '{key}' can't be evaluated on a value of type "
                          f"'{type_name(target)}'.")


def static_calls(node: Node, names: frozenset[str]) -> list[Call]:
    """Every call to one of `names` (lower-case; `list*` matches list functions) inside a node."""
    found: list[Call] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Call):
            key = current.key
            if key in names or ("list*" in names and key.startswith("list") and len(key) > 4):
                found.append(current)
            stack.extend(current.args)
        elif isinstance(current, Member):
            stack.append(current.target)
        elif isinstance(current, Index):
            stack.extend((current.target, current.index))
    return found


FunctionTable = Mapping[str, tuple[Callable[..., Any], int, int | None, str]]
