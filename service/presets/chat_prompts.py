"""Chat-like prompts for the LLM preset: what a chat model's users send, not tweets.

A fixed, hand-written set (no download, no randomness): instruction templates crossed with subjects. The
calibration split (`calibration_prompts`, saved as the preset's held-out texts, solves a tier's σ) and the
evaluation split (`evaluation_prompts`, the held-out chat set of the fidelity acceptance test) share neither
a template nor a subject, so a σ solved on one and measured on the other is measured on unseen prompts.
"""

from __future__ import annotations

import random

_CALIBRATION_TEMPLATES = (
    "Explain {s} in two sentences.",
    "What is {s}?",
    "Give me three facts about {s}.",
    "Write a short poem about {s}.",
    "How would you describe {s} to a child?",
    "List some pros and cons of {s}.",
    "Why do people care about {s}?",
    "Tell me a fun fact about {s}.",
    "Summarise the history of {s} briefly.",
    "What are common mistakes people make with {s}?",
)
_EVALUATION_TEMPLATES = (
    "Can you help me understand {s}?",
    "Write a haiku about {s}.",
    "What should a beginner know about {s}?",
    "Describe {s} in one paragraph.",
    "Name two surprising things about {s}.",
    "Give me a tip about {s}.",
)
_CALIBRATION_SUBJECTS = (
    "photosynthesis", "the moon", "coffee", "the internet", "volcanoes", "chess", "bicycles", "rain",
    "the Roman Empire", "honey bees", "electric cars", "jazz music", "the ocean", "sleep", "bread",
    "gravity", "friendship", "libraries", "solar panels", "the Olympic Games", "tea", "mountains",
    "cats", "recycling", "the piano", "airplanes", "vaccines", "democracy", "gardening", "dinosaurs",
)  # fmt: skip
_EVALUATION_SUBJECTS = (
    "black holes", "pizza", "the guitar", "rivers", "running", "penguins", "chocolate", "trains",
    "the brain", "clouds", "football", "deserts", "email", "elephants", "winter", "robots",
    "ancient Egypt", "yoga", "the printing press", "forests",
)  # fmt: skip


def _cross(templates: tuple[str, ...], subjects: tuple[str, ...]) -> list[str]:
    """Every template with every subject, in a fixed shuffled order (seed 0), so any prefix of the list
    mixes templates and subjects."""
    prompts = [t.format(s=s) for s in subjects for t in templates]
    random.Random(0).shuffle(prompts)
    return prompts


def calibration_prompts() -> list[str]:
    """300 chat prompts (10 templates x 30 subjects) the LLM preset calibrates its tiers on."""
    return _cross(_CALIBRATION_TEMPLATES, _CALIBRATION_SUBJECTS)


def evaluation_prompts() -> list[str]:
    """120 chat prompts (6 other templates x 20 other subjects): the held-out chat set."""
    return _cross(_EVALUATION_TEMPLATES, _EVALUATION_SUBJECTS)
