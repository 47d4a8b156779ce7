"""Derive the literal pieces of a chat template (what the packer needs) from a
Hugging Face tokenizer, by rendering placeholder conversations.

Packing in Rust cannot run Jinja, so the template is reduced once to the text
before and after each role's message; the reduction is checked by rendering
a multi-turn conversation both ways.
"""

from __future__ import annotations

from typing import Any

SYSTEM, USER, ASSISTANT = "QZSYSTEMQZ", "QZUSERQZ", "QZASSISTANTQZ"
USER2, ASSISTANT2 = "QZUSERTWOQZ", "QZASSISTANTTWOQZ"


class ChatTemplateError(ValueError):
    """The tokenizer's chat template cannot be reduced to fixed prefixes and suffixes."""


def _render(tokenizer: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    if not isinstance(text, str):
        raise ChatTemplateError("apply_chat_template(tokenize=False) did not return a string")
    return text


def _between(text: str, left: str, right: str) -> str:
    i = text.index(left) + len(left)
    return text[i : text.index(right, i)]


def chat_format_from_template(tokenizer: Any) -> dict[str, str | None]:
    """Returns the keyword arguments of :class:`indexer.native.ChatFormat`."""
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError("the tokenizer has no chat_template; pass ChatFormat(...) explicitly")
    u, ua = [{"role": "user", "content": USER}], [{"role": "assistant", "content": ASSISTANT}]
    try:
        user_only = _render(tokenizer, u)
        with_prompt = _render(tokenizer, u, generation_prompt=True)
        one_turn = _render(tokenizer, u + ua)
        two_turns = _render(tokenizer, u + ua + [{"role": "user", "content": USER2}])
        with_system = _render(tokenizer, [{"role": "system", "content": SYSTEM}] + u)
    except ChatTemplateError:
        raise
    except Exception as exc:  # templates raise arbitrary errors (e.g. "system role not supported")
        raise ChatTemplateError(f"rendering the chat template failed: {exc}") from exc

    if not with_prompt.startswith(user_only):
        raise ChatTemplateError("the generation prompt is not appended after the user turn")
    assistant_prefix = with_prompt[len(user_only) :]
    user_suffix = user_only[user_only.index(USER) + len(USER) :]
    assistant_suffix = one_turn[one_turn.index(ASSISTANT) + len(ASSISTANT) :]
    between_turns = _between(two_turns, ASSISTANT, USER2)
    if not between_turns.startswith(assistant_suffix):
        raise ChatTemplateError("the text after an assistant turn depends on what follows it")
    user_prefix = between_turns[len(assistant_suffix) :]
    head = user_only[: user_only.index(USER)]
    if not head.endswith(user_prefix):
        raise ChatTemplateError("the first user turn is rendered differently from later ones")
    head = head[: len(head) - len(user_prefix)]
    before_system = with_system[: with_system.index(SYSTEM)]
    system_suffix = _between(with_system, SYSTEM, USER)
    if not system_suffix.endswith(user_prefix):
        raise ChatTemplateError("cannot separate the system suffix from the user prefix")
    system_suffix = system_suffix[: len(system_suffix) - len(user_prefix)]

    bos, default_system = "", None
    if head and head.startswith(before_system) and head.endswith(system_suffix):
        # the template inserts a default system message when none is given
        default_system = head[len(before_system) : len(head) - len(system_suffix)]
        system_prefix = before_system
    elif before_system.startswith(head):
        bos, system_prefix = head, before_system[len(head) :]
    else:
        raise ChatTemplateError("cannot tell the conversation start from the system prefix")

    fmt: dict[str, str | None] = {
        "bos": bos,
        "system_prefix": system_prefix,
        "system_suffix": system_suffix,
        "user_prefix": user_prefix,
        "user_suffix": user_suffix,
        "assistant_prefix": assistant_prefix,
        "assistant_suffix": assistant_suffix,
        "default_system": default_system,
    }
    _check(tokenizer, fmt)
    return fmt


def render(fmt: dict[str, str | None], messages: list[dict[str, str]]) -> str:
    """Renders messages with the reduced format (as the Rust packer does)."""
    out = fmt["bos"] or ""
    if fmt["default_system"] is not None and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": fmt["default_system"]}] + messages
    for m in messages:
        out += (fmt[f"{m['role']}_prefix"] or "") + m["content"] + (fmt[f"{m['role']}_suffix"] or "")
    return out


def _check(tokenizer: Any, fmt: dict[str, str | None]) -> None:
    convs = [
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER},
         {"role": "assistant", "content": ASSISTANT}, {"role": "user", "content": USER2},
         {"role": "assistant", "content": ASSISTANT2}],
        [{"role": "user", "content": USER}, {"role": "assistant", "content": ASSISTANT}],
    ]
    for conv in convs:
        if render(fmt, conv) != _render(tokenizer, conv):
            raise ChatTemplateError(
                "the chat template renders turns in a way fixed prefixes and suffixes cannot reproduce; "
                "pass ChatFormat(...) explicitly"
            )
