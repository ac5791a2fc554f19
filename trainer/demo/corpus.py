"""Synthetic text for the offline demo kit: a support-intent dataset and a pre-training corpus.

Everything is generated from templates with a seeded ``random.Random`` (stdlib only), so the
demo needs no download and the same seed always yields the same rows in the same order.

The pre-training corpus teaches the *format* of the demo prompt on a disjoint set of
general-assistant intents (alarms, music, weather, ...) and the *vocabulary* of customer
support, label names included, through plain sentences and a glossary, but never a support
request paired with its label. The base model therefore answers support requests with a
well-formed but wrong intent, and fine-tuning on the demo dataset has something visible to teach.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

PROMPT_NAME = "support-intent"
INPUT_TEMPLATE = "### Request:\n{request}\n### Intent:\n"
COMPLETION_TEMPLATE = "{intent}"


def demo_prompt() -> dict[str, str]:
    """The demo prompt, as a fresh dict callers may keep or mutate."""
    return {
        "name": PROMPT_NAME,
        "prompt_template": INPUT_TEMPLATE + COMPLETION_TEMPLATE,
        "input_template": INPUT_TEMPLATE,
        "completion_template": COMPLETION_TEMPLATE,
    }


_SLOTS: Mapping[str, Sequence[str]] = {
    "item": (
        "lamp",
        "jacket",
        "blender",
        "phone case",
        "desk chair",
        "headphones",
        "rug",
        "backpack",
        "coffee maker",
        "sofa",
        "kettle",
        "monitor",
        "sneakers",
        "toaster",
        "bookshelf",
        "watch",
    ),
    "city": (
        "Boston",
        "Denver",
        "Seattle",
        "Austin",
        "Chicago",
        "Miami",
        "Portland",
        "Atlanta",
        "Dallas",
        "Phoenix",
        "Detroit",
        "Toronto",
    ),
    "payment": ("credit card", "debit card", "PayPal account", "gift card", "bank transfer", "Visa card"),
    "when": ("yesterday", "last week", "two days ago", "this morning", "on Monday", "last night"),
    "day": ("Friday", "Monday", "the weekend", "next week", "Christmas", "Tuesday"),
    "email": ("anna@example.com", "li.wei@example.com", "sam@example.org", "omar@example.net"),
    "time": ("6 am", "7:30", "noon", "9 pm", "half past eight", "midnight"),
    "music": ("jazz", "some rock", "the Beatles", "classical music", "my workout playlist", "lo-fi beats"),
    "person": ("mom", "Alex", "my boss", "Priya", "the team", "grandpa"),
    "currency": ("euros", "yen", "pounds", "pesos", "francs", "rupees"),
    "dish": ("lasagna", "pancakes", "curry", "banana bread", "tacos", "soup"),
    "count": ("two", "four", "six", "eight"),
}


def _order_id(rng: random.Random) -> str:
    return f"#{rng.randrange(10000, 100000)}"


# Rows per intent come from several phrasings so a model has to generalise over wording,
# not memorise one sentence shape per label.
SUPPORT_TEMPLATES: Mapping[str, Sequence[str]] = {
    "cancel_order": (
        "I want to cancel my order {order}",
        "please cancel the {item} I ordered",
        "can I still cancel order {order}",
        "cancel my {item} order, I changed my mind",
        "how do I cancel an order I placed {when}",
        "stop order {order} before it ships",
    ),
    "track_order": (
        "where is my order {order}",
        "track my {item} order",
        "has my {item} shipped yet",
        "what is the status of order {order}",
        "my package {order} has not moved since {when}",
        "can you tell me where my {item} is right now",
    ),
    "get_refund": (
        "I want my money back for the {item}",
        "how do I get a refund for order {order}",
        "refund me for the broken {item}",
        "the {item} arrived damaged and I want a refund",
        "when will I get the refund for {order}",
        "I returned the {item} {when}, where is my refund",
    ),
    "change_address": (
        "I need to change the delivery address for order {order}",
        "please ship my {item} to {city} instead",
        "I moved to {city}, update my shipping address",
        "can I change where order {order} is delivered",
        "the address on my {item} order is wrong",
    ),
    "payment_issue": (
        "my {payment} was charged twice",
        "payment with my {payment} keeps failing",
        "why was my {payment} declined for order {order}",
        "I was charged for the {item} but the order failed",
        "I can not pay with my {payment}",
    ),
    "reset_password": (
        "I forgot my password",
        "how do I reset my password",
        "I can not log in to my account since {when}",
        "the password reset email never arrived at {email}",
        "I am locked out of my account and need a new password",
    ),
    "talk_to_agent": (
        "I want to talk to a real person",
        "connect me to an agent about order {order}",
        "can I speak with a human about my {item}",
        "transfer me to customer service",
        "is there a phone number I can call about order {order}",
    ),
    "delivery_time": (
        "how long does shipping to {city} take",
        "when will my {item} arrive",
        "how many days until order {order} is delivered",
        "do you deliver to {city} by {day}",
        "what is the delivery time for the {item}",
    ),
}
INTENTS: tuple[str, ...] = tuple(SUPPORT_TEMPLATES)

# Same prompt format, different labels: see the module docstring for why they must not overlap.
_ASSISTANT_TEMPLATES: Mapping[str, Sequence[str]] = {
    "set_alarm": ("wake me up at {time}", "set an alarm for {time}", "I need an alarm at {time} {day}"),
    "play_music": ("play {music}", "put on {music} please", "I want to listen to {music}"),
    "weather_forecast": ("what is the weather in {city}", "will it rain in {city} {day}", "is it cold in {city}"),
    "send_message": ("text {person} that I am late", "send a message to {person}", "tell {person} I will call back"),
    "convert_currency": ("how many {currency} is ten dollars", "convert fifty dollars to {currency}"),
    "find_recipe": ("how do I make {dish}", "find me a recipe for {dish}", "what do I need to cook {dish}"),
    "book_table": ("book a table for {count} in {city}", "reserve dinner for {count} people {day}"),
    "set_timer": ("set a timer for {count} minutes", "start a {count} minute timer"),
}
assert not set(_ASSISTANT_TEMPLATES) & set(SUPPORT_TEMPLATES), "pre-training labels must stay disjoint"

_PREFIXES = ("", "", "hi, ", "hello, ", "hey, ", "excuse me, ")
_SUFFIXES = ("", "?", ".", " please", ", thanks", "!")


def _fill(template: str, rng: random.Random) -> str:
    """Fill every slot of a template; unused slots are simply ignored by ``str.format``."""
    values = {slot: rng.choice(choices) for slot, choices in _SLOTS.items()}
    return template.format(order=_order_id(rng), **values)


def _request(templates: Sequence[str], rng: random.Random) -> str:
    text = rng.choice(_PREFIXES) + _fill(rng.choice(templates), rng) + rng.choice(_SUFFIXES)
    return text[0].upper() + text[1:]


def demo_dataset(seed: int = 0, rows_per_intent: int = 40) -> list[dict[str, str]]:
    """Distinct ``{"request", "intent"}`` rows, ``rows_per_intent`` of each intent, shuffled."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for intent, templates in SUPPORT_TEMPLATES.items():
        seen: set[str] = set()
        # Bounded so a template set too small for the request can never loop forever.
        for _ in range(rows_per_intent * 50):
            if len(seen) == rows_per_intent:
                break
            seen.add(_request(templates, rng))
        if len(seen) < rows_per_intent:
            raise ValueError(f"only {len(seen)} distinct requests for {intent!r}, asked for {rows_per_intent}")
        # Sorted before shuffling: set iteration order depends on string hashing, which varies per process.
        rows.extend({"request": request, "intent": intent} for request in sorted(seen))
    rng.shuffle(rows)
    return rows


