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


# -- multi-step problems (the `multistep` domain) ----------------------------------
# Three to five computations per problem, in varied words: the arithmetic, not the
# template, carries most of the text, so a drafter trained on it alone should
# predict the target's numbers better than one trained on every domain.

_FIRST = ("First", "To start", "To begin")
_THEN = ("Then", "Next", "After that")
_LAST = ("Finally", "Last", "In the end")


def _steps(r: random.Random, lines: list[str], answer: str) -> str:
    """Join computation lines with varied connectives, ending with the fixed answer line."""
    out = []
    for i, line in enumerate(lines):
        word = r.choice(_FIRST if i == 0 else _LAST if i == len(lines) - 1 else _THEN)
        out.append(f"{word}, {line}")
    return "Solution: " + " ".join(out) + f" The answer is {answer}."


def _shopping(r: random.Random) -> str:
    name = r.choice(NAMES)
    item_a, item_b = r.sample(ITEMS, 2)
    a, p, b, q = r.randint(2, 9), r.randint(2, 15), r.randint(2, 9), r.randint(2, 15)
    cost = a * p + b * q
    paid = (cost // 10 + r.randint(1, 5)) * 10
    return (
        f"Problem: {name} buys {a} {item_a} at ${p} each and {b} {item_b} at ${q} each, "
        f"and pays with ${paid}. How much change does {name} get?\n"
        + _steps(r, [f"the {item_a} cost {a} x {p} = {a * p} dollars.",
                     f"the {item_b} cost {b} x {q} = {b * q} dollars.",
                     f"together they cost {a * p} + {b * q} = {cost} dollars.",
                     f"the change is {paid} - {cost} = {paid - cost} dollars."], f"${paid - cost}")
    )


def _savings(r: random.Random) -> str:
    name = r.choice(NAMES)
    s, w, gift = r.randint(3, 25), r.randint(4, 20), r.randint(5, 60)
    spent = r.randint(1, s * w - 1)
    saved = s * w
    return (
        f"Problem: {name} saves ${s} every week for {w} weeks, spends ${spent} on a present "
        f"and then gets ${gift} from a relative. How much money does {name} have?\n"
        + _steps(r, [f"{name} saves {s} x {w} = {saved} dollars.",
                     f"the present leaves {saved} - {spent} = {saved - spent} dollars.",
                     f"with the gift {name} has {saved - spent} + {gift} = {saved - spent + gift} dollars."],
                 f"${saved - spent + gift}")
    )


def _recipe(r: random.Random) -> str:
    n = r.randint(2, 6)
    m = n * r.randint(2, 5)
    flour, sugar = r.randint(2, 9) * 50, r.randint(1, 6) * 25
    k = m // n
    return (
        f"Problem: A recipe for {n} people uses {flour} grams of flour and {sugar} grams of sugar. "
        f"How many grams of flour and sugar together are needed for {m} people?\n"
        + _steps(r, [f"{m} people is {m} / {n} = {k} times the recipe.",
                     f"the flour is {flour} x {k} = {flour * k} grams.",
                     f"the sugar is {sugar} x {k} = {sugar * k} grams.",
                     f"together that is {flour * k} + {sugar * k} = {(flour + sugar) * k} grams."],
                 f"{(flour + sugar) * k} grams")
    )


def _hours(n: int) -> str:
    return f"{n} hour" if n == 1 else f"{n} hours"


def _trip(r: random.Random) -> str:
    name = r.choice(NAMES)
    v1, t1, v2, t2 = r.randint(20, 90), r.randint(1, 4), r.randint(20, 90), r.randint(1, 4)
    d1, d2 = v1 * t1, v2 * t2
    return (
        f"Problem: {name} drives for {_hours(t1)} at {v1} kilometres per hour and then for {_hours(t2)} "
        f"at {v2} kilometres per hour. How far does {name} drive, and for how long?\n"
        + _steps(r, [f"the first part is {v1} x {t1} = {d1} kilometres.",
                     f"the second part is {v2} x {t2} = {d2} kilometres.",
                     f"the distance is {d1} + {d2} = {d1 + d2} kilometres in {t1} + {t2} = {t1 + t2} hours."],
                 f"{d1 + d2} kilometres in {t1 + t2} hours")
    )


def _factory(r: random.Random) -> str:
    item = r.choice(ITEMS)
    rate, hours, days = r.randint(5, 60), r.randint(4, 10), r.randint(2, 7)
    per_day = rate * hours
    total = per_day * days
    bad = r.randint(1, max(1, total // 20))
    return (
        f"Problem: A machine makes {rate} {item} an hour and runs {hours} hours a day for {days} days. "
        f"{bad} of the {item} are faulty. How many good {item} does it make?\n"
        + _steps(r, [f"it makes {rate} x {hours} = {per_day} {item} a day.",
                     f"over {days} days that is {per_day} x {days} = {total} {item}.",
                     f"without the faulty ones, {total} - {bad} = {total - bad} are good."],
                 str(total - bad))
    )


def _fractions(r: random.Random) -> str:
    name, item = r.choice(NAMES), r.choice(ITEMS)
    a, b = r.choice((2, 3, 4, 5)), r.choice((2, 3, 4))
    unit = r.randint(2, 12)
    total = a * b * unit
    first = total // a
    rest = total - first
    second = rest // b
    friend, other = r.sample([n for n in NAMES if n != name], 2)
    return (
        f"Problem: {name} has {total} {item}. {name} gives 1/{a} of them to {friend} and then 1/{b} "
        f"of the rest to {other}. How many {item} does {name} keep?\n"
        + _steps(r, [f"1/{a} of {total} is {total} / {a} = {first}, so {total} - {first} = {rest} are left.",
                     f"1/{b} of {rest} is {rest} / {b} = {second}.",
                     f"{name} keeps {rest} - {second} = {rest - second} {item}."],
                 str(rest - second))
    )


def _fence(r: random.Random) -> str:
    w, length, price, gate = r.randint(3, 30), r.randint(3, 30), r.randint(2, 15), r.randint(20, 120)
    around = 2 * (w + length)
    return (
        f"Problem: A field is {w} metres wide and {length} metres long. Fencing costs ${price} a metre "
        f"and a gate costs ${gate}. What does it cost to fence the field with one gate?\n"
        + _steps(r, [f"the perimeter is 2 x ({w} + {length}) = 2 x {w + length} = {around} metres.",
                     f"the fencing costs {around} x {price} = {around * price} dollars.",
                     f"with the gate the cost is {around * price} + {gate} = {around * price + gate} dollars."],
                 f"${around * price + gate}")
    )


def _tickets(r: random.Random) -> str:
    classes, pupils, price = r.randint(2, 6), r.randint(15, 32), r.randint(3, 12)
    free = r.randint(1, 5)
    total = classes * pupils
    paying = total - free
    return (
        f"Problem: {classes} classes of {pupils} pupils go to a museum. Tickets cost ${price} each, "
        f"and {free} pupils go free. How much do the tickets cost?\n"
        + _steps(r, [f"there are {classes} x {pupils} = {total} pupils.",
                     f"{total} - {free} = {paying} pupils pay.",
                     f"the tickets cost {paying} x {price} = {paying * price} dollars."],
                 f"${paying * price}")
    )


MULTISTEP_TEMPLATES = (_shopping, _savings, _recipe, _trip, _factory, _fractions, _fence, _tickets)


def multistep_sets(seed: int, n_docs: int, per_doc: int = 3) -> list[str]:
    """`n_docs` documents of `per_doc` multi-step problems each, the same for the same seed."""
    r = random.Random(seed)
    return ["\n\n".join(r.choice(MULTISTEP_TEMPLATES)(r) for _ in range(per_doc)) for _ in range(n_docs)]
