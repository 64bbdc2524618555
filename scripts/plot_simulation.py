"""Plot fcn-simulate runs: correction effort per image, one line per learning mode.

    python scripts/plot_simulation.py OUT.png off.jsonl instant.jsonl "light, both=b.jsonl" ...

Each input is the ``--json`` output of one ``fcn-simulate`` run; its summary line
gives the mode and the effort per image. ``LABEL=FILE`` names a line (default: the
mode); runs of the same mode get their mode's colour in a darker shade. Drawn with Pillow alone (no plotting
library among the dependencies): thin lines per image, thick lines per block.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

COLOURS = {"off": (120, 120, 120), "instant": (31, 119, 180), "finetune": (214, 120, 40),
           "both": (44, 160, 44)}
W, H = 1040, 520
LEFT, RIGHT, TOP, BOTTOM = 70, 290, 40, 60


def read_summary(path: Path) -> dict:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    summaries = [r for r in lines if r.get("event") == "summary"]
    if not summaries:
        raise SystemExit(f"{path}: no summary line (did the run finish?)")
    return summaries[-1]


def _font(size: int) -> ImageFont.ImageFont:
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def plot(out: Path, runs: list[dict], title: str) -> None:
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)
    n = max(len(r["effort"]) for r in runs)
    x0, x1, y0, y1 = LEFT, W - RIGHT, H - BOTTOM, TOP

    def px(i: float) -> float:
        return x0 + (x1 - x0) * (i / max(n - 1, 1))

    def py(v: float) -> float:
        return y0 - (y0 - y1) * v

    for k in range(0, 11, 2):  # effort axis: 0 .. 100 % in steps of 20
        y = py(k / 10)
        d.line([(x0, y), (x1, y)], fill=(230, 230, 230))
        d.text((x0 - 8, y), f"{k * 10}%", fill="black", font=small, anchor="rm")
    step = 10 if n > 30 else 5
    for i in range(0, n + 1, step):
        x = px(min(i, n - 1) if i else 0)
        d.line([(x, y0), (x, y0 + 4)], fill="black")
        d.text((x, y0 + 8), str(max(i, 1)), fill="black", font=small, anchor="mt")
    d.line([(x0, y0), (x1, y0)], fill="black")
    d.line([(x0, y0), (x0, y1)], fill="black")
    d.text(((x0 + x1) / 2, H - 22), "image in labelling order", fill="black", font=font, anchor="mm")
    d.text((x0 - 8, y1 - 14), "effort", fill="black", font=font, anchor="rm")
    d.text(((x0 + x1) / 2, 16), title, fill="black", font=font, anchor="mm")
    seen: dict[str, int] = {}
    for j, r in enumerate(runs):
        colour = COLOURS.get(r["learn"], (0, 0, 0))
        shade = seen.get(r["learn"], 0)
        seen[r["learn"]] = shade + 1
        colour = tuple(int(c * 0.55 ** shade) for c in colour)
        pts = [(px(i), py(e)) for i, e in enumerate(r["effort"])]
        faint = tuple(int(c + (255 - c) * 0.6) for c in colour)
        d.line(pts, fill=faint, width=1)
        block = r["block"]
        for b, e in enumerate(r["effort_per_block"]):  # block means as steps
            a, z = b * block, min((b + 1) * block, len(r["effort"])) - 1
            d.line([(px(a), py(e)), (px(z), py(e))], fill=colour, width=4)
        y = TOP + 10 + 24 * j
        d.line([(x1 + 20, y), (x1 + 50, y)], fill=colour, width=4)
        d.text((x1 + 58, y), f"{r.get('label') or r['learn']} ({r['mean_effort'] * 100:.0f}%)",
               fill="black", font=font, anchor="lm")
    d.text((x1 + 20, TOP + 10 + 24 * len(runs)), "thick: mean per block", fill=(90, 90, 90),
           font=small, anchor="lm")
    img.save(out)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    out = Path(argv[0])
    runs = []
    for arg in argv[1:]:
        label, _, name = arg.rpartition("=")
        runs.append({**read_summary(Path(name)), "label": label})
    plot(out, runs, "Correction effort per image, camvid-mini, untrained FCN-8s, 2-core CPU")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