_SUPPORT_SENTENCES = (
    "The customer asked about order {order} {when}.",
    "A {item} was shipped to {city} {when}.",
    "Shipping to {city} usually takes {count} days.",
    "She paid for the {item} with her {payment}.",
    "Refunds go back to the original {payment} within {count} days.",
    "He forgot the password for his account and asked for a reset email.",
    "The order was cancelled before it left the warehouse.",
    "An agent called the customer about the damaged {item}.",
    "The package with the {item} is on its way to {city}.",
    "Her new address is in {city}, so the delivery address changed.",
    "The payment failed because the {payment} was declined.",
    "You can track a package with its order number, for example {order}.",
    "Customer service is open until {time} on {day}.",
    "The {item} will arrive by {day} if you order today.",
    "A refund was issued for order {order}.",
    "Log in to your account to see the status of your orders.",
)

# Without these the label names exist only as rarely seen byte fragments whose logits
# pre-training has pushed far down, and a short LoRA run cannot bring them back up.
_GLOSSARY: Mapping[str, str] = {
    "cancel_order": "the customer wants to cancel an order before it ships",
    "track_order": "the customer asks where an order or package is",
    "get_refund": "the customer wants money back for an item",
    "change_address": "the customer needs a different delivery address",
    "payment_issue": "a card or payment was declined, failed or charged twice",
    "reset_password": "the customer can not log in or forgot the password",
    "talk_to_agent": "the customer wants to speak with a human agent",
    "delivery_time": "the customer asks how long shipping takes",
}
assert set(_GLOSSARY) == set(SUPPORT_TEMPLATES), "every support label needs a glossary entry"

