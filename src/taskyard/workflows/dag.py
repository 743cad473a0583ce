"""Flows in Airflow's ``>>`` syntax, parsed into a DAG of task names.

A flow is one or more lines (or ``;``-separated statements) such as
``"[process_table_1, process_table_2] >> process_final_table"`` or ``"a >> [b, c] >> d"``.
Every name on the left of ``>>`` runs before every name on its right. A name is a task file
without its extension. Errors (:class:`FlowError`) give the line and column and a hint.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from taskyard.agent import kinds
from taskyard.errors import InvalidInput

TASK_SUFFIXES = kinds.SUFFIXES  # the kinds of task file a flow's names may stand for
_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)|(?P<op>>>|<<|\[|\]|,)|(?P<bad>\S))")


class FlowError(InvalidInput):
    """A flow that cannot be run: a syntax error, an unknown or ambiguous name, or a cycle."""

    def __init__(self, message: str, *, line: int, column: int, hint: str) -> None:
        super().__init__(f"flow line {line}, column {column}: {message}; {hint}", field="dag_flow")
        self.line, self.column, self.hint = line, column, hint


@dataclass
class Dag:
    """Task names in the order they were first written, and each one's upstream names."""

    names: list[str] = field(default_factory=list)
    upstream: dict[str, list[str]] = field(default_factory=dict)
    where: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (line, column) first seen

    def add(self, name: str, line: int, column: int) -> None:
        if name not in self.upstream:
            self.names.append(name)
            self.upstream[name] = []
            self.where[name] = (line, column)

    def link(self, before: str, after: str) -> None:
        if before not in self.upstream[after]:
            self.upstream[after].append(before)

    def downstream(self, name: str) -> list[str]:
        return [other for other in self.names if name in self.upstream[other]]

    def roots(self) -> list[str]:
        return [name for name in self.names if not self.upstream[name]]


@dataclass
class _Token:
    kind: str  # "name", an operator, or "end"
    text: str
    line: int
    column: int


def parse(flow: str, files: Iterable[str] | None = None) -> Dag:
    """The DAG of ``flow``; with ``files`` (file names in the tasks' folder), each name must be one task file."""
    dag = Dag()
    statements = list(_statements(flow))
    if not statements:
        raise FlowError("the flow is empty", line=1, column=1, hint='write it as "task_1 >> task_2"')
    for tokens in statements:
        _Statement(tokens, dag).parse()
    _check_acyclic(dag)
    if files is not None:
        task_files(dag, files)
    return dag


def task_files(dag: Dag, files: Iterable[str]) -> dict[str, str]:
    """Each name of ``dag`` to its one task file among ``files``; unknown or ambiguous names raise."""
    by_stem: dict[str, list[str]] = {}
    for file_name in sorted(files):
        stem, dot, suffix = file_name.rpartition(".")
        if dot and f".{suffix}" in TASK_SUFFIXES:
            by_stem.setdefault(stem, []).append(file_name)
    return {name: _one_file(name, by_stem, dag.where[name]) for name in dag.names}


def _one_file(name: str, by_stem: Mapping[str, list[str]], where: tuple[int, int]) -> str:
    found = by_stem.get(name, [])
    line, column = where
    if len(found) > 1:
        raise FlowError(
            f"task name {name!r} is ambiguous: {' and '.join(found)} are both there",
            line=line, column=column, hint="rename or remove all but one of them",
        )
    if not found:
        close = difflib.get_close_matches(name, list(by_stem), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"add {name}.py or {name}.sh to the folder"
        raise FlowError(f"no task file for {name!r} (.py, .sh or .ipynb)", line=line, column=column, hint=hint)
    return found[0]


def _statements(flow: str) -> Iterable[list[_Token]]:
    for number, text in enumerate(flow.splitlines() or [""], start=1):
        tokens: list[_Token] = []
        for token in _tokens(text.split("#", 1)[0], number):
            if token.text == ";" and token.kind == "bad":
                if tokens:
                    yield [*tokens, _Token("end", "", number, token.column)]
                tokens = []
            else:
                tokens.append(token)
        if tokens:
            yield [*tokens, _Token("end", "", number, len(text.rstrip()) + 1)]


def _tokens(text: str, line: int) -> Iterable[_Token]:
    position = 0
    while position < len(text) and text[position:].strip():
        match = _TOKEN.match(text, position)
        assert match is not None  # the pattern matches any non-blank character
        kind = match.lastgroup or "bad"
        yield _Token(kind, match.group(kind), line, match.start(kind) + 1)
        position = match.end()


class _Statement:
    """``group (">>" group)*``, where a group is a name or ``[name, name, ...]``."""

    def __init__(self, tokens: list[_Token], dag: Dag) -> None:
        self.tokens, self.at, self.dag = tokens, 0, dag

    def parse(self) -> None:
        before = self._group()
        while self._peek().text == ">>":
            self.at += 1
            after = self._group()
            for upstream in before:
                for name in after:
                    self.dag.link(upstream, name)
            before = after
        token = self._peek()
        if token.kind != "end":
            hint = "use >> (upstream on the left)" if token.text == "<<" else "join tasks with >>"
            self._fail(token, f"unexpected {token.text!r}", hint)

    def _group(self) -> list[str]:
        token = self._take()
        if token.kind == "name":
            return [self._name(token)]
        if token.text != "[":
            self._fail(token, f"expected a task name or '[', found {_shown(token)}", 'write "a >> b" or "[a, b] >> c"')
        names = [self._name(self._expect_name())]
        while self._peek().text == ",":
            self.at += 1
            names.append(self._name(self._expect_name()))
        closing = self._take()
        if closing.text != "]":
            self._fail(closing, f"expected ',' or ']', found {_shown(closing)}", "close the list with ]")
        return names

    def _expect_name(self) -> _Token:
        token = self._take()
        if token.kind != "name":
            self._fail(token, f"expected a task name, found {_shown(token)}", "names are task files without extension")
        return token

    def _name(self, token: _Token) -> str:
        self.dag.add(token.text, token.line, token.column)
        return token.text

    def _peek(self) -> _Token:
        return self.tokens[self.at]

    def _take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += token.kind != "end"
        return token

    @staticmethod
    def _fail(token: _Token, message: str, hint: str) -> None:
        raise FlowError(message, line=token.line, column=token.column, hint=hint)


def _shown(token: _Token) -> str:
    return "the end of the line" if token.kind == "end" else repr(token.text)


def _check_acyclic(dag: Dag) -> None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for name in dag.names:
        cycle = _find_cycle(dag, name, state, [])
        if cycle:
            line, column = dag.where[cycle[0]]
            raise FlowError(
                f"the flow has a cycle: {' >> '.join(cycle)}",
                line=line, column=column, hint="a task cannot run after itself; remove one of these links",
            )


def _find_cycle(dag: Dag, name: str, state: dict[str, int], path: list[str]) -> list[str] | None:
    if state.get(name) == 2:
        return None
    if state.get(name) == 1:
        return [*path[path.index(name):], name]
    state[name] = 1
    for after in dag.downstream(name):
        cycle = _find_cycle(dag, after, state, [*path, name])
        if cycle:
            return cycle
    state[name] = 2
    return None
