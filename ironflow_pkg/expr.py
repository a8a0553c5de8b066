"""Expression language: a deterministic subset of CEL (features.md §2.2).

Used for trigger expressions (``{event, expression}``) and pub/sub filters (websocket.md §5.4).
:func:`compile_expr` tokenizes and parses the source once into an immutable AST (raising
:class:`ExprError`, with a 0-based character position, for anything that does not parse);
:meth:`Expression.evaluate` walks that tree with a step budget (raising :class:`EvalError`);
:meth:`Expression.test` is the "true, or else false" rule of §2.2 that callers normally want.
No Python code is ever generated, compiled or ``eval``'d.

Values are plain Python values: ``None`` (null), ``bool``, ``int`` (64-bit, overflow is an
error), ``float`` (double), ``str``, ``list``/``tuple`` (list), ``dict`` (map),
``datetime`` (timestamp; naive values are read as UTC) and ``timedelta`` (duration).

Grammar (CEL precedence, lowest first; every binary level is left-associative)::

    expr     = or ["?" or ":" expr]
    or       = and {"||" and}            and = rel {"&&" rel}
    rel      = add {("<"|"<="|">"|">="|"=="|"!="|"in") add}
    add      = mul {("+"|"-") mul}       mul = unary {("*"|"/"|"%") unary}
    unary    = {"!"|"-"} postfix         postfix = primary {"." IDENT ["(" args ")"] | "[" expr "]"}
    primary  = literal | IDENT ["(" args ")"] | "(" expr ")" | "[" [exprs [","]] "]"
             | "{" [expr ":" expr {"," expr ":" expr} [","]] "}"
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any, Callable, Mapping

__all__ = [
    "ExprError", "EvalError", "EvalLimitError", "Expression", "compile_expr",
    "MAX_EXPR_BYTES", "MAX_STEPS", "MAX_DEPTH", "MAX_REGEX_CHARS", "MAX_ALLOC",
]

#: features.md §2.2: expressions are capped at 4 KiB (counted in UTF-8 bytes).
MAX_EXPR_BYTES = 4096
#: features.md §2.2: one evaluation may take at most this many AST node evaluations, then false.
MAX_STEPS = 10_000
#: Nesting guard: parser recursion and AST depth stay far below Python's recursion limit, so a
#: hostile expression gets an ExprError instead of a RecursionError.
MAX_DEPTH = 200
#: matches(): longer patterns are refused (compile cost; the re module's cache is shared).
MAX_REGEX_CHARS = 1024
#: Characters + list/map elements one evaluation may create (concatenation, literals,
#: map/filter results, case conversion): without it 10 000 steps of ``s + s`` over a large event
#: field could allocate gigabytes.
MAX_ALLOC = 4_000_000

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


class ExprError(ValueError):
    """The expression does not parse (or breaks a static limit). ``position`` is the 0-based
    character offset of the offending token, ``None`` for whole-expression limits."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


class EvalError(Exception):
    """A runtime error: unknown variable, missing field, type mismatch, division by zero..."""


class EvalLimitError(EvalError):
    """Step, allocation or recursion budget exhausted. Unlike other errors it is never absorbed
    by ``&&``, ``||``, ``exists`` or ``all``: the whole evaluation stops."""


def _perr(message: str, pos: int) -> ExprError:
    return ExprError(f"expression: {message} at {pos}", pos)


# --- tokenizer ------------------------------------------------------------------------------------

_WS = " \t\n\r\f"
_DIGITS = "0123456789"
_HEX = "0123456789abcdefABCDEF"
_IDENT_START = "_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_IDENT_CHARS = _IDENT_START + _DIGITS
_OPS2 = ("==", "!=", "<=", ">=", "&&", "||")
_OPS1 = "<>!+-*/%?:.,[](){}"
_LITERAL_WORDS: dict[str, Any] = {"true": True, "false": False, "null": None}
# CEL reserves these; they may not name a variable (they may still be map fields after ".").
_RESERVED = frozenset({
    "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let", "loop",
    "package", "namespace", "return", "var", "void", "while",
})
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"', "a": "\a", "b": "\b",
    "f": "\f", "v": "\v", "`": "`", "?": "?",
}


class _Tok:
    """kind: "int" | "double" | "string" | "lit" (true/false/null) | "ident" | "op" | "eof"."""

    __slots__ = ("kind", "value", "pos", "text")

    def __init__(self, kind: str, value: Any, pos: int, text: str) -> None:
        self.kind = kind
        self.value = value
        self.pos = pos
        self.text = text

    def show(self) -> str:
        if self.kind == "eof":
            return "end of input"
        text = self.text if len(self.text) <= 24 else self.text[:21] + "..."
        return f"'{text}'"

    def is_op(self, value: str) -> bool:
        return self.kind == "op" and self.value == value


