import base64

from django import template

register = template.Library()


@register.filter
def pct(value, digits: int = 1) -> str:
    """0.8412 -> '84.1'; missing values (None, NaN) -> '–'."""
    if value is None or value != value:
        return "–"
    return f"{100 * float(value):.{int(digits)}f}"


@register.filter
def num(value, digits: int = 3) -> str:
    if value is None or value != value:
        return "–"
    return f"{float(value):.{int(digits)}f}"


@register.filter
def pval(value) -> str:
    if value is None or value != value:
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


@register.filter
def svg_data_uri(svg: str) -> str:
    """An SVG document as a data: URI for <img src>.

    matplotlib's SVG styles every shape with a style attribute, which the Content-Security-
    Policy blocks in a page; inside an image they belong to the image and are allowed.
    """
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")
