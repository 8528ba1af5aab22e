"""Reading a sweep file: safe YAML, bounded before anything is built from it.

A sweep file is small and flat. Anything else (a file that is not a regular file, not
UTF-8, larger than a sweep file can sensibly be, nested hundreds deep, or an alias bomb
whose expansion would fill the memory) is refused with one line, before it is expanded.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from ablab.errors import UserError

MAX_BYTES = 1_000_000
MAX_DEPTH = 50
MAX_NODES = 100_000  # scalars, lists and mappings after aliases are expanded


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent override is a typo's favourite hiding place)."""


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (list, dict)):
            raise yaml.constructor.ConstructorError(None, None, "a key must be a name, not a list or mapping",
                                                    key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _check_size(root: yaml.Node, file: str) -> None:
    """Depth and expanded size of the node graph, walked without recursion; an alias is a
    second reference to the same node, so a bomb is counted, not built."""
    count = 0
    stack: list[tuple[yaml.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            raise UserError(f"nested more than {MAX_DEPTH} levels deep", file=file)
        if count > MAX_NODES:
            raise UserError(f"expands to more than {MAX_NODES} values (YAML aliases?)", file=file,
                            hint="a sweep file lists settings; write them out")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))


def loads(text: str, file: str, what: str = "invalid YAML") -> Any:
    """YAML text -> plain data, bounded; errors name `file`."""
    try:
        loader = _SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                return None
            _check_size(root, file)
            return loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "python/" in str(exc) or "could not determine a constructor" in str(exc):
            problem = "YAML tags that build Python objects are not allowed in sweep files"
        raise UserError(f"{what}{where}: {problem}", file=file) from None
    except RecursionError:
        raise UserError(f"nested more than {MAX_DEPTH} levels deep", file=file) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A sweep file as a mapping; one UserError for anything that is not one."""
    path = Path(path)
    file = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError("no such sweep file", file=file) from None
    except OSError as exc:
        raise UserError(f"cannot read the sweep file ({exc.strerror or exc})", file=file) from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError("is a folder, not a sweep file", file=file)
    if not stat.S_ISREG(info.st_mode):
        # a FIFO or a device would block or never end
        raise UserError("not a regular file", file=file)
    if info.st_size > MAX_BYTES:
        raise UserError(f"larger than {MAX_BYTES // 1000} kB: not a sweep file", file=file)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read the sweep file ({exc.strerror or exc})", file=file) from None
    if len(raw) > MAX_BYTES:  # /proc files say size 0
        raise UserError(f"larger than {MAX_BYTES // 1000} kB: not a sweep file", file=file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start})", file=file, hint="save the file as UTF-8") from None
    if "\x00" in text:
        raise UserError("not a text file (it holds NUL bytes)", file=file)
    data = loads(text, file)
    if data is None:
        raise UserError("the sweep file is empty", file=file)
    if not isinstance(data, dict):
        raise UserError("a sweep file must be a mapping of keys (name, trainable, base, ...)", file=file)
    return data
