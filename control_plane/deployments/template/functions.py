"""ARM's template functions, keyed by lower-case name.

Each entry is `(function, min_args, max_args, kind)` where kind says how the evaluator calls it (see
`expressions.PURE/CONTEXT/LAZY`). Semantics follow the ARM function reference; where ARM differs from the
obvious Python behaviour (case-insensitive `indexOf`/`startsWith`, .NET `String.Format`, `True`/`False`
when a bool becomes a string, truncating integer division) the ARM behaviour is the one implemented.
"""

from __future__ import annotations

import base64
import calendar
import json
import math
import re
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from . import hashing
from .expressions import (
    CONTEXT,
    LAZY,
    PURE,
    Call,
    Evaluator,
    ExpressionError,
    FunctionTable,
    Lambda,
    Literal,
    NeedsRuntime,
    Scope,
    lookup,
    type_name,
)

MAX_RANGE = 10000

# --- conversions ------------------------------------------------------------------------------------------------


def to_string(value: Any) -> str:
    """ARM's string conversion: bools are `True`/`False`, objects and arrays compact JSON, null empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Lambda):
        raise ExpressionError("A lambda expression cannot be converted to a string.")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _need(value: Any, kinds: tuple[type, ...], function: str, what: str) -> Any:
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ExpressionError(f"The template language function '{function}' expects its {what} to be of type "
                              f"{' or '.join(_KIND_NAMES[k] for k in kinds)}. The provided value is of type "
                              f"'{type_name(value)}'. Please see https://aka.ms/arm-functions for usage details.")
    return value


_KIND_NAMES = {str: "'String'", int: "'Integer'", float: "'Float'", bool: "'Boolean'", list: "'Array'",
               dict: "'Object'", type(None): "'Null'"}


def _int(value: Any, function: str, what: str = "parameter") -> int:
    return _need(value, (int,), function, what)


def deep_equal(a: Any, b: Any) -> bool:
    """Equality as ARM's `equals`: deep, type-sensitive (a bool is not 1), object keys ignoring case."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        if len(a) != len(b):
            return False
        for key, value in a.items():
            found, other = lookup(b, key)
            if not found or not deep_equal(value, other):
                return False
        return True
    return type(a) is type(b) and a == b


# --- string functions -------------------------------------------------------------------------------------------

_FORMAT_ITEM = re.compile(r"\{\{|\}\}|\{(\d+)(?:,(-?\d+))?(?::([^}]*))?\}|[{}]")


def _format_number(value: Any, spec: str) -> str:
    kind, digits = spec[:1], spec[1:]
    precision = int(digits) if digits.isdigit() else None
    upper = kind.upper()
    if upper == "N":
        return f"{value:,.{2 if precision is None else precision}f}"
    if upper == "F":
        return f"{value:.{2 if precision is None else precision}f}"
    if upper == "D" and isinstance(value, int):
        return f"{value:0{precision or 1}d}" if value >= 0 else "-" + f"{-value:0{precision or 1}d}"
    if upper == "X" and isinstance(value, int):
        text = f"{value:0{precision or 1}x}"
        return text.upper() if kind == "X" else text
    if upper == "P":
        return f"{value * 100:,.{2 if precision is None else precision}f} %"
    if upper == "E":
        text = f"{value:.{6 if precision is None else precision}e}"
        mantissa, exponent = text.split("e")
        sign = exponent[0]
        text = f"{mantissa}e{sign}{int(exponent[1:]):03d}"
        return text.upper() if kind == "E" else text
    return to_string(value)


def fn_format(template: Any, *args: Any) -> str:
    """.NET String.Format: `{0}`, `{0,8}`, `{0:N0}`, `{{`/`}}`."""
    template = _need(template, (str,), "format", "first parameter")

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if text in ("{{", "}}"):
            return text[0]
        if match.group(1) is None:
            raise ExpressionError(f"The template language function 'format' failed: the format string '{template}' "
                                  "is not valid.")
        position = int(match.group(1))
        if position >= len(args):
            raise ExpressionError("Unable to evaluate template language function 'format': index (zero based) must "
                                  "be greater than or equal to zero and less than the size of the argument list.")
        value = args[position]
        spec = match.group(3)
        out = _format_number(value, spec) if spec and isinstance(value, (int, float)) and not isinstance(
            value, bool) else to_string(value)
        if match.group(2):
            width = int(match.group(2))
            out = out.ljust(-width) if width < 0 else out.rjust(width)
        return out

    return _FORMAT_ITEM.sub(replace, template)


def fn_concat(*args: Any) -> Any:
    if any(isinstance(a, list) for a in args):
        out: list[Any] = []
        for arg in args:
            if arg is None:
                continue
            out.extend(_need(arg, (list,), "concat", "parameters"))
        return out
    for arg in args:
        if isinstance(arg, dict):
            _need(arg, (str, list), "concat", "parameters")
    return "".join(to_string(a) for a in args)


def fn_substring(text: Any, start: Any, length: Any = None) -> str:
    text = _need(text, (str,), "substring", "first parameter")
    start = _int(start, "substring", "index parameter")
    length = len(text) - start if length is None else _int(length, "substring", "length parameter")
    if start < 0 or length < 0 or start + length > len(text):
        raise ExpressionError("The index and length parameters must refer to a location within the string. The "
                              f"index parameter: '{start}', the length parameter: '{length}', the length of the string "
                              f"parameter: '{len(text)}'. Please see https://aka.ms/arm-functions for usage details.")
    return text[start:start + length]


