"""Load and transform table 1; its result is exported as the task's output (table_1.csv)."""

import csv
import os

rows = [{"id": 1, "city": "Istanbul"}, {"id": 2, "city": "Ankara"}, {"id": 3, "city": "Izmir"}]
path = os.path.join(os.environ["TASKYARD_OUTPUT_DIR"], "table_1.csv")
with open(path, "w", newline="") as out:
    writer = csv.DictWriter(out, fieldnames=["id", "city"])
    writer.writeheader()
    writer.writerows({**row, "city": row["city"].upper()} for row in rows)
print(f"wrote {len(rows)} rows to table_1.csv")
