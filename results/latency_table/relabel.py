"""Put new accuracies beside the timed rows without timing again (the weights a row's accuracy
comes from do not change its latency: the benchmark times each architecture with random
weights). Rewrites latency.json's accuracy fields, table.md and accuracy_latency.png from
accuracy.json. Usage: python results/latency_table/relabel.py"""
import json
import os

from odkd.deploy.latency_report import accuracy_for, markdown_table, plot, read_accuracy

here = os.path.dirname(os.path.abspath(__file__))
report = json.load(open(os.path.join(here, "latency.json")))
metric, values = read_accuracy(os.path.join(here, "accuracy.json"))
report["accuracy_metric"] = metric
for row in report["rows"]:
    row["accuracy"] = accuracy_for(row, values)
with open(os.path.join(here, "latency.json"), "w") as f:
    json.dump(report, f, indent=2)
with open(os.path.join(here, "table.md"), "w") as f:
    f.write(markdown_table(report) + "\n")
plot(report, os.path.join(here, "accuracy_latency.png"))
