"""The report's charts, drawn on the server as SVG with pygal and put inline in the page (and in its PDF).

pygal's SVG carries a script (its tooltips) and inline style attributes. Inline in a page, under a
Content-Security-Policy that allows only the page's nonce, neither would run anyway; the sanitiser still removes
every script, event handler, external reference and style attribute, so what reaches the page is drawing only, and
gives the chart's ``<style>`` the page's nonce. Labels are agency and procedure texts: pygal escapes them as XML
text, and the sanitiser parses the result, so a label can never become markup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pygal  # type: ignore[import-untyped]
from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information and no stubs are installed
from pygal.style import Style  # type: ignore[import-untyped]

from console.reports.figures import Report

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_DROP = {"script", "foreignObject", "iframe", "object", "embed", "a", "image", "use", "animate", "set"}
# Dark text and strong colours: readable at the contrast the pages keep.
STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1b1b1b",
    foreground_strong="#1b1b1b",
    foreground_subtle="#555555",
    colors=("#0b5cad", "#b3261e", "#1e7b34", "#7a4b00", "#5b3a9b", "#00696b", "#6b6b6b"),
    font_family="DejaVu Sans, system-ui, sans-serif",
    no_data_font_size=28,
)


@dataclass(frozen=True)
class Series:
    """What the report's two charts draw: the page's SVG and the workbook's charts are made from this one value, so
    they cannot show different figures."""

    days: list[date]  # the trend's days, oldest first
    gross: list[int]  # of each day
    net: list[int]
    methods: list[tuple[str, int]]  # (method, gross in the period), in the by-method table's order


def series(report: Report) -> Series:
    trend = list(report.trend.values())
    return Series(
        days=list(report.trend),
        gross=[s.gross for s in trend],
        net=[s.net for s in trend],
        methods=[(method, s.gross) for method, s in report.by_method.items()],
    )


def _local(tag: object) -> str:
    return tag.split("}", 1)[-1] if isinstance(tag, str) else ""


def sanitise(svg: str, title: str, nonce: str = "") -> str:
    """``svg`` with nothing but drawing left in it: no script, no event handler, no reference outside itself, no
    style attribute; the root named by ``title`` for screen readers."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)
    root = etree.fromstring(svg.encode(), parser)
    for element in list(root.iter()):
        if not isinstance(element.tag, str):
            continue
        if _local(element.tag) in _DROP:
            parent = element.getparent()
            if parent is not None:
                parent.remove(element)
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        for name in list(element.attrib):
            local = _local(name).lower()
            value = element.attrib[name]
            external = (name == XLINK_HREF or local == "href") and not value.startswith("#")
            if local.startswith("on") or local == "style" or external:
                del element.attrib[name]
        if _local(element.tag) == "style":
            if nonce:
                element.set("nonce", nonce)
            elif "nonce" in element.attrib:
                del element.attrib["nonce"]
    root.set("role", "img")
    root.set("aria-label", title)
    root.set("width", "100%")
    root.attrib.pop("height", None)
    return str(etree.tostring(root, encoding="unicode"))


def _chart(kind: type, title: str, empty: str, **config: object) -> object:
    return kind(
        no_data_text=empty,
        js=[],
        disable_xml_declaration=True,
        style=STYLE,
        title=title,
        width=800,
        height=360,
        show_legend=True,
        legend_at_bottom=True,
        print_values=False,
        margin=16,
        **config,
    )


def trend(
    title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]], nonce: str = "", empty: str = "–"
) -> str:
    """A line per series over the days in ``labels``."""
    chart = _chart(pygal.Line, title, empty, x_label_rotation=45, show_minor_x_labels=False, x_labels_major_every=5)
    chart.x_labels = list(labels)  # type: ignore[attr-defined]
    for name, values in series:
        chart.add(name, list(values))  # type: ignore[attr-defined]
    return sanitise(chart.render(is_unicode=True), title, nonce)  # type: ignore[attr-defined]


def breakdown(title: str, parts: Sequence[tuple[str, int]], nonce: str = "", empty: str = "–") -> str:
    """A horizontal bar per part (a method's amount); ``empty`` is written when there is none."""
    chart = _chart(pygal.HorizontalBar, title, empty)
    for name, value in parts:
        chart.add(name, [value])  # type: ignore[attr-defined]
    return sanitise(chart.render(is_unicode=True), title, nonce)  # type: ignore[attr-defined]