def fn_split(text: Any, delimiter: Any) -> list[str]:
    text = _need(text, (str,), "split", "first parameter")
    delimiters = [delimiter] if isinstance(delimiter, str) else _need(delimiter, (list,), "split", "delimiter")
    if not all(isinstance(d, str) for d in delimiters):
        raise ExpressionError("The template language function 'split' expects its delimiters to be strings.")
    if not delimiters:
        return [text]
    return re.split("|".join(re.escape(d) for d in delimiters if d), text) if any(delimiters) else [text]


def fn_replace(text: Any, old: Any, new: Any) -> str:
    text = _need(text, (str,), "replace", "first parameter")
    old = _need(old, (str,), "replace", "second parameter")
    if not old:
        raise ExpressionError("The template language function 'replace' expects a non-empty string to replace.")
    return text.replace(old, _need(new, (str,), "replace", "third parameter"))


def _string_search(function: str, text: Any, part: Any) -> tuple[str, str]:
    return (_need(text, (str,), function, "first parameter").lower(),
            _need(part, (str,), function, "second parameter").lower())


def fn_index_of(container: Any, item: Any) -> int:
    if isinstance(container, list):
        return next((i for i, value in enumerate(container) if deep_equal(value, item)), -1)
    text, part = _string_search("indexOf", container, item)
    return text.find(part)


def fn_last_index_of(container: Any, item: Any) -> int:
    if isinstance(container, list):
        return next((i for i in range(len(container) - 1, -1, -1) if deep_equal(container[i], item)), -1)
    text, part = _string_search("lastIndexOf", container, item)
    return text.rfind(part)


def fn_starts_with(text: Any, part: Any) -> bool:
    text, part = _string_search("startsWith", text, part)
    return text.startswith(part)


def fn_ends_with(text: Any, part: Any) -> bool:
    text, part = _string_search("endsWith", text, part)
    return text.endswith(part)


def fn_pad_left(value: Any, total: Any, pad: Any = " ") -> str:
    text = to_string(_need(value, (str, int), "padLeft", "first parameter"))
    total = _int(total, "padLeft", "totalLength parameter")
    pad = _need(pad, (str,), "padLeft", "paddingCharacter parameter")
    if len(pad) != 1:
        raise ExpressionError("The template language function 'padLeft' expects a single padding character.")
    if total > 16 and total > len(text):
        raise ExpressionError(f"The template language function 'padLeft' expects a totalLength of at most '16'; "
                              f"got '{total}'.")
    return text.rjust(total, pad)


def fn_trim(text: Any) -> str:
    return _need(text, (str,), "trim", "parameter").strip()


def fn_base64(text: Any) -> str:
    return base64.b64encode(_need(text, (str,), "base64", "parameter").encode("utf-8")).decode("ascii")


