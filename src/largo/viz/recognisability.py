"""Recognisability along the reverse process as a picture: the classifier's accuracy on x_t and on x̂0 against the
fraction of sampler steps done (`largo viz recognisability`)."""

from __future__ import annotations

from PIL import Image

from largo.draw.plot import BLUE, GREY, ORANGE, Panel, Series, plot


def recognisability_plot(result: dict) -> Image.Image:
    rows = result["rows"]
    x = [r["fraction_done"] for r in rows]
    notes = [f"N = {result['n']}, classes cycled; scored by {result['classifier'].split('@')[0]}"]
    if result.get("x0_half_of_final_at") is not None:
        notes.append(f"x̂0 reaches half its final accuracy at {result['x0_half_of_final_at']:.0%} of the steps")
    panel = Panel(f"{result['sampler']}, {result['steps']} steps, w={result['cfg']:g}",
                  [Series(x, [r["acc_x0"] for r in rows], color=ORANGE, label="accuracy on x̂0 (predicted image)"),
                   Series(x, [r["acc_xt"] for r in rows], color=BLUE, label="accuracy on x_t (current state)"),
                   Series([0, 1], [1 / result["classes"]] * 2, color=GREY,
                          label=f"chance ({result['classes']} classes)", width=1.0)],
                  xlabel="fraction of the reverse process done", ylabel="classifier accuracy", y_from_zero=True,
                  notes=notes)
    return plot([panel], (640, 420), title="How soon is the sample recognisable?")
