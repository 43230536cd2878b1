#!/usr/bin/env python3
"""PyArrow peer for bench/e2e_bench.sh: the country, entity and (entity, country) totals
(records, units, tpp) of a shipment log with pyarrow.csv (multithreaded reader) and
Table.group_by, the way a data engineer would write it with Arrow.

tpp is quantity x tpp_per_unit, or quantity x the chip's tpp from chips.csv when the line has no
tpp_per_unit (SPEC §1.1). Entities are trimmed, countries and chips upper-cased, as capledger
reads them (generated logs need nothing more).

With --check DIR, compares the three groupings with capledger's files in DIR and exits 1 on any
difference. Prints one line: `pyarrow seconds=<read + group seconds> groups=<rows>`.
"""
import argparse
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from duckdb_peer import compare_with_capledger  # the same comparison with capledger's files


def totals(log, chips_path):
    chips = pacsv.read_csv(chips_path)
    chip_keys = pc.utf8_upper(pc.utf8_trim_whitespace(chips["chip"]))
    chip_tpp = chips["tpp"].cast(pa.int64())
    types = {"quantity": pa.int64(), "tpp_per_unit": pa.int64()}
    for name in ("shipment_id", "date", "entity", "country", "chip", "pathway", "order_id", "exporter"):
        types[name] = pa.string()
    table = pacsv.read_csv(log, convert_options=pacsv.ConvertOptions(column_types=types))
    chip_index = pc.index_in(pc.utf8_upper(pc.utf8_trim_whitespace(table["chip"])), value_set=chip_keys)
    per_unit = pc.coalesce(table["tpp_per_unit"], pc.take(chip_tpp, chip_index))
    lines = pa.table({
        "entity": pc.utf8_trim_whitespace(table["entity"]),
        "country": pc.utf8_upper(pc.utf8_trim_whitespace(table["country"])),
        "quantity": table["quantity"],
        "tpp": pc.multiply_checked(table["quantity"], per_unit),
    })
    return [(name, keys, lines.group_by(keys).aggregate([("quantity", "count"), ("quantity", "sum"), ("tpp", "sum")]))
            for name, keys in (("by_country.csv", ["country"]), ("by_entity.csv", ["entity"]),
                               ("by_entity_country.csv", ["entity", "country"]))]


def as_dict(groupings):
    """(file, key...) -> (records, units, tpp), as duckdb_peer.capledger_totals reads capledger's files."""
    out = {}
    for name, keys, grouped in groupings:
        columns = [grouped[k].to_pylist() for k in keys]
        records = grouped["quantity_count"].to_pylist()
        units = grouped["quantity_sum"].to_pylist()
        tpp = grouped["tpp_sum"].to_pylist()
        for i in range(grouped.num_rows):
            out[(name,) + tuple(c[i] for c in columns)] = (records[i], units[i], tpp[i])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log")
    parser.add_argument("--chips", required=True)
    parser.add_argument("--check", metavar="DIR", help="capledger output directory to compare with")
    args = parser.parse_args()

    start = time.perf_counter()
    groupings = totals(args.log, args.chips)
    seconds = time.perf_counter() - start
    print(f"pyarrow seconds={seconds:.3f} groups={sum(g.num_rows for _, _, g in groupings)}")
    if args.check:
        return compare_with_capledger(as_dict(groupings), args.check, "pyarrow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