_GENERAL_SENTENCES = (
    "The {adj} {animal} sleeps near the {place}.",
    "A {adj} {animal} walked to the {place} {when}.",
    "We met {person} at the {place} on {day}.",
    "It was {weather} in {city} {when}.",
    "My friend likes {music} and {dish}.",
    "The {place} opens at {time}.",
    "There are {count} {animal}s in the {place}.",
)
_GENERAL_SLOTS: Mapping[str, Sequence[str]] = {
    "adj": ("small", "big", "happy", "old", "quiet", "brown", "fast", "lazy"),
    "animal": ("cat", "dog", "horse", "bird", "fox", "rabbit", "cow", "duck"),
    "place": ("park", "library", "market", "river", "school", "station", "garden", "cafe"),
    "weather": ("sunny", "rainy", "windy", "cold", "warm", "cloudy"),
}

_CAPITALS = (
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Canada", "Ottawa"),
    ("Egypt", "Cairo"),
    ("Germany", "Berlin"),
    ("Kenya", "Nairobi"),
)
_COLORS = (("the sky", "blue"), ("grass", "green"), ("snow", "white"), ("a banana", "yellow"), ("coal", "black"))


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randrange(1, 20), rng.randrange(1, 20)
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."


def _capital(rng: random.Random) -> tuple[str, str]:
    country, capital = rng.choice(_CAPITALS)
    return f"What is the capital of {country}?", f"The capital of {country} is {capital}."


def _color(rng: random.Random) -> tuple[str, str]:
    thing, color = rng.choice(_COLORS)
    return f"What color is {thing}?", f"{thing[0].upper() + thing[1:]} is {color}."


_QA_GENERATORS: Sequence[Callable[[random.Random], tuple[str, str]]] = (_arithmetic, _capital, _color)


def qa_pairs(seed: int = 0, count: int = 300) -> list[tuple[str, str]]:
    """Short question/answer pairs; the model builder renders them as chats to teach the chat template."""
    rng = random.Random(seed)
    return [rng.choice(_QA_GENERATORS)(rng) for _ in range(count)]


def pretraining_texts(seed: int = 0, documents: int = 3000) -> list[str]:
    """Short plain-text documents mixing English sentences, Q&A and the demo prompt format.

    Used both to train the BPE tokenizer and to pre-train the model, so every word the demo
    dataset uses is in the vocabulary as whole or near-whole tokens.
    """
    rng = random.Random(seed)
    general_slots = {**_SLOTS, **_GENERAL_SLOTS}

    def sentence(templates: Sequence[str]) -> str:
        values = {slot: rng.choice(choices) for slot, choices in general_slots.items()}
        return rng.choice(templates).format(order=_order_id(rng), **values)

    def assistant_example() -> str:
        intent = rng.choice(tuple(_ASSISTANT_TEMPLATES))
        return INPUT_TEMPLATE.format(request=_request(_ASSISTANT_TEMPLATES[intent], rng)) + COMPLETION_TEMPLATE.format(intent=intent)

    def qa_example() -> str:
        question, answer = rng.choice(_QA_GENERATORS)(rng)
        return f"Q: {question}\nA: {answer}"

    def glossary_entry() -> str:
        # The label opens a line, exactly where a completion puts it, so it tokenizes the same way.
        intent = rng.choice(INTENTS)
        return f"Support label:\n{intent}\nUse it when {_GLOSSARY[intent]}."

    makers: Sequence[Callable[[], str]] = (
        lambda: " ".join(sentence(_SUPPORT_SENTENCES) for _ in range(rng.randrange(1, 4))),
        lambda: " ".join(sentence(_GENERAL_SENTENCES) for _ in range(rng.randrange(1, 4))),
        qa_example,
        assistant_example,
        glossary_entry,
    )
    # Weights favour the prompt format: it is what the fine-tune builds on.
    weights = (3, 2, 2, 3, 1)
    return [rng.choices(makers, weights)[0]() for _ in range(documents)]
