"""Writes crates/cli/data/titanic.csv, the table `shipyard quickstart` bundles in the binary.

Source: the Titanic passenger list (Frank E. Harrell Jr., Thomas Cason; Vanderbilt
Biostatistics), OpenML dataset 40945 (licence "Public"), as shipped inside the scikit-learn
wheel (BSD-3-Clause) under sklearn/datasets/tests/data/openml/id_40945. Reading it from the
installed package keeps the file reproducible offline.

Kept: the passenger features a model may use and the target. Dropped: name, ticket, cabin and
home.dest (identifiers), and boat and body (recorded after the sinking: they leak the target).
Two passengers have no port of embarkation; both (Miss Amelie Icard and Mrs George Nelson
Stone, ticket 113572) boarded at Southampton, which is filled in. One passenger (Mr Thomas
Storey) has no fare; that row is left out, so every column but age is always present and a
served request must give it.

Usage: .venv/bin/python scripts/make_quickstart_data.py
"""

import csv
import gzip
import io
import pathlib

import sklearn

SOURCE = (
    pathlib.Path(sklearn.__file__).parent
    / "datasets/tests/data/openml/id_40945/data-v1-dl-16826755.arff.gz"
)
OUT = pathlib.Path(__file__).resolve().parent.parent / "crates/cli/data/titanic.csv"
KEEP = ["pclass", "sex", "age", "sibsp", "parch", "fare", "embarked", "survived"]


def main() -> None:
    text = gzip.decompress(SOURCE.read_bytes()).decode("utf-8")
    names, rows, in_data = [], [], False
    for line in text.splitlines():
        if not line.strip() or line.startswith("%"):
            continue
        if in_data:
            rows.append(next(csv.reader(io.StringIO(line), quotechar='"', skipinitialspace=True)))
        elif line.lower().startswith("@attribute"):
            names.append(line.split()[1].strip("'"))
        elif line.lower().startswith("@data"):
            in_data = True
    index = [names.index(k) for k in KEEP]
    with OUT.open("w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(KEEP)
        written = 0
        for row in rows:
            values = dict(zip(KEEP, ("" if row[i] == "?" else row[i].strip("'") for i in index)))
            if values["fare"] == "":
                continue
            if values["embarked"] == "":
                values["embarked"] = "S"
            out.writerow(values[k] for k in KEEP)
            written += 1
    print(f"{OUT}: {written} rows")


if __name__ == "__main__":
    main()
