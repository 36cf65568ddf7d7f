"""Shared pieces of the synthetic-task tests: single-threaded torch, oracle solvers written from the text.

The oracles read only the context (regular expressions and a from-scratch simulation of the bAbI
facts), never the generators' internals, so a generator that hid or garbled the answer fails them.
"""

from __future__ import annotations

import re

import pytest
import torch

torch.set_num_threads(1)

PEOPLE = ("Mary", "John", "Daniel", "Sandra", "Fred", "Bill")
PLACES = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
_NAME = "|".join(PEOPLE)
_PLACE = "|".join(PLACES)
_EVENT = re.compile(
    rf"\b(?P<mover>{_NAME}) (?:went|journeyed|travelled|moved) to the (?P<to>{_PLACE})\."
    rf"|\b(?P<taker>{_NAME}) (?:picked up|got|grabbed|took) the (?P<taken>\w+)\."
    rf"|\b(?P<dropper>{_NAME}) (?:dropped|put down|discarded|left) the (?P<dropped>\w+)\."
    rf"|\b(?P<giver>{_NAME}) gave the (?P<given>\w+) to (?P<receiver>{_NAME})\."
    rf"|\bThe (?P<a>{_PLACE}) is (?P<dir>north|south|east|west) of the (?P<b>{_PLACE})\."
)


def solve_passkey(context: str) -> str:
    keys = re.findall(r"The pass key is (\d+)\. Remember it\. \1 is the pass key\.", context)
    assert len(keys) == 1, f"expected one pass-key needle, found {keys}"
    return " " + keys[0]


def solve_niah(context: str) -> str:
    question = r"What is the special magic (\w+) for (\S+) mentioned in the provided text\?"
    kind, key = re.search(question, context).groups()
    values = re.findall(rf"One of the special magic {kind}s for {re.escape(key)} is: (\S+?)\.(?:\s|$)", context)
    assert len(values) == 1, f"expected one needle for {key}, found {values}"
    return " " + values[0]


def solve_mqar(context: str) -> str:
    pairs_line, _, rest = context.partition("\n")
    key = rest.rsplit("\n", 1)[-1].split(" ")[-1]
    assert key.endswith(":"), key
    values = re.findall(rf"(?:^| ){re.escape(key)}(v\d+)(?= |$)", pairs_line)
    assert len(values) == 1, f"expected one pair for {key}, found {values}"
    return values[0]


def solve_babilong(context: str) -> str:
    """Replay every fact in order and answer the final question."""
    question = re.search(r"\nQuestion: (.*)\nAnswer:$", context).group(1)
    at: dict[str, str] = {}
    holder: dict[str, str | None] = {}
    where: dict[str, list[str]] = {}
    gives: list[tuple[str, str, str]] = []
    relations: list[tuple[str, str, str]] = []

    def put(obj: str, place: str) -> None:
        trail = where.setdefault(obj, [])
        if not trail or trail[-1] != place:
            trail.append(place)

    for m in _EVENT.finditer(context.rpartition("\nQuestion: ")[0]):
        g = m.groupdict()
        if g["mover"]:
            at[g["mover"]] = g["to"]
            for obj, h in holder.items():
                if h == g["mover"]:
                    put(obj, g["to"])
        elif g["taker"]:
            holder[g["taken"]] = g["taker"]
            put(g["taken"], at[g["taker"]])
        elif g["dropper"]:
            holder[g["dropped"]] = None
        elif g["giver"]:
            holder[g["given"]] = g["receiver"]
            gives.append((g["giver"], g["given"], g["receiver"]))
        else:
            relations.append((g["a"], g["dir"], g["b"]))
    if m := re.fullmatch(r"Where is (\w+)\?", question):
        return " " + at[m.group(1)]
    if m := re.fullmatch(r"Where is the (\w+)\?", question):
        return " " + where[m.group(1)][-1]
    if m := re.fullmatch(r"Where was the (\w+) before the (\w+)\?", question):
        trail = where[m.group(1)]
        last = max(i for i, p in enumerate(trail) if p == m.group(2))
        return " " + trail[last - 1]
    if m := re.fullmatch(r"What is (\w+) of the (\w+)\?", question):
        return " " + next(a for a, d, b in relations if d == m.group(1) and b == m.group(2))
    if m := re.fullmatch(r"What is the (\w+) (\w+) of\?", question):
        return " " + next(b for a, d, b in relations if a == m.group(1) and d == m.group(2))
    if m := re.fullmatch(r"Who received the (\w+)\?", question):
        return " " + [r for _, o, r in gives if o == m.group(1)][-1]
    if m := re.fullmatch(r"Who gave the (\w+) to (\w+)\?", question):
        return " " + [g for g, o, r in gives if o == m.group(1) and r == m.group(2)][-1]
    if m := re.fullmatch(r"What did (\w+) give to (\w+)\?", question):
        return " " + [o for g, o, r in gives if g == m.group(1) and r == m.group(2)][-1]
    raise AssertionError(f"unknown question {question!r}")


def solve(task_name: str, context: str) -> str:
    """The answer of ``context`` found by string search / simulation alone."""
    if task_name == "passkey":
        return solve_passkey(context)
    if task_name.startswith("niah_"):
        return solve_niah(context)
    if task_name == "mqar":
        return solve_mqar(context)
    if task_name.startswith("babilong"):
        return solve_babilong(context)
    raise AssertionError(task_name)


@pytest.fixture
def oracle():
    return solve