def _tokenize(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    n = len(src)
    i = 0
    while i < n:
        c = src[i]
        if c in _WS:
            i += 1
            continue
        if c == "/" and src.startswith("//", i):  # CEL line comment
            j = src.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        start = i
        if c in _DIGITS:
            i = _scan_number(src, i, toks)
        elif c in "\"'" or (c in "rR" and i + 1 < n and src[i + 1] in "\"'"):
            raw = c in "rR"
            value, i = _scan_string(src, i + 1 if raw else i, raw)
            toks.append(_Tok("string", value, start, src[start:i]))
        elif c in _IDENT_START:
            while i < n and src[i] in _IDENT_CHARS:
                i += 1
            word = src[start:i]
            if word in _LITERAL_WORDS:
                toks.append(_Tok("lit", _LITERAL_WORDS[word], start, word))
            elif word == "in":
                toks.append(_Tok("op", "in", start, word))
            else:
                toks.append(_Tok("ident", word, start, word))
        elif src.startswith(_OPS2, i):
            toks.append(_Tok("op", src[i:i + 2], start, src[i:i + 2]))
            i += 2
        elif c in _OPS1:
            toks.append(_Tok("op", c, start, c))
            i += 1
        else:
            raise _perr(f"unexpected character {c!r}", i)
    toks.append(_Tok("eof", None, n, ""))
    return toks


def _scan_number(src: str, i: int, toks: list[_Tok]) -> int:
    n = len(src)
    start = i
    if src.startswith(("0x", "0X"), i):
        i += 2
        while i < n and src[i] in _HEX:
            i += 1
        if i == start + 2:
            raise _perr("invalid number literal", start)
        kind, value = "int", int(src[start + 2:i], 16)
    else:
        while i < n and src[i] in _DIGITS:
            i += 1
        is_double = False
        if i + 1 < n and src[i] == "." and src[i + 1] in _DIGITS:
            i += 1
            while i < n and src[i] in _DIGITS:
                i += 1
            is_double = True
        if i < n and src[i] in "eE":
            k = i + 1
            if k < n and src[k] in "+-":
                k += 1
            if k < n and src[k] in _DIGITS:
                while k < n and src[k] in _DIGITS:
                    k += 1
                i = k
                is_double = True
        text = src[start:i]
        if is_double:
            kind, value = "double", float(text)
            if math.isinf(value):
                raise _perr("double literal out of range", start)
        else:
            kind, value = "int", int(text)
    # "1u" (CEL uint), "1abc", "0x1g": a number glued to letters is one bad token, not two.
    if i < n and src[i] in _IDENT_CHARS:
        raise _perr("invalid number literal", start)
    toks.append(_Tok(kind, value, start, src[start:i]))
    return i


def _scan_string(src: str, i: int, raw: bool) -> tuple[str, int]:
    """``src[i]`` is the opening quote; returns (value, index after the closing quote)."""
    n = len(src)
    quote = src[i]
    start = i
    out: list[str] = []
    j = i + 1
    while True:
        if j >= n or src[j] in "\r\n":
            raise _perr("unterminated string", start - (1 if raw else 0))
        c = src[j]
        if c == quote:
            return "".join(out), j + 1
        if c != "\\" or raw:
            out.append(c)
            j += 1
            continue
        if j + 1 >= n:
            raise _perr("unterminated string", start)
        e = src[j + 1]
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            j += 2
            continue
        if e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = src[j + 2:j + 2 + width]
            if len(digits) != width or any(d not in _HEX for d in digits):
                raise _perr(f"invalid escape '\\{e}'", j)
            code = int(digits, 16)
            nxt = j + 2 + width
        elif e in "0123":
            digits = src[j + 1:j + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits):
                raise _perr("invalid octal escape", j)
            code = int(digits, 8)
            nxt = j + 4
        else:
            raise _perr(f"invalid escape '\\{e}'", j)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _perr("invalid code point in escape", j)
        out.append(chr(code))
        j = nxt


# --- AST ------------------------------------------------------------------------------------------
#
# Every node has ``pos`` (source offset), ``kids()`` (for the iterative depth check) and
# ``ev(cx)``, which charges one step and returns the value or raises EvalError. One Python frame
# per AST level keeps evaluation recursion within MAX_DEPTH frames.


class _Cx:
    """Per-evaluation state: variables, comprehension bindings, step and allocation budgets."""

    __slots__ = ("variables", "bound", "steps", "alloc_left")

    def __init__(self, variables: Mapping[str, Any], max_steps: int) -> None:
        self.variables = variables
        self.bound: dict[str, Any] = {}
        self.steps = max_steps
        self.alloc_left = MAX_ALLOC

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise EvalLimitError("evaluation exceeded the step limit")

    def alloc(self, n: int) -> None:
        self.alloc_left -= n
        if self.alloc_left < 0:
            raise EvalLimitError("evaluation exceeded the allocation limit")


class _Node:
    __slots__ = ("pos",)

    def kids(self) -> tuple[_Node, ...]:
        return ()

    def ev(self, cx: _Cx) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


class _Lit(_Node):
    __slots__ = ("value",)

    def __init__(self, value: Any, pos: int) -> None:
        self.value = value
        self.pos = pos

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        return self.value


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, name: str, pos: int) -> None:
        self.name = name
        self.pos = pos

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        name = self.name
        if name in cx.bound:
            return cx.bound[name]
        try:
            return cx.variables[name]
        except KeyError:
            raise EvalError(f"unknown variable '{name}'") from None


class _Select(_Node):
    __slots__ = ("obj", "name")

    def __init__(self, obj: _Node, name: str, pos: int) -> None:
        self.obj = obj
        self.name = name
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return (self.obj,)

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        obj = self.obj.ev(cx)
        if not isinstance(obj, Mapping):
            raise EvalError(f"cannot select field '{self.name}' on {_kind(obj)}")
        try:
            return obj[self.name]
        except KeyError:
            raise EvalError(f"no such key '{self.name}'") from None


class _Has(_Node):
    """``has(a.b)``: is field ``b`` present in map ``a``? (CEL: only the last selection is
    tested; an error while evaluating ``a`` still propagates.)"""

    __slots__ = ("sel",)

    def __init__(self, sel: _Select, pos: int) -> None:
        self.sel = sel
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return (self.sel,)

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        obj = self.sel.obj.ev(cx)
        if not isinstance(obj, Mapping):
            raise EvalError(f"has() cannot test field '{self.sel.name}' on {_kind(obj)}")
        return self.sel.name in obj


