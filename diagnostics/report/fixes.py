"""User-facing text per format: a finding's prose and its fix steps (`FixStep`), rendered for
Markdown, HTML (our report and pytest-html) and the terminal.

Each format escapes for itself, here and nowhere else:
- Markdown: fix code goes into fenced blocks sized to their content; in prose, `inline code`
  spans are kept verbatim and outside them `<` and entity-like `&` get a backslash, so nothing is
  read as HTML and no HTML entity is written.
- HTML: prose is escaped text with `inline code` as <code>, code blocks are <pre><code>; the
  result is `markupsafe.Markup`, safe to place in an autoescaping template or in pytest-html.
- Terminal: prose as written, code blocks indented under it.

`user_text` drops internal references (knowledge-base numbers such as "(K29)") from prose meant
for people, a safety net for texts from elsewhere (the rules write none); `explain --json` and the
docs keep them.
"""

from __future__ import annotations

import html as _html
import re
from typing import Iterable, List, Sequence, Tuple

from ..findings import FixStep, parse_fix

# "(knowledge base K01 g)", "(knowledge base finding 4)", "(K29)", "(K01/K02)"
_INTERNAL_REF = re.compile(r"\s*\((?:knowledge base|K\d{2}\b)[^()]*\)")
_ENTITY_LIKE = re.compile(r"&(?=#?\w+;)")


def user_text(text) -> str:
    """Prose for people: internal references removed, whitespace kept."""
    return _INTERNAL_REF.sub("", str(text if text is not None else ""))


def split_inline_code(text: str) -> List[Tuple[bool, str]]:
    """[(is_code, part)] along `code` spans (any backtick-run length, as CommonMark pairs them)."""
    parts: List[Tuple[bool, str]] = []
    pos = 0
    for match in re.finditer(r"(`+)(.+?)(?<!`)\1(?!`)", text, flags=re.S):
        if match.start() > pos:
            parts.append((False, text[pos:match.start()]))
        code = match.group(2)
        if code.startswith(" ") and code.endswith(" ") and code.strip():
            code = code[1:-1]
        parts.append((True, code))
        pos = match.end()
    if pos < len(text):
        parts.append((False, text[pos:]))
    return parts


def _one_line(text: str) -> str:
    return re.sub(r"\s*[\r\n]+\s*", " ", text)


# ---------------------------------------------------------------------------------------------
# Markdown


def md_code_span(text: str) -> str:
    text = _one_line(str(text))
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def md_inline(text) -> str:
    """One line of Markdown prose: code spans verbatim, `<` and entity-like `&` escaped elsewhere."""
    out = []
    for is_code, part in split_inline_code(_one_line(user_text(text))):
        if is_code:
            out.append(md_code_span(part))
        else:
            out.append(_ENTITY_LIKE.sub(r"\\&", part.replace("\\<", "<").replace("<", "\\<")))
    return "".join(out)


def md_fence(code: str, lang: str = "") -> str:
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang or ''}\n{code.rstrip()}\n{fence}"


def _indent(block: str, prefix: str) -> List[str]:
    return [(prefix + line) if line else "" for line in block.splitlines()]


def fix_markdown(fix, indent: str = "") -> List[str]:
    """Lines of Markdown for a fix (text or steps): a list when there are several steps, code fenced."""
    steps = _steps(fix)
    lines: List[str] = []
    several = len(steps) > 1
    for step in steps:
        marker = f"{step.number}. " if step.number is not None and several else ("- " if several else "")
        inner = indent + " " * len(marker)
        if step.text:
            lines.append(indent + marker + md_inline(step.text))
        if step.code:
            lines.extend(_indent(md_fence(step.code, step.lang or ""), inner if step.text else indent + marker))
    return lines


# ---------------------------------------------------------------------------------------------
# HTML


def html_inline(text) -> str:
    """Escaped HTML for one piece of prose, `code` spans as <code>."""
    out = []
    for is_code, part in split_inline_code(user_text(text)):
        escaped = _html.escape(part, quote=False)
        out.append(f"<code>{escaped}</code>" if is_code else escaped)
    return "".join(out)


def fix_html_text(fix) -> str:
    """The fix as an HTML fragment (a string of escaped HTML)."""
    steps = _steps(fix)
    parts = []
    for step in steps:
        number = f'<span class="fix-n">{step.number}.</span> ' if step.number is not None else ""
        body = f"<p>{number}{html_inline(step.text)}</p>" if step.text else ""
        if step.code:
            lang = _html.escape(step.lang or "text", quote=True)
            body += f'<pre><code class="language-{lang}">{_html.escape(step.code, quote=False)}</code></pre>'
        parts.append(f'<div class="fix-step">{body}</div>')
    return '<div class="fix">' + "".join(parts) + "</div>" if parts else ""


def fix_html(fix):
    from markupsafe import Markup  # a dependency of jinja2

    return Markup(fix_html_text(fix))


def inline_html(text):
    from markupsafe import Markup

    return Markup(html_inline(text))


# ---------------------------------------------------------------------------------------------
# terminal


def fix_terminal(fix, first_prefix: str, indent: str) -> List[str]:
    """Terminal lines: `first_prefix` before the first line, `indent` before the others, code
    blocks four spaces deeper (copy-pasteable)."""
    lines: List[str] = []
    steps = _steps(fix)
    several = len(steps) > 1
    for step in steps:
        marker = f"{step.number}. " if step.number is not None and several else ""
        prefix = first_prefix if not lines else indent
        if step.text:
            lines.append(prefix + marker + user_text(step.text))
        if step.code:
            lines.extend(indent + "    " + line for line in step.code.splitlines())
    return lines


def _steps(fix) -> Sequence[FixStep]:
    if isinstance(fix, str) or fix is None:
        return parse_fix(fix or "")
    return list(fix)


def join_text(steps: Iterable[FixStep]) -> str:
    """Steps back to the rules' text form (fenced code), e.g. to combine two fixes into one."""
    out = []
    for step in steps:
        head = (f"{step.number}. " if step.number is not None else "") + step.text
        if step.code:
            head = (head + "\n" if head else "") + md_fence(step.code, step.lang or "")
        out.append(head)
    return "\n".join(out)
