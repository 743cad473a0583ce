"""Load and transform table 2; its result is exported as the task's output (table_2.csv)."""

import csv
import os

rows = [{"id": 1, "sales": 120}, {"id": 2, "sales": 80}, {"id": 3, "sales": 45}]
path = os.path.join(os.environ["TASKYARD_OUTPUT_DIR"], "table_2.csv")
with open(path, "w", newline="") as out:
    writer = csv.DictWriter(out, fieldnames=["id", "sales"])
    writer.writeheader()
    writer.writerows({**row, "sales": row["sales"] * 10} for row in rows)
print(f"wrote {len(rows)} rows to table_2.csv")