class _Index(_Node):
    __slots__ = ("obj", "index")

    def __init__(self, obj: _Node, index: _Node, pos: int) -> None:
        self.obj = obj
        self.index = index
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return (self.obj, self.index)

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        obj = self.obj.ev(cx)
        key = self.index.ev(cx)
        if isinstance(obj, (list, tuple)):
            k = _kind(key)
            if k == "double" and key.is_integer():
                key = int(key)
            elif k != "int":
                raise EvalError(f"list index must be an int, not {k}")
            if not 0 <= key < len(obj):
                raise EvalError(f"list index {key} out of range (size {len(obj)})")
            return obj[key]
        if isinstance(obj, Mapping):
            found, value = _map_get(obj, key)
            if not found:
                raise EvalError(f"no such key {_show(key)}")
            return value
        raise EvalError(f"cannot index {_kind(obj)}")


class _List(_Node):
    __slots__ = ("items",)

    def __init__(self, items: list[_Node], pos: int) -> None:
        self.items = tuple(items)
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return self.items

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        cx.alloc(len(self.items))
        out = []
        for item in self.items:  # a loop, not a comprehension: one frame per nesting level
            out.append(item.ev(cx))
        return out


class _Map(_Node):
    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[_Node, _Node]], pos: int) -> None:
        self.pairs = tuple(pairs)
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return tuple(n for pair in self.pairs for n in pair)

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        cx.alloc(len(self.pairs))
        out: dict[Any, Any] = {}
        for knode, vnode in self.pairs:
            key = knode.ev(cx)
            kind = _kind(key)
            if kind not in ("string", "int", "bool"):
                raise EvalError(f"map keys must be string, int or bool, not {kind}")
            # CEL rejects duplicate keys; "key in out" also catches Python's 1 == True clash.
            if _map_get(out, key)[0] or key in out:
                raise EvalError(f"duplicate map key {_show(key)}")
            out[key] = vnode.ev(cx)
        return out


class _Not(_Node):
    __slots__ = ("arg",)

    def __init__(self, arg: _Node, pos: int) -> None:
        self.arg = arg
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return (self.arg,)

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        v = self.arg.ev(cx)
        if v is True or v is False:
            return not v
        raise EvalError(f"'!' needs a bool, not {_kind(v)}")


class _Neg(_Node):
    __slots__ = ("arg",)

    def __init__(self, arg: _Node, pos: int) -> None:
        self.arg = arg
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return (self.arg,)

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        v = self.arg.ev(cx)
        k = _kind(v)
        if k == "int":
            return _int64(-v)
        if k == "double":
            return -v
        raise EvalError(f"unary '-' needs a number, not {k}")


class _Chain(_Node):
    """A run of same-precedence left-associative operators, ``a + b - c``, folded left to right
    (one node instead of a left-deep tree, so long chains cost no recursion)."""

    __slots__ = ("operands", "ops")

    def __init__(self, operands: list[_Node], ops: list[str], pos: int) -> None:
        self.operands = tuple(operands)
        self.ops = tuple(_BINOPS[op] for op in ops)
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return self.operands

    def ev(self, cx: _Cx) -> Any:
        operands = self.operands
        acc = operands[0].ev(cx)
        for i, fn in enumerate(self.ops, 1):
            rhs = operands[i].ev(cx)
            cx.step()
            acc = fn(acc, rhs, cx)
        return acc


class _Logic(_Node):
    """n-ary ``&&`` (is_and) or ``||`` with CEL's commutative error absorption: one decisive
    operand (false for &&, true for ||) wins over errors in the others; otherwise the first error
    (or non-bool operand) is raised. Evaluation stops at the first decisive operand."""

    __slots__ = ("operands", "is_and")

    def __init__(self, operands: list[_Node], is_and: bool, pos: int) -> None:
        self.operands = tuple(operands)
        self.is_and = is_and
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return self.operands

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        decisive = not self.is_and
        error: EvalError | None = None
        for node in self.operands:
            try:
                v = node.ev(cx)
            except EvalLimitError:
                raise
            except EvalError as e:
                error = error or e
                continue
            if v is decisive:
                return decisive
            if v is not (not decisive) and error is None:
                op = "&&" if self.is_and else "||"
                error = EvalError(f"'{op}' needs bools, not {_kind(v)}")
        if error is not None:
            raise error
        return not decisive


class _Cond(_Node):
    __slots__ = ("cond", "then", "other")

    def __init__(self, cond: _Node, then: _Node, other: _Node, pos: int) -> None:
        self.cond = cond
        self.then = then
        self.other = other
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return (self.cond, self.then, self.other)

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        c = self.cond.ev(cx)
        if c is True:
            return self.then.ev(cx)
        if c is False:
            return self.other.ev(cx)
        raise EvalError(f"'?:' condition must be a bool, not {_kind(c)}")


class _Call(_Node):
    """A function ``f(args)`` or a method ``recv.f(args)`` (then ``recv`` is args[0])."""

    __slots__ = ("name", "args", "fn")

    def __init__(self, name: str, args: list[_Node], fn: Callable[..., Any], pos: int) -> None:
        self.name = name
        self.args = tuple(args)
        self.fn = fn
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return self.args

    def ev(self, cx: _Cx) -> Any:
        cx.step()
        values = []
        for arg in self.args:
            values.append(arg.ev(cx))
        return self.fn(cx, *values)


