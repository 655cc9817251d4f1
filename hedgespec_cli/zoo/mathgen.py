"""A seeded generator of arithmetic word problems with worked answers (the math domain).

Project-written, so the text has no third-party licence. Each problem states a
small story, asks one question and answers it step by step ending in
"The answer is N." -- a fixed format a small drafter can learn to predict.
"""

from __future__ import annotations

import random

NAMES = (
    "Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
    "Kemi", "Liam", "Mina", "Noah", "Olga", "Pedro", "Quinn", "Rosa", "Sam", "Tara",
    "Uma", "Victor", "Wen", "Yusuf", "Zoe",
)
ITEMS = (
    "apples", "pencils", "marbles", "stickers", "books", "eggs", "cookies", "stamps",
    "shells", "cards", "oranges", "bottles", "candles", "buttons", "tickets", "plants",
)
CONTAINERS = ("boxes", "bags", "crates", "jars", "baskets", "packs", "trays", "shelves")


def _add_sub(r: random.Random) -> str:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    a, b, c = r.randint(10, 90), r.randint(5, 60), r.randint(1, 40)
    friend = r.choice([n for n in NAMES if n != name])
    return (
        f"Problem: {name} has {a} {item}. {name} buys {b} more and then gives {c} to {friend}. "
        f"How many {item} does {name} have now?\n"
        f"Solution: {name} starts with {a} {item}. After buying {b} more, {name} has "
        f"{a} + {b} = {a + b}. After giving away {c}, {name} has {a + b} - {c} = {a + b - c}. "
        f"The answer is {a + b - c}."
    )


def _multiply(r: random.Random) -> str:
    name, item, box = r.choice(NAMES), r.choice(ITEMS), r.choice(CONTAINERS)
    n, k = r.randint(2, 25), r.randint(3, 30)
    return (
        f"Problem: {name} packs {n} {box} with {k} {item} in each. "
        f"How many {item} are packed in total?\n"
        f"Solution: There are {n} {box} and each holds {k} {item}, so the total is "
        f"{n} x {k} = {n * k}. The answer is {n * k}."
    )


def _divide(r: random.Random) -> str:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    people, each = r.randint(2, 12), r.randint(2, 20)
    left = r.randint(0, people - 1)
    total = people * each + left
    extra = (
        f" and {left} {item} are left over" if left else " and nothing is left over"
    )
    return (
        f"Problem: {name} shares {total} {item} equally among {people} friends. "
        f"How many {item} does each friend get?\n"
        f"Solution: {total} divided by {people} is {each} with remainder {left}. "
        f"Each friend gets {each} {item}{extra}. The answer is {each}."
    )


def _money(r: random.Random) -> str:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    count, cents = r.randint(2, 15), r.randint(15, 495)
    paid = (count * cents // 100 + r.randint(1, 20)) * 100
    cost = count * cents
    change = paid - cost
    return (
        f"Problem: {name} buys {count} {item} at ${cents // 100}.{cents % 100:02d} each and pays "
        f"with ${paid // 100}. How much change does {name} get?\n"
        f"Solution: The {item} cost {count} x ${cents // 100}.{cents % 100:02d} = "
        f"${cost // 100}.{cost % 100:02d}. The change is ${paid // 100}.00 - "
        f"${cost // 100}.{cost % 100:02d} = ${change // 100}.{change % 100:02d}. "
        f"The answer is ${change // 100}.{change % 100:02d}."
    )


def _percent(r: random.Random) -> str:
    name = r.choice(NAMES)
    price = r.randint(2, 60) * 10
    pct = r.choice((5, 10, 15, 20, 25, 30, 40, 50))
    off = price * pct // 100
    return (
        f"Problem: A jacket costs ${price}. {name} gets a {pct}% discount. "
        f"What does {name} pay?\n"
        f"Solution: The discount is {pct}% of ${price}, which is {price} x {pct} / 100 = ${off}. "
        f"{name} pays {price} - {off} = ${price - off}. The answer is ${price - off}."
    )


def _rate(r: random.Random) -> str:
    name = r.choice(NAMES)
    speed, hours = r.randint(3, 90), r.randint(2, 9)
    vehicle = r.choice(("bike", "car", "boat", "train", "bus"))
    return (
        f"Problem: {name} travels by {vehicle} at {speed} kilometres per hour for {hours} hours. "
        f"How far does {name} travel?\n"
        f"Solution: Distance is speed times time, so {speed} x {hours} = {speed * hours}. "
        f"{name} travels {speed * hours} kilometres. The answer is {speed * hours}."
    )


def _area(r: random.Random) -> str:
    w, h = r.randint(2, 40), r.randint(2, 40)
    place = r.choice(("garden", "room", "field", "table", "poster", "carpet"))
    return (
        f"Problem: A rectangular {place} is {w} metres wide and {h} metres long. "
        f"What are its area and its perimeter?\n"
        f"Solution: The area is {w} x {h} = {w * h} square metres. The perimeter is "
        f"2 x ({w} + {h}) = 2 x {w + h} = {2 * (w + h)} metres. "
        f"The answer is {w * h} square metres and {2 * (w + h)} metres."
    )


def _average(r: random.Random) -> str:
    name = r.choice(NAMES)
    n = r.randint(3, 5)
    mean = r.randint(40, 95)
    scores = [mean + r.randint(-12, 12) for _ in range(n - 1)]
    scores.append(mean * n - sum(scores))
    total = sum(scores)
    listed = ", ".join(str(s) for s in scores[:-1]) + f" and {scores[-1]}"
    return (
        f"Problem: {name} scores {listed} on {n} tests. What is the average score?\n"
        f"Solution: The total is {' + '.join(str(s) for s in scores)} = {total}. "
        f"The average is {total} / {n} = {mean}. The answer is {mean}."
    )


def _two_step(r: random.Random) -> str:
    name, item, box = r.choice(NAMES), r.choice(ITEMS), r.choice(CONTAINERS)
    n, k, used = r.randint(2, 12), r.randint(4, 24), r.randint(1, 30)
    total = n * k
    used = min(used, total)
    return (
        f"Problem: {name} has {n} {box} of {item} with {k} in each and uses {used} of them. "
        f"How many {item} remain?\n"
        f"Solution: First, {n} x {k} = {total} {item} in all. Then {total} - {used} = "
        f"{total - used}. The answer is {total - used}."
    )


TEMPLATES = (_add_sub, _multiply, _divide, _money, _percent, _rate, _area, _average, _two_step)


def problem_sets(seed: int, n_docs: int, per_doc: int = 4) -> list[str]:
    """`n_docs` documents of `per_doc` problems each, the same for the same seed."""
    r = random.Random(seed)
    return ["\n\n".join(r.choice(TEMPLATES)(r) for _ in range(per_doc)) for _ in range(n_docs)]
