"""Render the job-format reference (every action and parameter) from the action catalogue, so
the README's reference cannot drift from what validation accepts (a test compares them)."""

from __future__ import annotations

from ..actions import registry
from ..actions.spec import SETUP, SUBMIT, TEST

ROLE = {SETUP: "setup (runs before the next test item)", TEST: "test item", SUBMIT: "submit (at the end, always)"}


def actions_markdown() -> str:
    out: list[str] = []
    for spec in registry().values():
        out.append(f"#### `{spec.name}` — {ROLE[spec.kind]}, default timeout {spec.default_timeout:g} s\n")
        if spec.summary:
            out.append(spec.summary + "\n")
        if spec.params:
            out.append("| parameter | type | required | default | meaning |")
            out.append("|---|---|---|---|---|")
            for name, p in spec.params.items():
                default = "" if p.default is None else f"`{p.default!r}`"
                meaning = p.help + (" (secret: masked)" if p.secret else "")
                out.append(f"| `{name}` | {p.type_name()} | {'yes' if p.required else ''} | {default} | {meaning} |")
        else:
            out.append("No parameters.")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(actions_markdown())