class _Comp(_Node):
    """Comprehension macros over a list (its elements) or a map (its keys)."""

    __slots__ = ("kind", "rng", "var", "pred", "expr")

    def __init__(self, kind: str, rng: _Node, var: str, pred: _Node | None, expr: _Node | None,
                 pos: int) -> None:
        self.kind = kind
        self.rng = rng
        self.var = var
        self.pred = pred
        self.expr = expr
        self.pos = pos

    def kids(self) -> tuple[_Node, ...]:
        return tuple(n for n in (self.rng, self.pred, self.expr) if n is not None)

    def ev(self, cx: _Cx) -> Any:
        # One method with plain loops: a single Python frame per comprehension nesting level.
        cx.step()
        rng = self.rng.ev(cx)
        if isinstance(rng, (list, tuple)):
            items: Any = rng
        elif isinstance(rng, Mapping):
            items = list(rng.keys())
        else:
            raise EvalError(f"{self.kind}() needs a list or map, not {_kind(rng)}")
        kind, var, pred, expr = self.kind, self.var, self.pred, self.expr
        # exists = "||" over the items and all = "&&": errors lose to a decisive result (CEL).
        absorbing = kind in ("exists", "all")
        error: EvalError | None = None
        count = 0
        out: list[Any] = []
        bound = cx.bound
        saved = bound.get(var, _MISSING)
        try:
            for item in items:
                bound[var] = item
                cx.step()
                if pred is not None:
                    try:
                        v = pred.ev(cx)
                        if v is not True and v is not False:
                            raise EvalError(f"{kind}() predicate must be a bool, not {_kind(v)}")
                    except EvalLimitError:
                        raise
                    except EvalError as e:
                        if not absorbing:
                            raise
                        error = error or e
                        continue
                    if kind == "exists":
                        if v:
                            return True
                    elif kind == "all":
                        if not v:
                            return False
                    elif kind == "exists_one":
                        count += v
                    elif kind == "filter":
                        if v:
                            out.append(item)
                    elif v:  # map with a filter predicate
                        out.append(expr.ev(cx))  # type: ignore[union-attr]
                else:  # plain map
                    out.append(expr.ev(cx))  # type: ignore[union-attr]
        finally:
            if saved is _MISSING:
                bound.pop(var, None)
            else:
                bound[var] = saved
        if absorbing:
            if error is not None:
                raise error
            return kind == "all"
        if kind == "exists_one":
            return count == 1
        cx.alloc(len(out))
        return out


_MISSING = object()


# --- values ---------------------------------------------------------------------------------------

_NUM = ("int", "double")
_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)


def _kind(v: Any) -> str:
    """The CEL type name of a Python value (unsupported values report their Python type)."""
    if v is None:
        return "null"
    t = type(v)
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "double"
    if t is str:
        return "string"
    if t is list or t is tuple:
        return "list"
    if t is dict:
        return "map"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, Mapping):
        return "map"
    if isinstance(v, datetime):
        return "timestamp"
    if isinstance(v, timedelta):
        return "duration"
    return type(v).__name__


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _int64(v: int) -> int:
    if INT64_MIN <= v <= INT64_MAX:
        return v
    raise EvalError("int overflow")


def _float(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:
        raise EvalError("int too large to convert to double") from None


def _ts(v: datetime) -> datetime:
    return v if v.tzinfo is not None else v.replace(tzinfo=_UTC)


def _map_get(m: Mapping[Any, Any], key: Any) -> tuple[bool, Any]:
    """CEL map lookup: string keys directly; int and bool keys only match keys of the same kind
    (Python would let ``1`` find ``True``); an integral double finds the equal int key."""
    if isinstance(key, str):
        if key in m:
            return True, m[key]
        return False, None
    kind = _kind(key)
    if kind == "double":
        if not key.is_integer():
            return False, None
        key, kind = int(key), "int"
    if kind not in ("int", "bool"):
        raise EvalError(f"unsupported map key type {kind}")
    for k, v in m.items():
        if _kind(k) == kind and k == key:
            return True, v
    return False, None


def _eq(a: Any, b: Any) -> bool:
    """CEL equality: numbers compare across int/double, other kinds must match (else false),
    lists and maps compare deeply."""
    ka, kb = _kind(a), _kind(b)
    if ka in _NUM and kb in _NUM:
        return a == b
    if ka != kb:
        return False
    if ka == "list":
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b))
    if ka == "map":
        if len(a) != len(b):
            return False
        for k, v in a.items():
            found, w = _map_get(b, k)
            if not found or not _eq(v, w):
                return False
        return True
    if ka == "timestamp":
        return _ts(a) == _ts(b)
    if ka in ("null", "bool", "string", "duration"):
        return bool(a == b)
    raise EvalError(f"cannot compare values of type {ka}")


def _ordered(a: Any, b: Any, op: str) -> tuple[Any, Any]:
    ka, kb = _kind(a), _kind(b)
    if ka in _NUM and kb in _NUM:
        return a, b
    if ka == kb and ka in ("string", "bool", "duration"):
        return a, b
    if ka == kb == "timestamp":
        return _ts(a), _ts(b)
    raise EvalError(f"'{op}' cannot order {ka} and {kb}")


def _op_lt(a: Any, b: Any, cx: _Cx) -> bool:
    a, b = _ordered(a, b, "<")
    return a < b


def _op_le(a: Any, b: Any, cx: _Cx) -> bool:
    a, b = _ordered(a, b, "<=")
    return a <= b


def _op_gt(a: Any, b: Any, cx: _Cx) -> bool:
    a, b = _ordered(a, b, ">")
    return a > b


def _op_ge(a: Any, b: Any, cx: _Cx) -> bool:
    a, b = _ordered(a, b, ">=")
    return a >= b


def _op_eq(a: Any, b: Any, cx: _Cx) -> bool:
    return _eq(a, b)


def _op_ne(a: Any, b: Any, cx: _Cx) -> bool:
    return not _eq(a, b)


def _op_in(a: Any, b: Any, cx: _Cx) -> bool:
    # List membership uses deep equality; map membership tests keys. Never a substring test.
    if isinstance(b, (list, tuple)):
        return any(_eq(a, item) for item in b)
    if isinstance(b, Mapping):
        if _kind(a) not in ("string", "int", "double", "bool"):
            return False
        return _map_get(b, a)[0]
    raise EvalError(f"'in' needs a list or map on the right, not {_kind(b)}")


