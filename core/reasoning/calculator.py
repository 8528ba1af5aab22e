"""GSM8K's calculator annotations as a step check: in ``Natalia sold 48/2 = <<48/2=24>>24``
the annotation ``<<48/2=24>>`` says that ``48/2`` evaluates to ``24``. A line is
calculator-correct when every annotation on it evaluates to the value it writes.

This is a *proxy* for process correctness: it catches wrong arithmetic, not a right
computation of the wrong quantity, and a line without annotations has nothing to check
(it counts as correct). The expressions are evaluated by a small arithmetic evaluator over
Python's ``ast`` (numbers, + - * /, unary minus, parentheses), never ``eval``.
"""

from __future__ import annotations

import ast
import operator
import re
from fractions import Fraction

_ANNOTATION_RE = re.compile(r"<<([^<>]*)>>")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_MAX_LEN = 200  # an annotation longer than this is not a calculator call


class NotArithmetic(ValueError):
    """The text is not an expression of numbers, + - * / and parentheses."""


def _number(text: str) -> Fraction:
    # exact rationals: 0.1*3 must equal 0.3, as GSM8K's annotations assume
    try:
        return Fraction(text.replace(",", "").replace("$", "").strip().rstrip("."))
    except (ValueError, ZeroDivisionError) as e:
        raise NotArithmetic(f"not a number: {text!r}") from e


def evaluate(expr: str) -> Fraction:
    """The exact value of an arithmetic expression, e.g. ``"(3+5)*2/4"`` -> 4.

    Thousands separators and ``$`` signs are dropped first (GSM8K writes ``$1,200``);
    anything else (names, powers, calls) raises :class:`NotArithmetic`, as does a
    division by zero."""
    text = expr.replace(",", "").replace("$", "").strip()
    if not text or len(text) > _MAX_LEN:
        raise NotArithmetic(f"not an expression: {expr!r}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise NotArithmetic(f"not an expression: {expr!r}") from e

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return _number(repr(node.value))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise NotArithmetic(f"division by zero in {expr!r}")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](walk(node.operand))
        raise NotArithmetic(f"not arithmetic: {ast.dump(node)[:60]} in {expr!r}")

    return walk(tree)


def annotation_ok(annotation: str) -> bool:
    """Whether one annotation's body ``expr=value`` holds (``expr`` evaluates to ``value``,
    up to a rounding to the value's own decimals, as GSM8K rounds money to cents)."""
    expr, sep, value = annotation.rpartition("=")
    if not sep:
        return False
    try:
        got, want = evaluate(expr), _number(value)
    except NotArithmetic:
        return False
    decimals = len(value.strip().partition(".")[2]) if "." in value else 0
    return got == want or round(got, decimals) == want


def annotations(text: str) -> list[str]:
    """The bodies of the ``<<...>>`` annotations of ``text``, in order."""
    return _ANNOTATION_RE.findall(text)


def line_ok(line: str) -> bool:
    """Every annotation on ``line`` holds (a line without annotations: True)."""
    return all(annotation_ok(a) for a in annotations(line))


def step_labels(text: str) -> list[bool]:
    """One calculator label per step (non-empty line before ``####``) of ``text``."""
    return [line_ok(ln) for ln in text.split("####")[0].split("\n") if ln.strip()]