def _b64decode(text: Any, function: str) -> str:
    try:
        return base64.b64decode(_need(text, (str,), function, "parameter"), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExpressionError(f"The template language function '{function}' was given a value that is not valid "
                              "base64.") from exc


def fn_json(text: Any) -> Any:
    text = _need(text, (str,), "json", "parameter")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ExpressionError(f"The template language function 'json' has an invalid parameter: {exc}.") from exc


def fn_uri(base: Any, relative: Any) -> str:
    base = _need(base, (str,), "uri", "baseUri parameter")
    relative = _need(relative, (str,), "uri", "relativeUri parameter")
    if not urllib.parse.urlsplit(base).scheme:
        raise ExpressionError(f"The template language function 'uri' expects an absolute baseUri; got '{base}'.")
    return urllib.parse.urljoin(base, relative)


def fn_uri_component(text: Any) -> str:
    return urllib.parse.quote(to_string(text), safe="-_.~")


def fn_uri_component_to_string(text: Any) -> str:
    return urllib.parse.unquote(_need(text, (str,), "uriComponentToString", "parameter"))


def fn_data_uri(value: Any) -> str:
    encoded = base64.b64encode(to_string(value).encode("utf-8")).decode("ascii")
    return f"data:text/plain;charset=utf8;base64,{encoded}"


def fn_data_uri_to_string(value: Any) -> str:
    value = _need(value, (str,), "dataUriToString", "parameter")
    header, _, data = value.partition(",")
    if not header.startswith("data:") or not _:
        raise ExpressionError("The template language function 'dataUriToString' expects a data URI.")
    if header.endswith(";base64"):
        return base64.b64decode(data).decode("utf-8")
    return urllib.parse.unquote(data)


def fn_string(value: Any) -> str:
    return to_string(value)


def fn_guid(*args: Any) -> str:
    return hashing.guid(*(_need(a, (str,), "guid", "parameters") for a in args))


def fn_unique_string(*args: Any) -> str:
    return hashing.unique_string(*(_need(a, (str,), "uniqueString", "parameters") for a in args))


# --- arrays and objects ---------------------------------------------------------------------------------------


def fn_length(value: Any) -> int:
    if isinstance(value, (str, list, dict)):
        return len(value)
    raise ExpressionError(f"The template language function 'length' expects its parameter to be an array, object, "
                          f"or a string. The provided value is of type '{type_name(value)}'.")


def fn_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    raise ExpressionError(f"The template language function 'empty' expects its parameter to be an array, object, "
                          f"string or null. The provided value is of type '{type_name(value)}'.")


def fn_contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        return to_string(item) in container
    if isinstance(container, list):
        return any(deep_equal(v, item) for v in container)
    if isinstance(container, dict):
        return lookup(container, to_string(item))[0]
    raise ExpressionError(f"The template language function 'contains' expects its first parameter to be an array, "
                          f"object, or string. The provided value is of type '{type_name(container)}'.")


def fn_first(value: Any) -> Any:
    if isinstance(value, (str, list)):
        return value[0] if value else (None if isinstance(value, list) else "")
    raise ExpressionError(f"The template language function 'first' expects an array or string; got "
                          f"'{type_name(value)}'.")


def fn_last(value: Any) -> Any:
    if isinstance(value, (str, list)):
        return value[-1] if value else (None if isinstance(value, list) else "")
    raise ExpressionError(f"The template language function 'last' expects an array or string; got "
                          f"'{type_name(value)}'.")


def fn_take(value: Any, count: Any) -> Any:
    count = max(0, _int(count, "take", "count parameter"))
    return _need(value, (list, str), "take", "first parameter")[:count]


def fn_skip(value: Any, count: Any) -> Any:
    count = max(0, _int(count, "skip", "count parameter"))
    return _need(value, (list, str), "skip", "first parameter")[count:]


def fn_range(start: Any, count: Any) -> list[int]:
    start = _int(start, "range", "startIndex parameter")
    count = _int(count, "range", "count parameter")
    if count < 0 or count > MAX_RANGE:
        raise ExpressionError(f"The template language function 'range' expects its count to be between '0' and "
                              f"'{MAX_RANGE}'; got '{count}'.")
    return list(range(start, start + count))


def fn_create_object(*args: Any) -> dict[str, Any]:
    if len(args) % 2:
        raise ExpressionError("The template language function 'createObject' must have an even number of "
                              "parameters.")
    out: dict[str, Any] = {}
    for key, value in zip(args[::2], args[1::2], strict=True):
        out[_need(key, (str,), "createObject", "property names")] = value
    return out


def _merge(first: dict[str, Any], second: dict[str, Any], deep: bool) -> dict[str, Any]:
    out = dict(first)
    for key, value in second.items():
        found_key = next((k for k in out if k.lower() == key.lower()), None)
        if found_key is not None:
            old = out.pop(found_key)
            if deep and isinstance(old, dict) and isinstance(value, dict):
                value = _merge(old, value, deep)
            out[found_key] = value
        else:
            out[key] = value
    return out


def fn_union(*args: Any) -> Any:
    if all(isinstance(a, dict) or a is None for a in args):
        out: dict[str, Any] = {}
        for arg in args:
            out = _merge(out, arg or {}, deep=True)
        return out
    if all(isinstance(a, list) or a is None for a in args):
        items: list[Any] = []
        for arg in args:
            for value in arg or []:
                if not any(deep_equal(value, v) for v in items):
                    items.append(value)
        return items
    raise ExpressionError("The template language function 'union' expects all its parameters to be arrays or all to "
                          "be objects.")


def fn_shallow_merge(objects: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in _need(objects, (list,), "shallowMerge", "parameter"):
        out = _merge(out, _need(item, (dict,), "shallowMerge", "array items"), deep=False)
    return out


def fn_intersection(first: Any, *rest: Any) -> Any:
    if isinstance(first, list):
        others = [_need(r, (list,), "intersection", "parameters") for r in rest]
        out: list[Any] = []
        for value in first:
            if all(any(deep_equal(value, v) for v in other) for other in others) and \
                    not any(deep_equal(value, v) for v in out):
                out.append(value)
        return out
    first = _need(first, (dict, list), "intersection", "parameters")
    result = {}
    for key, value in first.items():
        if all(lookup(_need(r, (dict,), "intersection", "parameters"), key)[0]
               and deep_equal(lookup(r, key)[1], value) for r in rest):
            result[key] = value
    return result


def fn_flatten(value: Any) -> list[Any]:
    out: list[Any] = []
    for item in _need(value, (list,), "flatten", "parameter"):
        out.extend(_need(item, (list,), "flatten", "array items"))
    return out


def fn_items(value: Any) -> list[dict[str, Any]]:
    obj = _need(value, (dict,), "items", "parameter")
    return [{"key": k, "value": obj[k]} for k in sorted(obj)]


def fn_object_keys(value: Any) -> list[str]:
    return list(_need(value, (dict,), "objectKeys", "parameter"))


def _try_step(value: Any, key: Any) -> Any:
    if isinstance(value, dict) and isinstance(key, str):
        return lookup(value, key)[1]
    if isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool):
        return value[key] if 0 <= key < len(value) else None
    if value is None:
        return None
    raise ExpressionError(f"The template language function 'tryGet' cannot index a value of type "
                          f"'{type_name(value)}' with '{to_string(key)}'.")


def fn_try_get(value: Any, *keys: Any) -> Any:
    for key in keys:
        value = _try_step(value, key)
        if value is None:
            return None
    return value


def fn_index_from_end(value: Any, position: Any) -> Any:
    position = _int(position, "indexFromEnd", "index parameter")
    items = _need(value, (list,), "indexFromEnd", "first parameter")
    if not 1 <= position <= len(items):
        raise ExpressionError(f"The index '{position}' is out of bounds for an array of length '{len(items)}'.")
    return items[-position]


def fn_try_index_from_end(value: Any, position: Any) -> Any:
    if not isinstance(value, list) or not isinstance(position, int) or not 1 <= position <= len(value):
        return None
    return value[-position]


def fn_array(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- numbers, comparison, logic --------------------------------------------------------------------------------


def _numbers(function: str, *values: Any) -> list[int | float]:
    return [_need(v, (int, float), function, "parameters") for v in values]


def fn_add(a: Any, b: Any) -> Any:
    x, y = _numbers("add", a, b)
    return x + y


def fn_sub(a: Any, b: Any) -> Any:
    x, y = _numbers("sub", a, b)
    return x - y


def fn_mul(a: Any, b: Any) -> Any:
    x, y = _numbers("mul", a, b)
    return x * y


def fn_div(a: Any, b: Any) -> Any:
    x, y = _numbers("div", a, b)
    if y == 0:
        raise ExpressionError("The template language function 'div' cannot divide by zero.")
    if isinstance(x, int) and isinstance(y, int):
        return int(x / y) if abs(x) < 2 ** 52 else (abs(x) // abs(y)) * (1 if (x >= 0) == (y >= 0) else -1)
    return x / y


def fn_mod(a: Any, b: Any) -> Any:
    x, y = _numbers("mod", a, b)
    if y == 0:
        raise ExpressionError("The template language function 'mod' cannot divide by zero.")
    return int(math.fmod(x, y)) if isinstance(x, int) and isinstance(y, int) else math.fmod(x, y)


def _min_max(function: str, pick: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    values = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
    if not values:
        raise ExpressionError(f"The template language function '{function}' expects at least one value.")
    return pick(_numbers(function, *values))


def fn_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ExpressionError("The template language function 'int' cannot convert a boolean.")
    if isinstance(value, (int, float)):
        return int(value)
    try:
        return int(_need(value, (str,), "int", "parameter").strip())
    except ValueError as exc:
        raise ExpressionError(f"The template language function 'int' cannot convert '{value}' to an integer.") from exc


def fn_float(value: Any) -> float:
    try:
        return float(_need(value, (str, int, float), "float", "parameter"))
    except ValueError as exc:
        raise ExpressionError(f"The template language function 'float' cannot convert '{value}'.") from exc


def fn_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ExpressionError(f"The template language function 'bool' cannot convert '{to_string(value)}' to a boolean.")


def _compare(function: str, a: Any, b: Any) -> int:
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    x, y = _numbers(function, a, b)
    return (x > y) - (x < y)


def fn_not(value: Any) -> bool:
    return not _need(value, (bool,), "not", "parameter")


def lazy_if(ev: Evaluator, scope: Scope, node: Call) -> Any:
    condition = ev.evaluate(node.args[0], scope)
    if not isinstance(condition, bool):
        condition = _need(condition, (bool,), "if", "first parameter")
    return ev.evaluate(node.args[1] if condition else node.args[2], scope)


def lazy_and(ev: Evaluator, scope: Scope, node: Call) -> bool:
    return all(_need(ev.evaluate(arg, scope), (bool,), "and", "parameters") for arg in node.args)


def lazy_or(ev: Evaluator, scope: Scope, node: Call) -> bool:
    return any(_need(ev.evaluate(arg, scope), (bool,), "or", "parameters") for arg in node.args)


def lazy_coalesce(ev: Evaluator, scope: Scope, node: Call) -> Any:
    for arg in node.args:
        value = ev.evaluate(arg, scope)
        if value is not None:
            return value
    return None


# --- lambdas ----------------------------------------------------------------------------------------------------


def lazy_lambda(ev: Evaluator, scope: Scope, node: Call) -> Lambda:
    names = []
    for arg in node.args[:-1]:
        if not isinstance(arg, Literal) or not isinstance(arg.value, str):
            raise ExpressionError("The template function 'lambda' expects its leading parameters to be string "
                                  "literals naming the lambda variables.")
        names.append(arg.value)
    return Lambda(tuple(names), node.args[-1], scope)


def ctx_lambda_variables(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> Any:
    name = _need(args[0], (str,), "lambdaVariables", "parameter")
    for key, value in scope.lambda_vars:
        if key == name:
            return value
    raise ExpressionError(f"The lambda variable '{name}' is not defined in this scope.")


def ctx_map(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> list[Any]:
    items = _need(args[0], (list,), "map", "first parameter") if args[0] is not None else []
    return [ev.call_lambda(args[1], [item, i], "map") for i, item in enumerate(items)]


def ctx_filter(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> list[Any]:
    items = _need(args[0], (list,), "filter", "first parameter")
    return [item for i, item in enumerate(items)
            if _need(ev.call_lambda(args[1], [item, i], "filter"), (bool,), "filter", "lambda result")]


def ctx_reduce(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> Any:
    accumulator = args[1]
    for i, item in enumerate(_need(args[0], (list,), "reduce", "first parameter")):
        accumulator = ev.call_lambda(args[2], [accumulator, item, i], "reduce")
    return accumulator


def ctx_sort(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> list[Any]:
    items = list(_need(args[0], (list,), "sort", "first parameter"))
    for i in range(1, len(items)):  # insertion sort: stable, and the lambda is only a "less than"
        j = i
        while j > 0 and _need(ev.call_lambda(args[1], [items[j], items[j - 1]], "sort"), (bool,), "sort",
                              "lambda result"):
            items[j - 1], items[j] = items[j], items[j - 1]
            j -= 1
    return items


def ctx_to_object(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in _need(args[0], (list,), "toObject", "first parameter"):
        key = _need(ev.call_lambda(args[1], [item], "toObject"), (str,), "toObject", "key lambda result")
        out[key] = ev.call_lambda(args[2], [item], "toObject") if len(args) > 2 else item
    return out


def ctx_group_by(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for item in _need(args[0], (list,), "groupBy", "first parameter"):
        key = _need(ev.call_lambda(args[1], [item], "groupBy"), (str,), "groupBy", "lambda result")
        out.setdefault(key, []).append(item)
    return out


def ctx_map_values(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> dict[str, Any]:
    obj = _need(args[0], (dict,), "mapValues", "first parameter")
    return {key: ev.call_lambda(args[1], [value], "mapValues") for key, value in obj.items()}


# --- dates ------------------------------------------------------------------------------------------------------

_STANDARD_FORMATS = {"d": "MM/dd/yyyy", "D": "dddd, dd MMMM yyyy", "f": "dddd, dd MMMM yyyy HH:mm",
                     "F": "dddd, dd MMMM yyyy HH:mm:ss", "g": "MM/dd/yyyy HH:mm", "G": "MM/dd/yyyy HH:mm:ss",
                     "M": "MMMM dd", "m": "MMMM dd", "O": "yyyy-MM-ddTHH:mm:ss.fffffffK",
                     "o": "yyyy-MM-ddTHH:mm:ss.fffffffK", "R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
                     "r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'", "s": "yyyy-MM-ddTHH:mm:ss", "t": "HH:mm",
                     "T": "HH:mm:ss", "u": "yyyy-MM-dd HH:mm:ssZ", "U": "dddd, dd MMMM yyyy HH:mm:ss",
                     "Y": "yyyy MMMM", "y": "yyyy MMMM"}
_DATE_TOKEN = re.compile(r"yyyy|yy|MMMM|MMM|MM|M|dddd|ddd|dd|d|HH|H|hh|h|mm|m|ss|s|f{1,7}|F{1,7}|tt|t|K|zzz|zz|z"
                         r"|'[^']*'|\"[^\"]*\"|\\.|.", re.DOTALL)
DEFAULT_UTCNOW_FORMAT = "yyyyMMddTHHmmssZ"


def format_datetime(moment: datetime, fmt: str) -> str:
    """Render a UTC datetime with a .NET (invariant culture) standard or custom format string."""
    fmt = _STANDARD_FORMATS.get(fmt, fmt) if len(fmt) == 1 else fmt
    out = []
    for token in _DATE_TOKEN.findall(fmt):
        hour12 = moment.hour % 12 or 12
        fraction = f"{moment.microsecond:06d}0"
        simple = {"yyyy": f"{moment.year:04d}", "yy": f"{moment.year % 100:02d}",
                  "MMMM": calendar.month_name[moment.month], "MMM": calendar.month_abbr[moment.month],
                  "MM": f"{moment.month:02d}", "M": str(moment.month),
                  "dddd": calendar.day_name[moment.weekday()], "ddd": calendar.day_abbr[moment.weekday()],
                  "dd": f"{moment.day:02d}", "d": str(moment.day), "HH": f"{moment.hour:02d}", "H": str(moment.hour),
                  "hh": f"{hour12:02d}", "h": str(hour12), "mm": f"{moment.minute:02d}", "m": str(moment.minute),
                  "ss": f"{moment.second:02d}", "s": str(moment.second), "tt": "AM" if moment.hour < 12 else "PM",
                  "t": "A" if moment.hour < 12 else "P", "K": "Z", "zzz": "+00:00", "zz": "+00", "z": "+0"}
        if token in simple:
            out.append(simple[token])
        elif token[0] == "f":
            out.append(fraction[:len(token)])
        elif token[0] == "F":
            out.append(fraction[:len(token)].rstrip("0"))
        elif token[0] in "'\"":
            out.append(token[1:-1])
        elif token[0] == "\\":
            out.append(token[1:])
        else:
            out.append(token)
    return "".join(out)


_DATE_FORMS = [
    (re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z?"), DEFAULT_UTCNOW_FORMAT),
    (re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?"), None),
    (re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}):(\d{2})(?::(\d{2}))?(?: ?([AP]M))?)?"), "G"),
]


def parse_datetime(text: Any, function: str) -> tuple[datetime, str]:
    """Parse the date forms ARM templates use; also returns a format that renders the same shape back."""
    text = _need(text, (str,), function, "parameter").strip()
    for pattern, shape in _DATE_FORMS:
        match = pattern.fullmatch(text)
        if not match:
            continue
        groups = match.groups()
        if shape == DEFAULT_UTCNOW_FORMAT:
            year, month, day, hour, minute, second = (int(g) for g in groups)
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC), shape
        if shape == "G":
            month, day, year = int(groups[0]), int(groups[1]), int(groups[2])
            hour, minute, second = int(groups[3] or 0), int(groups[4] or 0), int(groups[5] or 0)
            if groups[6] == "PM" and hour < 12:
                hour += 12
            elif groups[6] == "AM" and hour == 12:
                hour = 0
            return datetime(year, month, day, hour, minute, second, tzinfo=UTC), "M/d/yyyy h:mm:ss tt"
        year, month, day = int(groups[0]), int(groups[1]), int(groups[2])
        hour, minute, second = int(groups[3] or 0), int(groups[4] or 0), int(groups[5] or 0)
        micro = round(float(groups[6]) * 1_000_000) if groups[6] else 0
        moment = datetime(year, month, day, hour, minute, second, min(micro, 999999), tzinfo=UTC)
        offset = groups[7]
        if offset and offset != "Z":
            sign = 1 if offset[0] == "+" else -1
            digits = offset[1:].replace(":", "")
            moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if groups[3] is None:
            return moment, "yyyy-MM-dd"
        separator = "T" if "T" in text else " "
        fraction = ".fffffff" if groups[6] else ""
        return moment, f"yyyy-MM-dd{separator}HH:mm:ss{fraction}Z"
    raise ExpressionError(f"The template language function '{function}' could not parse '{text}' as a date time.")


_DURATION = re.compile(r"(-)?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def add_duration(moment: datetime, duration: Any) -> datetime:
    duration = _need(duration, (str,), "dateTimeAdd", "duration parameter")
    match = _DURATION.fullmatch(duration)
    if not match or duration in ("P", "-P") or duration.endswith("T"):
        raise ExpressionError(f"The template language function 'dateTimeAdd' expects an ISO 8601 duration; got "
                              f"'{duration}'.")
    sign = -1 if match.group(1) else 1
    years, months, weeks, days, hours, minutes = (int(g or 0) for g in match.groups()[1:7])
    seconds = float(match.group(8) or 0)
    total_months = moment.month - 1 + sign * (years * 12 + months)
    year, month = moment.year + total_months // 12, total_months % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    moment = moment.replace(year=year, month=month, day=day)
    return moment + sign * timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def fn_date_time_add(base: Any, duration: Any, fmt: Any = None) -> str:
    moment, shape = parse_datetime(base, "dateTimeAdd")
    result = add_duration(moment, duration)
    return format_datetime(result, _need(fmt, (str,), "dateTimeAdd", "format parameter") if fmt else shape)


def fn_date_time_from_epoch(value: Any) -> str:
    moment = datetime.fromtimestamp(_int(value, "dateTimeFromEpoch"), tz=UTC)
    return format_datetime(moment, "yyyy-MM-ddTHH:mm:ssZ")


def fn_date_time_to_epoch(value: Any) -> int:
    return int(parse_datetime(value, "dateTimeToEpoch")[0].timestamp())


def _only_in_defaults(scope: Scope, name: str) -> None:
    if scope.section != "parameters":
        raise ExpressionError(f"The template function '{name}' is not expected at this location. It can only be "
                              "used within the default value of a parameter. Please see https://aka.ms/arm-functions "
                              "for usage details.")


def ctx_utc_now(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> str:
    _only_in_defaults(scope, "utcNow")
    fmt = _need(args[0], (str,), "utcNow", "format parameter") if args else DEFAULT_UTCNOW_FORMAT
    return format_datetime(ev.host.now(), fmt)


def ctx_new_guid(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> str:
    _only_in_defaults(scope, "newGuid")
    return str(uuid.uuid4())


# --- template, deployment and resource functions ----------------------------------------------------------------


def ctx_parameters(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> Any:
    return ev.host.parameter(_need(args[0], (str,), "parameters", "parameter"), scope)


def ctx_variables(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> Any:
    return ev.host.variable(_need(args[0], (str,), "variables", "parameter"), scope)


def ctx_copy_index(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> int:
    name: str | None = None
    offset = 0
    for arg in args:
        if isinstance(arg, str):
            name = arg
        else:
            offset = _int(arg, "copyIndex", "offset parameter")
    if not scope.copy_indices:
        raise ExpressionError("The template function 'copyIndex' is not expected at this location. The function can "
                              "only be used in a resource, property, variable or output with copy specified. Please "
                              "see https://aka.ms/arm-copy for usage details.")
    if name is None:
        return scope.copy_indices[0][1] + offset
    for loop, position in scope.copy_indices:
        if loop.lower() == name.lower():
            return position + offset
    raise ExpressionError(f"The template function 'copyIndex' references the copy loop '{name}', which is not defined "
                          "at this location. Please see https://aka.ms/arm-copy for usage details.")


def ctx_resource_group(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> dict[str, Any]:
    return ev.host.resource_group_object()


def ctx_subscription(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> dict[str, Any]:
    return ev.host.subscription_object()


def ctx_tenant(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> dict[str, Any]:
    return ev.host.tenant_object()


def ctx_deployment(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> dict[str, Any]:
    return ev.host.deployment_object()


def ctx_environment(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> dict[str, Any]:
    return ev.host.environment_object()


def _type_and_names(function: str, args: list[Any]) -> tuple[str, list[str]]:
    resource_type = _need(args[0], (str,), function, "resource type")
    names = [to_string(_need(n, (str, int), function, "resource names")) for n in args[1:]]
    segments = resource_type.strip("/").split("/")
    if len(segments) < 2 or len(segments) - 1 != len(names):
        raise ExpressionError(f"Unable to evaluate template language function '{function}': the type "
                              f"'{resource_type}' requires '{max(len(segments) - 1, 1)}' resource name argument(s). "
                              "Please see https://aka.ms/arm-resource-functions for usage details.")
    return resource_type.strip("/"), names


def provider_path(resource_type: str, names: list[str]) -> str:
    """`providers/NS/t1/n1/t2/n2` for a type `NS/t1/t2` and names `[n1, n2]`."""
    namespace, *types = resource_type.split("/")
    return "providers/" + namespace + "".join(f"/{t}/{n}" for t, n in zip(types, names, strict=True))


def _split_scope_args(function: str, args: list[Any], limit: int) -> tuple[list[str], list[Any]]:
    position = next((i for i, a in enumerate(args) if isinstance(a, str) and "/" in a.strip("/")), None)
    if position is None or position > limit:
        raise ExpressionError(f"Unable to evaluate template language function '{function}': the resource type could "
                              "not be found among the arguments. Please see https://aka.ms/arm-resource-functions for "
                              "usage details.")
    return [_need(a, (str,), function, "scope parameters") for a in args[:position]], args[position:]


def ctx_resource_id(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> str:
    prefix, rest = _split_scope_args("resourceId", args, 2)
    resource_type, names = _type_and_names("resourceId", rest)
    subscription = prefix[0] if len(prefix) == 2 else ev.host.subscription_id
    group = prefix[-1] if prefix else ev.host.resource_group_name
    base = f"/subscriptions/{subscription}" + (f"/resourceGroups/{group}" if group else "")
    return f"{base}/{provider_path(resource_type, names)}"


def ctx_subscription_resource_id(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> str:
    prefix, rest = _split_scope_args("subscriptionResourceId", args, 1)
    resource_type, names = _type_and_names("subscriptionResourceId", rest)
    subscription = prefix[0] if prefix else ev.host.subscription_id
    return f"/subscriptions/{subscription}/{provider_path(resource_type, names)}"


def fn_tenant_resource_id(*args: Any) -> str:
    resource_type, names = _type_and_names("tenantResourceId", list(args))
    return f"/{provider_path(resource_type, names)}"


def fn_extension_resource_id(base: Any, *args: Any) -> str:
    base = _need(base, (str,), "extensionResourceId", "resourceId parameter").rstrip("/")
    resource_type, names = _type_and_names("extensionResourceId", list(args))
    return f"{base}/{provider_path(resource_type, names)}"


def fn_management_group_resource_id(*args: Any) -> str:
    group = args[0] if len(args) > 1 and isinstance(args[0], str) and "/" not in args[0] else None
    rest = list(args[1:] if group else args)
    if group is None:
        raise ExpressionError("Unable to evaluate template language function 'managementGroupResourceId': "
                              "management group deployments are not supported by this service.")
    resource_type, names = _type_and_names("managementGroupResourceId", rest)
    return f"/providers/Microsoft.Management/managementGroups/{group}/{provider_path(resource_type, names)}"


def ctx_reference(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> Any:
    if scope.section not in ("resources", "outputs"):
        raise ExpressionError("The template function 'reference' is not expected at this location. Please see "
                              "https://aka.ms/arm-functions#reference for usage details.")
    target = _need(args[0], (str,), "reference", "first parameter")
    api_version = _need(args[1], (str,), "reference", "apiVersion parameter") if len(args) > 1 and args[1] else None
    full = len(args) > 2 and to_string(args[2]).lower() == "full"
    resource_id, known_api_version = ev.host.resolve_reference(target)
    if ev.runtime is None:
        raise NeedsRuntime(resource_id)
    return ev.runtime.reference(resource_id, api_version or known_api_version, full)


def ctx_list(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> Any:
    if scope.section not in ("resources", "outputs"):
        raise ExpressionError(f"The template function '{node.name}' is not expected at this location. Please see "
                              "https://aka.ms/arm-functions for usage details.")
    target = _need(args[0], (str,), node.name, "first parameter")
    resource_id, known_api_version = ev.host.resolve_reference(target)
    api_version = args[1] if len(args) > 1 and isinstance(args[1], str) else known_api_version
    if ev.runtime is None:
        raise NeedsRuntime(resource_id)
    return ev.runtime.invoke_list(resource_id, node.name, api_version, args[2] if len(args) > 2 else None)


def ctx_resource_info(ev: Evaluator, scope: Scope, node: Call, args: list[Any]) -> dict[str, Any]:
    return ev.host.resource_info(_need(args[0], (str,), "resourceInfo", "parameter"))


def _pure(fn: Callable[..., Any], min_args: int, max_args: int | None) -> tuple[Callable[..., Any], int, int | None,
                                                                               str]:
    return fn, min_args, max_args, PURE


def _ctx(fn: Callable[..., Any], min_args: int, max_args: int | None) -> tuple[Callable[..., Any], int, int | None,
                                                                              str]:
    return fn, min_args, max_args, CONTEXT


FUNCTIONS: FunctionTable = {
    # strings
    "format": _pure(fn_format, 1, None),
    "concat": _pure(fn_concat, 1, None),
    "substring": _pure(fn_substring, 2, 3),
    "split": _pure(fn_split, 2, 2),
    "replace": _pure(fn_replace, 3, 3),
    "tolower": _pure(lambda s: _need(s, (str,), "toLower", "parameter").lower(), 1, 1),
    "toupper": _pure(lambda s: _need(s, (str,), "toUpper", "parameter").upper(), 1, 1),
    "trim": _pure(fn_trim, 1, 1),
    "padleft": _pure(fn_pad_left, 2, 3),
    "indexof": _pure(fn_index_of, 2, 2),
    "lastindexof": _pure(fn_last_index_of, 2, 2),
    "startswith": _pure(fn_starts_with, 2, 2),
    "endswith": _pure(fn_ends_with, 2, 2),
    "base64": _pure(fn_base64, 1, 1),
    "base64tostring": _pure(lambda s: _b64decode(s, "base64ToString"), 1, 1),
    "base64tojson": _pure(lambda s: fn_json(_b64decode(s, "base64ToJson")), 1, 1),
    "json": _pure(fn_json, 1, 1),
    "string": _pure(fn_string, 1, 1),
    "uri": _pure(fn_uri, 2, 2),
    "uricomponent": _pure(fn_uri_component, 1, 1),
    "uricomponenttostring": _pure(fn_uri_component_to_string, 1, 1),
    "datauri": _pure(fn_data_uri, 1, 1),
    "datauritostring": _pure(fn_data_uri_to_string, 1, 1),
    "guid": _pure(fn_guid, 1, None),
    "uniquestring": _pure(fn_unique_string, 1, None),
    "newguid": _ctx(ctx_new_guid, 0, 0),
    "utcnow": _ctx(ctx_utc_now, 0, 1),
    "datetimeadd": _pure(fn_date_time_add, 2, 3),
    "datetimefromepoch": _pure(fn_date_time_from_epoch, 1, 1),
    "datetimetoepoch": _pure(fn_date_time_to_epoch, 1, 1),
    # arrays and objects
    "array": _pure(fn_array, 1, 1),
    "createarray": _pure(lambda *a: list(a), 0, None),
    "createobject": _pure(fn_create_object, 0, None),
    "contains": _pure(fn_contains, 2, 2),
    "empty": _pure(fn_empty, 1, 1),
    "length": _pure(fn_length, 1, 1),
    "first": _pure(fn_first, 1, 1),
    "last": _pure(fn_last, 1, 1),
    "take": _pure(fn_take, 2, 2),
    "skip": _pure(fn_skip, 2, 2),
    "range": _pure(fn_range, 2, 2),
    "union": _pure(fn_union, 1, None),
    "intersection": _pure(fn_intersection, 2, None),
    "shallowmerge": _pure(fn_shallow_merge, 1, 1),
    "flatten": _pure(fn_flatten, 1, 1),
    "items": _pure(fn_items, 1, 1),
    "objectkeys": _pure(fn_object_keys, 1, 1),
    "tryget": _pure(fn_try_get, 2, None),
    "indexfromend": _pure(fn_index_from_end, 2, 2),
    "tryindexfromend": _pure(fn_try_index_from_end, 2, 2),
    "null": _pure(lambda: None, 0, 0),
    # numbers
    "add": _pure(fn_add, 2, 2),
    "sub": _pure(fn_sub, 2, 2),
    "mul": _pure(fn_mul, 2, 2),
    "div": _pure(fn_div, 2, 2),
    "mod": _pure(fn_mod, 2, 2),
    "int": _pure(fn_int, 1, 1),
    "float": _pure(fn_float, 1, 1),
    "min": _pure(lambda *a: _min_max("min", min, a), 1, None),
    "max": _pure(lambda *a: _min_max("max", max, a), 1, None),
    # comparison and logic
    "equals": _pure(deep_equal, 2, 2),
    "greater": _pure(lambda a, b: _compare("greater", a, b) > 0, 2, 2),
    "greaterorequals": _pure(lambda a, b: _compare("greaterOrEquals", a, b) >= 0, 2, 2),
    "less": _pure(lambda a, b: _compare("less", a, b) < 0, 2, 2),
    "lessorequals": _pure(lambda a, b: _compare("lessOrEquals", a, b) <= 0, 2, 2),
    "not": _pure(fn_not, 1, 1),
    "bool": _pure(fn_bool, 1, 1),
    "true": _pure(lambda: True, 0, 0),
    "false": _pure(lambda: False, 0, 0),
    "if": (lazy_if, 3, 3, LAZY),
    "and": (lazy_and, 2, None, LAZY),
    "or": (lazy_or, 2, None, LAZY),
    "coalesce": (lazy_coalesce, 1, None, LAZY),
    # lambdas
    "lambda": (lazy_lambda, 1, None, LAZY),
    "lambdavariables": _ctx(ctx_lambda_variables, 1, 1),
    "map": _ctx(ctx_map, 2, 2),
    "filter": _ctx(ctx_filter, 2, 2),
    "reduce": _ctx(ctx_reduce, 3, 3),
    "sort": _ctx(ctx_sort, 2, 2),
    "toobject": _ctx(ctx_to_object, 2, 3),
    "groupby": _ctx(ctx_group_by, 2, 2),
    "mapvalues": _ctx(ctx_map_values, 2, 2),
    # template and deployment
    "parameters": _ctx(ctx_parameters, 1, 1),
    "variables": _ctx(ctx_variables, 1, 1),
    "copyindex": _ctx(ctx_copy_index, 0, 2),
    "deployment": _ctx(ctx_deployment, 0, 0),
    "environment": _ctx(ctx_environment, 0, 0),
    "resourcegroup": _ctx(ctx_resource_group, 0, 0),
    "subscription": _ctx(ctx_subscription, 0, 0),
    "tenant": _ctx(ctx_tenant, 0, 0),
    # resources
    "resourceid": _ctx(ctx_resource_id, 2, None),
    "subscriptionresourceid": _ctx(ctx_subscription_resource_id, 2, None),
    "tenantresourceid": _pure(fn_tenant_resource_id, 2, None),
    "extensionresourceid": _pure(fn_extension_resource_id, 3, None),
    "managementgroupresourceid": _pure(fn_management_group_resource_id, 2, None),
    "reference": _ctx(ctx_reference, 1, 3),
    "list*": _ctx(ctx_list, 1, 3),
    "resourceinfo": _ctx(ctx_resource_info, 1, 1),
}