def _op_add(a: Any, b: Any, cx: _Cx) -> Any:
    ka, kb = _kind(a), _kind(b)
    if ka == kb == "int":
        return _int64(a + b)
    if ka in _NUM and kb in _NUM:
        return _float(a) + _float(b)
    if ka == kb == "string":
        cx.alloc(len(a) + len(b))
        return a + b
    if ka == kb == "list":
        cx.alloc(len(a) + len(b))
        return [*a, *b]
    try:
        if ka == "timestamp" and kb == "duration":
            return _ts(a) + b
        if ka == "duration" and kb == "timestamp":
            return _ts(b) + a
        if ka == kb == "duration":
            return a + b
    except OverflowError:
        raise EvalError("timestamp or duration out of range") from None
    raise EvalError(f"'+' cannot add {ka} and {kb}")


def _op_sub(a: Any, b: Any, cx: _Cx) -> Any:
    ka, kb = _kind(a), _kind(b)
    if ka == kb == "int":
        return _int64(a - b)
    if ka in _NUM and kb in _NUM:
        return _float(a) - _float(b)
    try:
        if ka == kb == "timestamp":
            return _ts(a) - _ts(b)
        if ka == "timestamp" and kb == "duration":
            return _ts(a) - b
        if ka == kb == "duration":
            return a - b
    except OverflowError:
        raise EvalError("timestamp or duration out of range") from None
    raise EvalError(f"'-' cannot subtract {kb} from {ka}")


def _nums(a: Any, b: Any, op: str) -> tuple[str, str]:
    ka, kb = _kind(a), _kind(b)
    if ka in _NUM and kb in _NUM:
        return ka, kb
    raise EvalError(f"'{op}' needs numbers, not {ka} and {kb}")


def _op_mul(a: Any, b: Any, cx: _Cx) -> Any:
    ka, kb = _nums(a, b, "*")
    if ka == kb == "int":
        return _int64(a * b)
    return _float(a) * _float(b)


def _op_div(a: Any, b: Any, cx: _Cx) -> Any:
    ka, kb = _nums(a, b, "/")
    if b == 0:
        raise EvalError("division by zero")
    if ka == kb == "int":
        q = abs(a) // abs(b)  # truncate toward zero, like CEL (and C, Go), not Python's floor
        return _int64(-q if (a < 0) != (b < 0) else q)
    return _float(a) / _float(b)


def _op_mod(a: Any, b: Any, cx: _Cx) -> Any:
    ka, kb = _nums(a, b, "%")
    if b == 0:
        raise EvalError("modulo by zero")
    if ka == kb == "int":
        r = abs(a) % abs(b)  # sign follows the dividend (truncated division)
        return -r if a < 0 else r
    try:
        return math.fmod(_float(a), _float(b))
    except ValueError:  # fmod(inf, x): a double overflowed earlier in the expression
        raise EvalError("modulo of a non-finite double") from None


_BINOPS: dict[str, Callable[[Any, Any, _Cx], Any]] = {
    "<": _op_lt, "<=": _op_le, ">": _op_gt, ">=": _op_ge, "==": _op_eq, "!=": _op_ne,
    "in": _op_in, "+": _op_add, "-": _op_sub, "*": _op_mul, "/": _op_div, "%": _op_mod,
}
# Precedence levels of the binary operators (CEL): 1 ||, 2 &&, 3 relations, 4 additive, 5 mult.
_PREC: dict[str, int] = {
    "||": 1, "&&": 2, "<": 3, "<=": 3, ">": 3, ">=": 3, "==": 3, "!=": 3, "in": 3,
    "+": 4, "-": 4, "*": 5, "/": 5, "%": 5,
}


# --- functions ------------------------------------------------------------------------------------

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_DOUBLE_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_TS_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))\Z")
_DUR_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DUR_UNIT_US: dict[str, Fraction] = {
    "ns": Fraction(1, 1000), "us": Fraction(1), "\u00b5s": Fraction(1), "\u03bcs": Fraction(1),
    "ms": Fraction(1000), "s": Fraction(10**6), "m": Fraction(60 * 10**6),
    "h": Fraction(3600 * 10**6),
}


def _fn_size(cx: _Cx, v: Any) -> int:
    if isinstance(v, (str, list, tuple)) or isinstance(v, Mapping):
        return len(v)  # strings: code points, like CEL
    raise EvalError(f"size() needs a string, list or map, not {_kind(v)}")


def _fn_int(cx: _Cx, v: Any) -> int:
    k = _kind(v)
    if k == "int":
        return _int64(v)
    if k == "double":
        if not math.isfinite(v):
            raise EvalError("int() of a non-finite double")
        return _int64(int(v))  # int() truncates toward zero
    if k == "string":
        if len(v) > 32 or not _INT_RE.match(v):
            raise EvalError(f"int() cannot parse {_show(v)}")
        return _int64(int(v))
    if k == "timestamp":
        return (_ts(v) - _EPOCH) // timedelta(seconds=1)
    raise EvalError(f"int() cannot convert {k}")


def _fn_double(cx: _Cx, v: Any) -> float:
    k = _kind(v)
    if k in _NUM:
        return _float(v)
    if k == "string":
        if len(v) > 400 or not _DOUBLE_RE.match(v):
            raise EvalError(f"double() cannot parse {_show(v)}")
        return float(v)
    raise EvalError(f"double() cannot convert {k}")


