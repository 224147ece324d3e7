"""Render an Adaptive Card (JSON) and Slack Block Kit blocks to HTML, for the README's pictures.

Neither Teams nor Slack can be reached from here, so the pictures are our rendering of the exact
payloads the service sent to the stand-ins — a faithful layout of their content, not Teams' or
Slack's own renderer. Only the elements Gatehouse's cards use are drawn (TextBlock, FactSet,
RichTextBlock, Action.Execute / ShowCard / OpenUrl; header, section, fields, context, actions,
divider); anything else is drawn as a visible "unsupported" box rather than dropped silently.
Every text is HTML-escaped here: the payload's own escaping is shown as the apps would resolve it.
"""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parents[2]


def picture_path(name: str) -> Path:
    """Where a test puts a README picture: ``docs/`` when asked (``GATEHOUSE_REFRESH_PICTURES=1``),
    else ``.gatehouse-dev/artifacts/`` — every run renders fresh ids and times, and ``make test``
    must leave the checkout as it found it."""
    refresh = os.environ.get("GATEHOUSE_REFRESH_PICTURES") == "1"
    folder = _ROOT / "docs" if refresh else _ROOT / ".gatehouse-dev" / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; padding: 24px; background: {bg}; font: 14px/1.45 {font}; color: #242424; }}
.card {{ max-width: 760px; background: #fff; border-radius: 8px; padding: 16px 20px;
  box-shadow: 0 1px 4px rgba(0,0,0,.18); }}
.note {{ font-size: 11px; color: #707070; margin-top: 10px; }}
{style}
</style></head><body><div class="card">{content}</div><div class="note">{note}</div></body></html>"""

_TEAMS_STYLE = """
.tb {margin: 4px 0;} .Large {font-size: 20px;} .Medium {font-size: 16px;} .Bolder {font-weight: 600;}
.Good {color: #237b4b;} .Warning {color: #835b00;} .Attention {color: #c4314b;} .Accent {color: #5b5fc7;}
table.facts {border-collapse: collapse; margin: 8px 0;} table.facts td {padding: 2px 12px 2px 0;
  vertical-align: top;} table.facts td.k {font-weight: 600; white-space: nowrap;}
.run {white-space: pre-wrap; margin: 4px 0;}
.actions {display: flex; gap: 8px; margin-top: 12px; flex-wrap: wrap;}
.btn {border: 1px solid #d1d1d1; border-radius: 4px; padding: 6px 14px; font-weight: 600; background: #fff;}
.btn.positive {background: #5b5fc7; color: #fff; border-color: #5b5fc7;}
.btn.destructive {color: #c4314b;}
.unsupported {border: 1px dashed #c4314b; padding: 4px; color: #c4314b;}
"""

_SLACK_STYLE = """
.hdr {font-size: 18px; font-weight: 900; margin: 4px 0 8px;} .sec {margin: 6px 0;}
.fields {display: grid; grid-template-columns: 1fr 1fr; gap: 6px 16px; margin: 6px 0;}
.ctx {font-size: 12px; color: #616061; margin: 4px 0;} hr {border: 0; border-top: 1px solid #ddd;}
code {font: 12px Menlo, monospace; color: #e01e5a; background: #f6f6f6; border: 1px solid #e8e8e8;
  border-radius: 3px; padding: 0 3px;}
a {color: #1264a3; text-decoration: none;}
.actions {display: flex; gap: 8px; margin-top: 10px;}
.btn {border: 1px solid #bbb; border-radius: 4px; padding: 4px 12px; font-weight: 700; background: #fff;}
.btn.primary {background: #007a5a; color: #fff; border-color: #007a5a;}
.btn.danger {color: #e01e5a; border-color: #e01e5a;}
.unsupported {border: 1px dashed #e01e5a; padding: 4px; color: #e01e5a;}
"""

_CARD_ESCAPE = re.compile(r"\\([\\`*_\[\]~<>|.)+#-])")


def _card_text(text: str) -> str:
    """Adaptive Card Markdown text as Teams shows it: backslash escapes resolved, nothing rendered."""
    return html.escape(_CARD_ESCAPE.sub(r"\1", text))


def _card_element(element: dict[str, Any]) -> str:
    kind = element.get("type")
    if kind == "TextBlock":
        classes = " ".join(str(element[k]) for k in ("size", "weight", "color") if k in element)
        return f'<div class="tb {classes}">{_card_text(str(element["text"]))}</div>'
    if kind == "FactSet":
        rows = "".join(
            f'<tr><td class="k">{_card_text(f["title"])}</td><td>{_card_text(f["value"])}</td></tr>'
            for f in element["facts"]
        )
        return f'<table class="facts">{rows}</table>'
    if kind == "RichTextBlock":
        runs = "".join(html.escape(str(i.get("text", ""))) for i in element["inlines"])
        return f'<div class="run">{runs}</div>'
    return f'<div class="unsupported">{html.escape(str(kind))}</div>'


def _card_action(action: dict[str, Any]) -> str:
    style = str(action.get("style", ""))
    title = html.escape(str(action.get("title", "")))
    if action["type"] == "Action.OpenUrl":
        title += " ↗"
    return f'<span class="btn {style}">{title}</span>'


def adaptive_card_html(card: dict[str, Any], note: str) -> str:
    body = "".join(_card_element(e) for e in card.get("body", []))
    actions = "".join(_card_action(a) for a in card.get("actions", []))
    content = body + (f'<div class="actions">{actions}</div>' if actions else "")
    return _PAGE.format(
        bg="#f5f5f5",
        font="'Segoe UI', 'DejaVu Sans', sans-serif",
        style=_TEAMS_STYLE,
        content=content,
        note=note,
    )


def _mrkdwn(text: str) -> str:
    """Slack mrkdwn as Slack shows it: <url|label> links, *bold*, _italic_, `code`, &lt; entities."""
    out = html.escape(html.unescape(text), quote=False)
    out = re.sub(r"&lt;(https?://[^|&]+)\|([^&]*)&gt;", r'<a href="\1">\2</a>', out)
    out = re.sub(r"&lt;!date\^\d+\^[^|]*\|([^&]*)&gt;", r"\1", out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"<b>\1</b>", out)
    out = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"<i>\1</i>", out)
    return out.replace("\n", "<br>")


def _slack_block(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "header":
        return f'<div class="hdr">{html.escape(block["text"]["text"])}</div>'
    if kind == "section":
        parts = []
        if block.get("text"):
            parts.append(f'<div class="sec">{_mrkdwn(block["text"]["text"])}</div>')
        if block.get("fields"):
            fields = "".join(f"<div>{_mrkdwn(f['text'])}</div>" for f in block["fields"])
            parts.append(f'<div class="fields">{fields}</div>')
        return "".join(parts)
    if kind == "context":
        return "".join(f'<div class="ctx">{_mrkdwn(e.get("text", ""))}</div>' for e in block["elements"])
    if kind == "divider":
        return "<hr>"
    if kind == "actions":
        buttons = "".join(
            f'<span class="btn {e.get("style", "")}">{html.escape(e["text"]["text"])}</span>'
            for e in block["elements"]
        )
        return f'<div class="actions">{buttons}</div>'
    return f'<div class="unsupported">{html.escape(str(kind))}</div>'


def slack_blocks_html(blocks: list[dict[str, Any]], note: str) -> str:
    content = "".join(_slack_block(b) for b in blocks)
    return _PAGE.format(
        bg="#f8f8f8", font="Lato, 'DejaVu Sans', sans-serif", style=_SLACK_STYLE, content=content, note=note
    )
