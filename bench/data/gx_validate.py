#!/usr/bin/env python3
"""Great Expectations' side of bench/data (b): the 20 expectations of suite.yaml on a CSV.

usage: python gx_validate.py CSV REPEATS OUT_JSON
Times the CSV load (pandas) and the validation (median of REPEATS); peak memory is VmHWM.
"""
import json
import statistics
import sys
import time

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd

csv, repeats, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
df = pd.read_csv(csv)
load_s = time.perf_counter() - t0

context = gx.get_context(mode="ephemeral")
asset = context.data_sources.add_pandas("bench").add_dataframe_asset("people")
batch_definition = asset.add_batch_definition_whole_dataframe("all")
suite = context.suites.add(gx.ExpectationSuite(name="bench-people"))
columns = ["id", "age", "income", "score", "country", "segment", "email", "visits", "balance", "active"]
for e in [
    gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=10_000_000),
    gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True),
    gxe.ExpectColumnValuesToNotBeNull(column="id"),
    gxe.ExpectColumnValuesToBeUnique(column="id"),
    gxe.ExpectColumnValuesToNotBeNull(column="age"),
    gxe.ExpectColumnValuesToBeBetween(column="age", min_value=18),
    gxe.ExpectColumnValuesToBeBetween(column="age", max_value=100),
    gxe.ExpectColumnValuesToNotBeNull(column="income"),
    gxe.ExpectColumnValuesToBeBetween(column="income", min_value=0),
    gxe.ExpectColumnValuesToNotBeNull(column="score"),
    gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0),
    gxe.ExpectColumnValuesToBeBetween(column="score", max_value=1),
    gxe.ExpectColumnValuesToBeInSet(column="country", value_set=["FR", "DE", "IT", "ES", "NL"]),
    gxe.ExpectColumnValuesToBeInSet(column="segment", value_set=["retail", "pro", "vip"]),
    gxe.ExpectColumnValuesToMatchRegex(column="email", regex=r"^[a-z0-9]+@example\.com$"),
    gxe.ExpectColumnValuesToBeBetween(column="visits", min_value=0),
    gxe.ExpectColumnMeanToBeBetween(column="visits", min_value=3.5, max_value=4.5),
    gxe.ExpectColumnValuesToNotBeNull(column="balance"),
    gxe.ExpectColumnStdevToBeBetween(column="balance", min_value=200, max_value=400),
    gxe.ExpectColumnValuesToBeInSet(column="active", value_set=[True, False, "true", "false"]),
]:
    suite.add_expectation(e)

times, result = [], None
for _ in range(repeats):
    t0 = time.perf_counter()
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(suite)
    times.append(time.perf_counter() - t0)
outcomes = [{"expectation": r.expectation_config.type, "column": r.expectation_config.kwargs.get("column"),
             "success": r.success, "unexpected_count": (r.result or {}).get("unexpected_count")}
            for r in result.results]
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
json.dump({"gx": gx.__version__, "load_csv_s": load_s, "validate_s": times, "validate_median_s": statistics.median(times),
           "peak_rss_mib": hwm / 1024, "success": result.success, "results": outcomes}, open(out, "w"), indent=1)