def _fmt_double(f: float) -> str:
    """Go's ``%g`` (shortest round-trip digits; exponent form below 1e-4 and from 1e6), which is
    what cel-go's string(double) prints: 1.0 -> "1", 2.5 -> "2.5", 1e6 -> "1e+06"."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digits_t, exp = Decimal(repr(f)).normalize().as_tuple()
    digits = "".join(map(str, digits_t))
    x = exp + len(digits) - 1  # type: ignore[operator]  # scientific exponent
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mant}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if x >= 0:
        whole = digits[:x + 1].ljust(x + 1, "0")
        frac = digits[x + 1:]
        return neg + whole + ("." + frac if frac else "")
    return neg + "0." + "0" * (-x - 1) + digits


def _fmt_timestamp(v: datetime) -> str:
    u = _ts(v).astimezone(_UTC)
    text = u.strftime("%Y-%m-%dT%H:%M:%S")
    if u.year < 1000:
        text = f"{u.year:04d}" + text[text.index("-"):]
    if u.microsecond:
        text += ("." + f"{u.microsecond:06d}").rstrip("0")
    return text + "Z"


def _fmt_duration(v: timedelta) -> str:
    us = (v.days * 86400 + v.seconds) * 10**6 + v.microseconds
    sign = "-" if us < 0 else ""
    secs, frac = divmod(abs(us), 10**6)
    return f"{sign}{secs}" + (f".{frac:06d}".rstrip("0") if frac else "") + "s"


def _fn_string(cx: _Cx, v: Any) -> str:
    k = _kind(v)
    if k == "string":
        return v
    if k == "bool":
        return "true" if v else "false"
    if k == "int":
        out = str(v)
    elif k == "double":
        out = _fmt_double(v)
    elif k == "timestamp":
        out = _fmt_timestamp(v)
    elif k == "duration":
        out = _fmt_duration(v)
    else:
        raise EvalError(f"string() cannot convert {k}")
    cx.alloc(len(out))
    return out


def _fn_bool(cx: _Cx, v: Any) -> bool:
    if v is True or v is False:
        return v
    if v == "true" and isinstance(v, str):
        return True
    if v == "false" and isinstance(v, str):
        return False
    raise EvalError(f"bool() cannot convert {_show(v) if isinstance(v, str) else _kind(v)}")


def _parse_timestamp(s: str) -> datetime:
    m = _TS_RE.match(s)
    if m is None:
        raise EvalError(f"timestamp() cannot parse {_show(s)} (want RFC 3339)")
    y, mo, d, hh, mi, ss, frac, sign, oh, om = m.groups()
    try:
        tz = _UTC
        if sign:
            if int(oh) > 23 or int(om) > 59:
                raise ValueError("offset")
            off = timedelta(hours=int(oh), minutes=int(om))
            tz = timezone(-off if sign == "-" else off)
        us = int((frac or "").ljust(6, "0")[:6])  # sub-microsecond digits are truncated
        return datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss), us, tzinfo=tz)
    except ValueError:
        raise EvalError(f"timestamp() out of range: {_show(s)}") from None


def _fn_timestamp(cx: _Cx, v: Any) -> datetime:
    k = _kind(v)
    if k == "timestamp":
        return _ts(v)
    if k == "string":
        return _parse_timestamp(v)
    if k == "int":
        try:
            return _EPOCH + timedelta(seconds=v)
        except OverflowError:
            raise EvalError("timestamp() out of range") from None
    raise EvalError(f"timestamp() cannot convert {k}")


def _parse_duration(s: str) -> timedelta:
    body = s[1:] if s[:1] in ("+", "-") else s
    total = Fraction(0)
    if body == "0":
        return timedelta(0)
    i = 0
    if not body or len(body) > 256:
        raise EvalError(f"duration() cannot parse {_show(s)}")
    while i < len(body):
        m = _DUR_PART_RE.match(body, i)
        if m is None:
            raise EvalError(f"duration() cannot parse {_show(s)} (e.g. \"1h30m\", \"1.5s\")")
        total += Fraction(m.group(1)) * _DUR_UNIT_US[m.group(2)]
        i = m.end()
    us = int(total)  # truncates toward zero: sub-microsecond precision is dropped
    try:
        return timedelta(microseconds=-us if s[:1] == "-" else us)
    except OverflowError:
        raise EvalError(f"duration() out of range: {_show(s)}") from None


def _fn_duration(cx: _Cx, v: Any) -> timedelta:
    k = _kind(v)
    if k == "duration":
        return v
    if k == "string":
        return _parse_duration(v)
    raise EvalError(f"duration() cannot convert {k}")


def _strs(name: str, recv: Any, arg: Any) -> None:
    if not isinstance(recv, str) or not isinstance(arg, str):
        raise EvalError(f"{name}() needs strings, not {_kind(recv)} and {_kind(arg)}")


def _m_starts(cx: _Cx, recv: Any, arg: Any) -> bool:
    _strs("startsWith", recv, arg)
    return recv.startswith(arg)


def _m_ends(cx: _Cx, recv: Any, arg: Any) -> bool:
    _strs("endsWith", recv, arg)
    return recv.endswith(arg)


def _m_contains(cx: _Cx, recv: Any, arg: Any) -> bool:
    _strs("contains", recv, arg)
    return arg in recv


def _compile_regex(pattern: str) -> re.Pattern[str]:
    if len(pattern) > MAX_REGEX_CHARS:
        raise EvalError(f"matches() pattern longer than {MAX_REGEX_CHARS} characters")
    try:
        return re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as e:
        raise EvalError(f"matches() bad pattern: {e}") from None


def _m_matches(cx: _Cx, recv: Any, arg: Any) -> bool:
    _strs("matches", recv, arg)
    return _compile_regex(arg).search(recv) is not None


def _matches_fixed(rx: re.Pattern[str]) -> Callable[..., bool]:
    def fn(cx: _Cx, recv: Any, arg: Any) -> bool:
        _strs("matches", recv, arg)
        return rx.search(recv) is not None
    return fn


_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}


def _m_lower(cx: _Cx, recv: Any) -> str:
    if not isinstance(recv, str):
        raise EvalError(f"lowerAscii() needs a string, not {_kind(recv)}")
    cx.alloc(len(recv))
    return recv.translate(_LOWER)


def _m_upper(cx: _Cx, recv: Any) -> str:
    if not isinstance(recv, str):
        raise EvalError(f"upperAscii() needs a string, not {_kind(recv)}")
    cx.alloc(len(recv))
    return recv.translate(_UPPER)


# name -> (function, number of arguments). Methods receive the receiver as first argument.
_FUNCTIONS: dict[str, tuple[Callable[..., Any], int]] = {
    "size": (_fn_size, 1), "int": (_fn_int, 1), "double": (_fn_double, 1),
    "string": (_fn_string, 1), "bool": (_fn_bool, 1), "timestamp": (_fn_timestamp, 1),
    "duration": (_fn_duration, 1),
}
_METHODS: dict[str, tuple[Callable[..., Any], int]] = {
    "startsWith": (_m_starts, 1), "endsWith": (_m_ends, 1), "contains": (_m_contains, 1),
    "matches": (_m_matches, 1), "lowerAscii": (_m_lower, 0), "upperAscii": (_m_upper, 0),
    "size": (_fn_size, 0),
}
_MACROS = {"exists": (2,), "all": (2,), "exists_one": (2,), "filter": (2,), "map": (2, 3)}


# --- parser ---------------------------------------------------------------------------------------


class _Parser:
    """Recursive descent for the nesting (parentheses, literals, arguments, ternary branches);
    the binary operators are read as a flat operand/operator sequence and grouped by precedence
    afterwards, so operator chains never recurse."""

    def __init__(self, src: str) -> None:
        self.toks = _tokenize(src)
        self.i = 0

    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def expect(self, op: str) -> _Tok:
        tok = self.take()
        if not tok.is_op(op):
            raise _perr(f"unexpected {tok.show()}, expected '{op}'", tok.pos)
        return tok

    def parse(self) -> _Node:
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "eof":
            raise _perr(f"unexpected {tok.show()}", tok.pos)
        return node

    # Python frames per nesting level: expr -> unary -> expr (parentheses, index) or
    # expr -> unary -> items -> expr (literals, arguments), so MAX_DEPTH levels stay ~600 frames.

    def expr(self, level: int, ternary: bool = True) -> _Node:
        """A full expression (``ternary``) or, for a then-branch, a conditional-or."""
        if level > MAX_DEPTH:
            raise _perr(f"nesting deeper than {MAX_DEPTH}", self.peek().pos)
        operands = [self.unary(level)]
        ops: list[_Tok] = []
        while True:
            tok = self.peek()
            if tok.kind != "op" or tok.value not in _PREC:
                break
            ops.append(self.take())
            operands.append(self.unary(level))
        node = self.group(operands, ops, 0, len(operands), 1) if ops else operands[0]
        if not ternary or not self.peek().is_op("?"):
            return node
        q = self.take()
        # CEL: the then-branch is a conditional-or; a nested ternary there needs parentheses.
        then = self.expr(level + 1, ternary=False)
        self.expect(":")
        other = self.expr(level + 1)
        return _Cond(node, then, other, q.pos)

    def group(self, operands: list[_Node], ops: list[_Tok], lo: int, hi: int, prec: int) -> _Node:
        """Group ``operands[lo:hi]`` (``ops[k-1]`` sits between operands k-1 and k) by splitting
        on the loosest operators present; recursion is bounded by the 5 precedence levels."""
        if hi - lo == 1:
            return operands[lo]
        while True:
            cuts = [k for k in range(lo + 1, hi) if _PREC[ops[k - 1].value] == prec]
            if cuts:
                break
            prec += 1
        bounds = [lo, *cuts, hi]
        parts = [self.group(operands, ops, bounds[m], bounds[m + 1], prec + 1)
                 for m in range(len(bounds) - 1)]
        pos = ops[cuts[0] - 1].pos
        if prec <= 2:
            return _Logic(parts, prec == 2, pos)
        return _Chain(parts, [ops[k - 1].value for k in cuts], pos)

    def unary(self, level: int) -> _Node:
        """Prefix operators, a primary, then its postfix chain (one frame for all three)."""
        prefix: list[_Tok] = []
        while self.peek().is_op("!") or self.peek().is_op("-"):
            prefix.append(self.take())
        tok = self.take()
        kind = tok.kind
        node: _Node
        if kind == "int":
            after = self.peek()
            if prefix and prefix[-1].value == "-" and not (after.is_op(".") or after.is_op("[")):
                # "-9223372036854775808" is a literal, not the negation of an out-of-range int.
                minus = prefix.pop()
                if -tok.value < INT64_MIN:
                    raise _perr("integer literal out of range", minus.pos)
                node = _Lit(-tok.value, minus.pos)
            elif tok.value > INT64_MAX:
                raise _perr("integer literal out of range", tok.pos)
            else:
                node = _Lit(tok.value, tok.pos)
        elif kind in ("double", "string", "lit"):
            node = _Lit(tok.value, tok.pos)
        elif kind == "ident":
            if self.peek().is_op("("):
                self.take()
                node = self.call(tok, self.items(")", level, pairs=False, trailing=False))
            elif tok.value in _RESERVED:
                raise _perr(f"reserved identifier '{tok.value}'", tok.pos)
            else:
                node = _Ident(tok.value, tok.pos)
        elif tok.is_op("("):
            node = self.expr(level + 1)
            self.expect(")")
        elif tok.is_op("["):
            node = _List(self.items("]", level, pairs=False, trailing=True), tok.pos)
        elif tok.is_op("{"):
            node = _Map(self.items("}", level, pairs=True, trailing=True), tok.pos)
        else:
            raise _perr(f"unexpected {tok.show()}", tok.pos)
        while True:  # postfix: member, method call, index
            tok = self.peek()
            if tok.is_op("."):
                self.take()
                name = self.take()
                if name.kind != "ident":
                    raise _perr(f"unexpected {name.show()}, expected a field name", name.pos)
                if self.peek().is_op("("):
                    self.take()
                    node = self.method(node, name, self.items(")", level, pairs=False, trailing=False))
                else:
                    node = _Select(node, name.value, name.pos)
            elif tok.is_op("["):
                self.take()
                index = self.expr(level + 1)
                self.expect("]")
                node = _Index(node, index, tok.pos)
            else:
                break
        for tok in reversed(prefix):
            node = _Not(node, tok.pos) if tok.value == "!" else _Neg(node, tok.pos)
        return node

    def items(self, close: str, level: int, pairs: bool, trailing: bool) -> list[Any]:
        """Comma-separated expressions (or ``key: value`` pairs) up to and including ``close``.
        CEL allows a trailing comma in list and map literals, not in argument lists."""
        out: list[Any] = []
        if self.peek().is_op(close):
            self.take()
            return out
        while True:
            item = self.expr(level + 1)
            if pairs:
                self.expect(":")
                item = (item, self.expr(level + 1))
            out.append(item)
            tok = self.take()
            if tok.is_op(close):
                return out
            if not tok.is_op(","):
                raise _perr(f"unexpected {tok.show()}, expected ',' or '{close}'", tok.pos)
            if trailing and self.peek().is_op(close):
                self.take()
                return out

    def call(self, tok: _Tok, args: list[_Node]) -> _Node:
        name = tok.value
        if name == "has":
            if len(args) != 1 or not isinstance(args[0], _Select):
                raise _perr("has() needs one field selection, like has(a.b)", tok.pos)
            return _Has(args[0], tok.pos)
        if name not in _FUNCTIONS:
            raise _perr(f"unknown function '{name}'", tok.pos)
        fn, arity = _FUNCTIONS[name]
        if len(args) != arity:
            raise _perr(f"{name}() takes {arity} argument{'s' if arity != 1 else ''}", tok.pos)
        arg = args[0]
        if name in ("timestamp", "duration") and isinstance(arg, _Lit) and isinstance(arg.value, str):
            try:  # a literal that can never convert is a compile-time error
                (_parse_timestamp if name == "timestamp" else _parse_duration)(arg.value)
            except EvalError as e:
                raise _perr(str(e), arg.pos) from None
        return _Call(name, args, fn, tok.pos)

    def method(self, recv: _Node, tok: _Tok, args: list[_Node]) -> _Node:
        name = tok.value
        if name in _MACROS:
            if len(args) not in _MACROS[name]:
                want = " or ".join(str(n) for n in _MACROS[name])
                raise _perr(f"{name}() takes {want} arguments", tok.pos)
            var = args[0]
            if not isinstance(var, _Ident):
                raise _perr(f"{name}() needs a variable name as first argument", var.pos)
            if name == "map":
                pred, expr = (args[1], args[2]) if len(args) == 3 else (None, args[1])
            else:
                pred, expr = args[1], None
            return _Comp(name, recv, var.name, pred, expr, tok.pos)
        if name not in _METHODS:
            raise _perr(f"unknown method '{name}'", tok.pos)
        fn, arity = _METHODS[name]
        if len(args) != arity:
            raise _perr(f"{name}() takes {arity} argument{'s' if arity != 1 else ''}", tok.pos)
        if name == "matches" and isinstance(args[0], _Lit) and isinstance(args[0].value, str):
            try:  # literal patterns are checked and compiled once
                fn = _matches_fixed(_compile_regex(args[0].value))
            except EvalError as e:
                raise _perr(str(e), args[0].pos) from None
        return _Call(name, [recv, *args], fn, tok.pos)


def _check_depth(root: _Node) -> None:
    """Iteratively bound the AST depth (edges from the root) so evaluation cannot recurse too
    deeply: "!!!!x" or "a.b.c.d..." build deep trees without deep parser recursion."""
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _perr(f"nesting deeper than {MAX_DEPTH}", node.pos)
        stack.extend((kid, depth + 1) for kid in node.kids())


def _parse(source: str, max_bytes: int = MAX_EXPR_BYTES) -> _Node:
    if not isinstance(source, str):
        raise ExprError("expression: must be a string")
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise ExprError(f"expression: longer than {max_bytes} bytes ({size})")
    try:
        root = _Parser(source).parse()
    except RecursionError:  # safety net; MAX_DEPTH should make this unreachable
        raise ExprError(f"expression: nesting deeper than {MAX_DEPTH}") from None
    _check_depth(root)
    return root


# --- public API -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expression:
    """A parsed expression. Immutable and safe to share between threads and evaluations.
    Build one with :func:`compile_expr` (cached); ``Expression(source)`` parses too."""

    source: str
    _root: _Node | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._root is None:
            object.__setattr__(self, "_root", _parse(self.source))

    def evaluate(self, variables: Mapping[str, Any] | None = None, *,
                 max_steps: int = MAX_STEPS) -> Any:
        """Evaluate with ``variables`` (name -> value). Raises :class:`EvalError` on runtime
        errors and :class:`EvalLimitError` past ``max_steps`` node evaluations."""
        cx = _Cx(variables if variables is not None else {}, max_steps)
        try:
            return self._root.ev(cx)  # type: ignore[union-attr]
        except RecursionError:  # deeply nested *data* (deep equality on nested lists)
            raise EvalLimitError("evaluation nested too deeply") from None

    def test(self, variables: Mapping[str, Any] | None = None, *,
             max_steps: int = MAX_STEPS) -> bool:
        """features.md §2.2: True only when the result is exactly ``true``; errors, the step cap
        and non-bool results all count as false. Never raises."""
        try:
            return self.evaluate(variables, max_steps=max_steps) is True
        except Exception:  # noqa: BLE001 - the contract is "any failure is false"
            return False


@lru_cache(maxsize=1024)
def _compile_cached(source: str, max_bytes: int) -> Expression:
    return Expression(source, _parse(source, max_bytes))


def compile_expr(source: str, *, max_bytes: int = MAX_EXPR_BYTES) -> Expression:
    """Parse ``source`` once (results are cached by source text). Raises :class:`ExprError`
    with a message like ``expression: unexpected ')' at 14`` (0-based character offset)."""
    if not isinstance(source, str):
        raise ExprError("expression: must be a string")
    return _compile_cached(source, max_bytes)
