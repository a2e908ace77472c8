"""Label templates shared by the NSP and PET zero-shot classifiers.

A template is either a string with a ``{label}`` slot (``"这是一则{label}新闻"``), formatted once per
label, or an explicit list of one prompt per label (EPRSTMT's ``["这次买的东西很好", "这次买的东西很差"]``).
NSP scores whole prompts; PET needs a slot for the ``[MASK]`` tokens and one label word per label,
which :func:`slot_and_words` recovers from a prompt list as the part where the prompts differ.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["LABEL_SLOT", "expand_template", "slot_and_words", "pair_with_prompt"]

LABEL_SLOT = "{label}"


def expand_template(template: str | Sequence[str], labels: Sequence[str]) -> list[str]:
    """One prompt per label.

    Raises:
        ValueError: a string without ``{label}``, or a list whose length is not the number of labels.

    Example:
        >>> expand_template("这是一则{label}新闻", ["体育", "财经"])
        ['这是一则体育新闻', '这是一则财经新闻']
    """
    if isinstance(template, str):
        if LABEL_SLOT not in template:
            raise ValueError(f"`template` {template!r} has no {LABEL_SLOT} slot; give a string with one, "
                             "or a list of one prompt per label")
        return [template.replace(LABEL_SLOT, label) for label in labels]
    prompts = list(template)
    if len(prompts) != len(labels):
        raise ValueError(f"`template` lists {len(prompts)} prompts for {len(labels)} labels: {prompts!r}")
    return prompts


def slot_and_words(template: str | Sequence[str], labels: Sequence[str]) -> tuple[str, list[str]]:
    """``(template with a {label} slot, one word per label)`` for PET.

    A prompt list is split at its longest common prefix and suffix.

    Raises:
        ValueError: a prompt list whose prompts are equal, or empty in the differing part.

    Example:
        >>> slot_and_words(["这次买的东西很好", "这次买的东西很差"], ["Positive", "Negative"])
        ('这次买的东西很{label}', ['好', '差'])
    """
    if isinstance(template, str):
        expand_template(template, labels)  # validates the slot
        return template, list(labels)
    prompts = expand_template(template, labels)
    prefix = os.path.commonprefix(prompts)
    suffix = os.path.commonprefix([prompt[len(prefix):][::-1] for prompt in prompts])[::-1]
    words = [prompt[len(prefix):len(prompt) - len(suffix)] for prompt in prompts]
    if not all(words):
        raise ValueError(f"the prompts {prompts!r} do not differ in a non-empty part; PET needs one word per label")
    return prefix + LABEL_SLOT + suffix, words


def pair_with_prompt(text: str, prompt: str, prompt_position: str) -> tuple[str, str]:
    """``(prompt, text)`` for "prefix" (the prompt is segment A), ``(text, prompt)`` for "suffix"."""
    if prompt_position == "prefix":
        return prompt, text
    if prompt_position == "suffix":
        return text, prompt
    raise ValueError(f"`prompt_position` must be 'prefix' or 'suffix', got {prompt_position!r}")
