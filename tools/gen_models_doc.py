"""Regenerate the architecture table of docs/models.md from the registry.

    python tools/gen_models_doc.py        # rewrites the table between the markers
    python tools/gen_models_doc.py --check  # exit 1 if the file is out of date
"""

import sys
from pathlib import Path

from harmonize_cli import zoo

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"
BEGIN, END = "<!-- models-table:begin -->", "<!-- models-table:end -->"


def table() -> str:
    lines = [
        "| ours | reference name | input | trainable params | backbone | released weights | published (All MSE / PSNR) |",
        "| --- | --- | --- | ---: | --- | --- | --- |",
    ]
    for row in zoo.list_models():
        pretrained = row["pretrained"]
        released = f"`{pretrained['name']}.pth`" if pretrained else "-"
        published = "-"
        if pretrained and "All" in pretrained["metrics"]:
            m = pretrained["metrics"]["All"]
            published = f"{m['MSE']:.2f} / {m['PSNR']:.2f} (release)"
        elif row["paper"].get("All"):
            m = row["paper"]["All"]
            published = f"{m['MSE']:.2f} / {m['PSNR']:.2f} (paper)"
        aliases = ", ".join(f"`{a}`" for a in row["aliases"]) or "-"
        size = f"{row['input_size']}" if row["input_size"] else "any"
        lines.append(f"| `{row['name']}` | {aliases} | {size} | {row['num_params']:,} | "
                     f"{row['backbone'] or '-'} | {released} | {published} |")
    return "\n".join(lines)


def main(argv):
    text = DOC.read_text()
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    updated = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    if "--check" in argv:
        return 0 if updated == text else 1
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
