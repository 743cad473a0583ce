"""Join the two tables, read from the upstream tasks' outputs under inputs/, into final_table.csv."""

import csv
import os


def read(task: str, name: str) -> dict[str, dict]:
    with open(os.path.join("inputs", task, name), newline="") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


cities = read("process_table_1", "table_1.csv")
sales = read("process_table_2", "table_2.csv")
path = os.path.join(os.environ["TASKYARD_OUTPUT_DIR"], "final_table.csv")
with open(path, "w", newline="") as out:
    writer = csv.DictWriter(out, fieldnames=["id", "city", "sales"])
    writer.writeheader()
    for key in sorted(cities.keys() & sales.keys(), key=int):
        writer.writerow({"id": key, "city": cities[key]["city"], "sales": sales[key]["sales"]})
        print(key, cities[key]["city"], sales[key]["sales"])
print("final_table.csv written")
