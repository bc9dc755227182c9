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
