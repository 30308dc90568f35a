"""Where in a YAML file a validation problem is: `line 12: gates.development.high.quorum: ...`.

Shared by the policy files a person edits by hand (gate policy, playbooks), so every one of them
names the line and the path of each problem the same way.
"""

from __future__ import annotations

from typing import Any

import yaml

Place = tuple[str | int, ...]


def path_of(place: Place) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in place).lstrip(".")


def problem_at(root: yaml.Node | None, place: Place, msg: str) -> str:
    """`line 12: gates.development.high.quorum: quorum -1: must be at least 1`."""
    line = line_of(root, place)
    where = f"line {line}: " if line is not None else ""
    return f"{where}{path_of(place) or '(top)'}: {msg}"


def line_of(root: yaml.Node | None, place: Place) -> int | None:
    """The line of the deepest node of `place` that the YAML has (1-based)."""
    if root is None:
        return None
    node: Any = root
    line = root.start_mark.line + 1
    for part in place:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def load_located(text: str) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree (whose marks give the lines); raises yaml.YAMLError,
    also for a key given twice in one mapping (YAML would keep the last one silently: a
    hand-edited policy must not lose a rule that way) and for nesting too deep to load."""
    try:
        root = yaml.compose(text)
        _no_duplicate_keys(root)
        if root is None:  # an empty document
            return None, None
        loader = yaml.SafeLoader("")  # built from the tree just read: one parse, not two
        try:
            return loader.construct_document(root), root
        finally:
            loader.dispose()
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def _no_duplicate_keys(node: yaml.Node | None) -> None:
    seen: set[int] = set()
    stack = [node]
    while stack:
        here = stack.pop()
        if here is None or id(here) in seen:  # an alias is the same node again
            continue
        seen.add(id(here))
        if isinstance(here, yaml.MappingNode):
            first: dict[str, yaml.Node] = {}
            for key, value in here.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in first:
                        line = first[key.value].start_mark.line + 1
                        raise yaml.MarkedYAMLError(
                            problem=f"duplicate key '{key.value}' (first on line {line})",
                            problem_mark=key.start_mark,
                        )
                    first[key.value] = key
                stack += [key, value]
        elif isinstance(here, yaml.SequenceNode):
            stack += here.value


def syntax_problem(exc: yaml.YAMLError) -> str:
    """`line 3: not valid YAML: mapping values are not allowed here`."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{where}not valid YAML: {problem}"
