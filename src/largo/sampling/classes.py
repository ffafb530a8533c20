"""Classes by name or index, and which classes a picture shows when the user names none."""

from __future__ import annotations

import difflib

from largo.errors import LargoError


def grid_classes(num_classes: int, max_rows: int = 16) -> list[int]:
    """All classes when they fit, else `max_rows` spread evenly over the label range."""
    if num_classes <= max_rows:
        return list(range(num_classes))
    return sorted({round(i * (num_classes - 1) / (max_rows - 1)) for i in range(max_rows)})


def parse_classes(text: str | list[str | int] | None, class_names: list[str]) -> list[int]:
    """Class indices from 'rose,3,sunflower' or ['rose', 3] (names case-insensitive); empty: `grid_classes`."""
    tokens = [str(t).strip() for t in (text.split(",") if isinstance(text, str) else text or [])]
    tokens = [t for t in tokens if t]
    if not tokens:
        return grid_classes(len(class_names))
    lower = {n.lower(): i for i, n in enumerate(class_names)}
    out = []
    for token in tokens:
        if token.isdigit() and int(token) < len(class_names):
            out.append(int(token))
        elif token.lower() in lower:
            out.append(lower[token.lower()])
        else:
            close = difflib.get_close_matches(token.lower(), list(lower), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else \
                f"valid: 0-{len(class_names) - 1} or {', '.join(class_names[:12])}{', …' if len(class_names) > 12 else ''}"
            raise LargoError(f"unknown class {token!r}; {hint}")
    return out
