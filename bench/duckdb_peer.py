#!/usr/bin/env python3
"""DuckDB peer for bench/e2e_bench.sh: one pass over a shipment log computing the country, entity
and (entity, country) totals (records, units, tpp) with GROUP BY GROUPING SETS over read_csv.

tpp is quantity x tpp_per_unit, or quantity x the chip's tpp from chips.csv when the line has no
tpp_per_unit (SPEC §1.1), so the sums are the ones capledger writes to by_country.csv,
by_entity.csv and by_entity_country.csv (all lines; generated logs have no rejects and the
default as_of is the last date, so every line counts).

With --check DIR, compares the three groupings with capledger's files in DIR and exits 1 on any
difference. Prints one line: `duckdb seconds=<query seconds> groups=<rows>`.
"""
import argparse
import csv
import sys
import time


def capledger_totals(out_dir):
    totals = {}
    for name, keys in (("by_country.csv", ("country",)), ("by_entity.csv", ("entity",)),
                       ("by_entity_country.csv", ("entity", "country"))):
        with open(f"{out_dir}/{name}", newline="") as f:
            for row in csv.DictReader(f):
                key = (name,) + tuple(row[k] for k in keys)
                totals[key] = (int(row["records"]), int(row["units"]), int(row["tpp"]))
    return totals


def compare_with_capledger(peer, out_dir, label):
    """Compares a peer's totals ((file, key...) -> (records, units, tpp)) with capledger's files
    in out_dir; prints the outcome. Returns the exit status (0: equal)."""
    ours = capledger_totals(out_dir)
    if peer != ours:
        only = sorted(set(peer) ^ set(ours))[:5]
        differing = [(k, peer[k], ours[k]) for k in peer.keys() & ours.keys() if peer[k] != ours[k]][:5]
        print(f"MISMATCH ({label}): {len(set(peer) ^ set(ours))} groups in one only (e.g. {only}); "
              f"differing totals e.g. {differing}", file=sys.stderr)
        return 1
    print(f"agree: {len(ours)} groups (country, entity, entity x country) of {label} match capledger")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("log")
    parser.add_argument("--chips", required=True)
    parser.add_argument("--threads", type=int, default=0, help="DuckDB threads (0: its default)")
    parser.add_argument("--check", metavar="DIR", help="capledger output directory to compare with")
    args = parser.parse_args()

    import duckdb  # here: pyarrow_peer.py imports this file for its comparison alone
    con = duckdb.connect()
    if args.threads > 0:
        con.execute(f"SET threads = {args.threads}")
    con.execute("SET preserve_insertion_order = false")
    query = """
        WITH chips AS (
          SELECT upper(chip) AS chip, tpp FROM read_csv(?, header = true, all_varchar = false)
        ), lines AS (
          SELECT trim(s.entity) AS entity, upper(trim(s.country)) AS country, s.quantity,
                 s.quantity * coalesce(s.tpp_per_unit, c.tpp) AS tpp
          FROM read_csv(?, header = true, quote = '"', escape = '"',
                        columns = {'shipment_id': 'VARCHAR', 'date': 'VARCHAR', 'entity': 'VARCHAR',
                                   'country': 'VARCHAR', 'chip': 'VARCHAR', 'quantity': 'BIGINT',
                                   'pathway': 'VARCHAR', 'order_id': 'VARCHAR', 'exporter': 'VARCHAR',
                                   'tpp_per_unit': 'BIGINT'}) s
          LEFT JOIN chips c ON upper(trim(s.chip)) = c.chip
        )
        SELECT GROUPING(entity) AS g_entity, GROUPING(country) AS g_country, entity, country,
               count(*) AS records, sum(quantity) AS units, sum(tpp) AS tpp
        FROM lines
        GROUP BY GROUPING SETS ((country), (entity), (entity, country))
    """
    start = time.perf_counter()
    rows = con.execute(query, [args.chips, args.log]).fetchall()
    seconds = time.perf_counter() - start
    print(f"duckdb seconds={seconds:.3f} groups={len(rows)}")

    if args.check:
        duck = {}
        for g_entity, g_country, entity, country, records, units, tpp in rows:
            if g_entity:  # grouped by country only
                key = ("by_country.csv", country)
            elif g_country:
                key = ("by_entity.csv", entity)
            else:
                key = ("by_entity_country.csv", entity, country)
            duck[key] = (int(records), int(units), int(tpp))
        return compare_with_capledger(duck, args.check, "duckdb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
