#!/usr/bin/env python3
"""`capledger check` against an independent model of what the README says it answers.

Each proposed line is placed among the ledger's lines and the proposed lines before it as ingest
would place them (date, then position, the ledger's lines first); its limit rows give the tpp
before it on each limit key and `breach` when it adds tpp and the running total then passes the
limit in force on it or on a later line of that key. A UVEU entity's line gets the share rules
that it can break, as SPEC §4 states them (`100·part > 7·whole` style), over every line of the
ledger and the proposed lines before it and itself. Random ledgers of one to three nights (returns,
lines outside the counting window, LPP orders and years, NVEU phases, UVEU entities with HQs in and
out of the US) and proposals dated among or after their lines, under the bundled tables or (a third
of the seeds) other ones (smaller caps, a G2G partner, other NVEU phases and UVEU shares); both
`check` and `check --replay` must give the model's rows. A UVEU line that lifts its entity's
worldwide total from 0 or below above 0 also gets a row (no limit columns, a breach) for each
share rule then broken where its limit rows do not weigh it.

usage: check_model.py CAPLEDGER FIRST_SEED END_SEED
"""
import datetime
import json
import os
import random
import subprocess
import sys
import tempfile

H100 = 15832  # H100-SXM, datasets/chips.csv
WINDOW = (datetime.date(2025, 1, 13), datetime.date(2027, 12, 31))
TIER2 = {"AE", "BR", "IN"}  # DE and US are tier 1: no cap
UVEU = {"E4": "US", "E5": "DE"}  # entity: HQ
HEADER = "shipment_id,date,entity,country,chip,quantity,pathway,order_id\n"


class Tables:
    """The rule figures a seed runs under: the bundled ones (datasets/rules/ai-diffusion-2025.json,
    no G2G partner among AE, BR, IN), or, for a third of the seeds, other tables given to ingest
    and check alike: smaller caps, IN a G2G partner (cap x3), other NVEU phases and UVEU shares."""

    def __init__(self, custom):
        self.custom = custom
        d = datetime.date
        if not custom:
            self.cap, self.multiplier, self.partners = 790000000, 2, set()
            self.lpp_order, self.lpp_annual = 26900000, 26900000
            self.phases = [(d(2025, 12, 31), 633000000), (d(2026, 12, 31), 1699000000), (d(2027, 12, 31), 5064000000)]
            self.max_tier2, self.min_tier1, self.min_us = 70000, 750000, 500000  # millionths
        else:
            self.cap, self.multiplier, self.partners = 300000000, 3, {"IN"}
            self.lpp_order, self.lpp_annual = 20000000, 30000000
            self.phases = [(d(2025, 6, 30), 100000000), (d(2026, 6, 30), 300000000), (d(2027, 12, 31), 250000000)]
            self.max_tier2, self.min_tier1, self.min_us = 250000, 500000, 600000

    def flags(self, work):
        """The reference flags that give capledger these tables (written into @p work)."""
        if not self.custom:
            return []
        datasets = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets")
        with open(os.path.join(datasets, "rules", "ai-diffusion-2025.json")) as f:
            rules = json.load(f)
        rules["country_cap"].update({"tpp": self.cap, "g2g_multiplier": self.multiplier})
        rules["lpp"] = {"per_order_tpp": self.lpp_order, "per_consignee_year_tpp": self.lpp_annual}
        rules["nveu_caps"] = [{"through": str(t), "tpp": c} for t, c in self.phases]
        rules["uveu"] = {"max_tier2_country_share": self.max_tier2 / 1e6, "min_tier1_share": self.min_tier1 / 1e6,
                         "min_us_share_if_us_hq": self.min_us / 1e6}
        with open(os.path.join(work, "rules.json"), "w") as f:
            json.dump(rules, f)
        with open(os.path.join(datasets, "countries.csv")) as f:
            countries = f.read().splitlines()
        countries = [row[:-1] + "1" if row.startswith(tuple(c + "," for c in self.partners)) else row
                     for row in countries]
        with open(os.path.join(work, "countries.csv"), "w") as f:
            f.write("\n".join(countries) + "\n")
        return ["--rules", os.path.join(work, "rules.json"), "--countries", os.path.join(work, "countries.csv")]


T = Tables(False)  # the seed's tables


def limit_on(rule, date, country):
    if rule == "NVEU_CAP_EXCEEDED":
        return next(cap for through, cap in T.phases if date <= through)
    if rule == "COUNTRY_CAP_EXCEEDED":
        return T.cap * (T.multiplier if country in T.partners else 1)
    return T.lpp_order if rule == "LPP_ORDER_LIMIT" else T.lpp_annual


def limit_keys(line):
    if not WINDOW[0] <= line["date"] <= WINDOW[1]:
        return []
    keys = []
    if line["pathway"] == "LICENSE" and line["country"] in TIER2:
        keys.append(("COUNTRY_CAP_EXCEEDED", line["country"]))
    if line["pathway"] == "NVEU":
        keys.append(("NVEU_CAP_EXCEEDED", (line["entity"], line["country"])))
    if line["pathway"] == "LPP":
        keys += [("LPP_ORDER_LIMIT", line["order"]), ("LPP_ANNUAL_LIMIT", (line["entity"], line["date"].year))]
    return keys


def random_line(rng, shipment_id, scale):
    pathway = rng.choice(["LICENSE", "LICENSE", "NVEU", "LPP", "UVEU"])
    quantity = rng.randint(-300, 1200) if pathway == "LPP" else rng.randint(-8000, 16000) * scale
    return {"id": shipment_id, "date": datetime.date(2024, 12, 1) + datetime.timedelta(days=rng.randrange(600)),
            "entity": rng.choice(["E1", "E2", "E3", "E4", "E5"]),
            "country": rng.choice(["AE", "BR", "IN", "DE", "US", "US", "DE", "US"]),
            "quantity": quantity or 1, "pathway": pathway,
            "order": rng.choice(["O1", "O2", "O3"]) if pathway == "LPP" else ""}


def to_csv(lines):
    return HEADER + "".join(f"{l['id']},{l['date']},{l['entity']},{l['country']},H100-SXM,{l['quantity']},"
                            f"{l['pathway']},{l['order']}\n" for l in lines)


def model(ledger, proposed):
    """{(line, rule): (limit, consumed before, headroom before, status)} for the limit rules."""
    spec_order = sorted(range(len(proposed)), key=lambda i: (proposed[i]["date"], i))
    rows = {}
    for n, p in enumerate(spec_order):
        line = proposed[p]
        placed = sorted([(l["date"], 0, k, l) for k, l in enumerate(ledger)] +
                        [(proposed[q]["date"], 1, q, proposed[q]) for q in spec_order[:n + 1]],
                        key=lambda t: t[:3])
        for rule, key in limit_keys(line):
            running, before, passes = 0, None, False
            for _, proposed_line, position, other in placed:
                if (rule, key) not in limit_keys(other):
                    continue
                if proposed_line and position == p:
                    before = running
                running += other["quantity"] * H100
                if before is not None and running > limit_on(rule, other["date"], other["country"]):
                    passes = True
            limit = limit_on(rule, line["date"], line["country"])
            status = "breach" if line["quantity"] > 0 and passes else "ok"
            rows[(p + 1, rule)] = (str(limit), str(before), str(limit - before), status)
        if line["entity"] in UVEU:
            rows.update(share_rows(p + 1, line, [l for l in ledger + [proposed[q] for q in spec_order[:n]]
                                                 if l["entity"] == line["entity"]]))
    return rows


def share_rows(number, line, earlier):
    """The share rules a UVEU entity's line can break; their limit columns are the most installed
    tpp the share allows (in the line's country, outside tier 1, outside the US) with the line in."""
    tpp = lambda lines: sum(l["quantity"] * H100 for l in lines)
    whole = tpp(earlier) + line["quantity"] * H100
    if whole <= 0:  # SPEC §4: the share rules apply where the worldwide installed tpp is > 0
        return {}
    rows = {}

    def row(rule, share, before, breaks):
        most = share * whole // 1000000
        status = "breach" if line["quantity"] > 0 and breaks(before + line["quantity"] * H100) else "ok"
        rows[(number, rule)] = (str(most), str(before), str(most - before), status)

    if line["country"] in TIER2:
        row("UVEU_TIER2_SHARE", T.max_tier2, tpp(l for l in earlier if l["country"] == line["country"]),
            lambda part: 1000000 * part > T.max_tier2 * whole)
    if line["country"] != "DE" and line["country"] != "US":  # not tier 1: lowers the tier-1 share
        row("UVEU_TIER1_SHARE", 1000000 - T.min_tier1, tpp(l for l in earlier if l["country"] not in ("DE", "US")),
            lambda outside: 1000000 * (whole - outside) < T.min_tier1 * whole)
    if UVEU[line["entity"]] == "US" and line["country"] != "US":
        row("UVEU_US_SHARE", 1000000 - T.min_us, tpp(l for l in earlier if l["country"] != "US"),
            lambda outside: 1000000 * (whole - outside) < T.min_us * whole)
    # A line that lifts the worldwide total from 0 or below brings the rules into force: a rule then
    # broken where the rows above do not weigh it is a row without limit columns, a breach.
    if whole - line["quantity"] * H100 <= 0:
        held = {}
        for l in earlier + [line]:
            held[l["country"]] = held.get(l["country"], 0) + l["quantity"] * H100
        if any(1000000 * part > T.max_tier2 * whole for country, part in held.items()
               if country in TIER2 and country != line["country"]):
            rows[(number, "UVEU_TIER2_SHARE in force")] = ("", "", "", "breach")
        if line["country"] in ("DE", "US") and 1000000 * (held.get("DE", 0) + held.get("US", 0)) < T.min_tier1 * whole:
            rows[(number, "UVEU_TIER1_SHARE in force")] = ("", "", "", "breach")
        if UVEU[line["entity"]] == "US" and line["country"] == "US" and 1000000 * held["US"] < T.min_us * whole:
            rows[(number, "UVEU_US_SHARE in force")] = ("", "", "", "breach")
    return rows


def run(capledger, *args):
    return subprocess.run([capledger, *args], capture_output=True, text=True)


def main():
    capledger, first, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    global T
    failures = 0
    for seed in range(first, end):
        rng = random.Random(seed)
        scale = 1 if seed % 2 else 4  # 4: caps crossed often
        T = Tables(custom=seed % 3 == 2)
        with tempfile.TemporaryDirectory() as work:
            tables = T.flags(work)
            db = os.path.join(work, "l.db")
            with open(os.path.join(work, "entities.csv"), "w") as f:
                f.write("entity,hq_country,status,nveu_countries\nE2,US,NVEU,IN;AE\nE3,US,NVEU,BR\n"
                        "E4,US,UVEU,\nE5,DE,UVEU,\n")
            assert run(capledger, "ledger", "init", db).returncode == 0
            ledger = []
            for night in range(rng.randint(1, 3)):
                lines = [random_line(rng, f"L{len(ledger) + i}", scale) for i in range(rng.randint(1, 25))]
                path = os.path.join(work, f"night{night}.csv")
                with open(path, "w") as f:
                    f.write(to_csv(lines))
                result = run(capledger, "ledger", "ingest", db, path, "--entities", os.path.join(work, "entities.csv"),
                             *tables)
                assert result.returncode == 0, result.stderr
                ledger += lines
            proposed = [random_line(rng, f"P{i}", scale) for i in range(rng.randint(1, 6))]
            if rng.random() < 0.5:  # the vendor's usual case: shipments about to leave
                latest = max(l["date"] for l in ledger)
                for line in proposed:
                    line["date"] = latest + datetime.timedelta(days=rng.randrange(40))
            path = os.path.join(work, "proposed.csv")
            with open(path, "w") as f:
                f.write(to_csv(proposed))
            want = model(ledger, proposed)
            for replay in ([], ["--replay"]):
                result = run(capledger, "check", db, "--proposed", path, *tables, *replay)
                got = {}
                for row in result.stdout.splitlines()[1:]:
                    field = row.split(",")
                    if field[7].startswith("UVEU_") and field[8] == "":
                        got[(int(field[0]), field[7] + " in force")] = tuple(field[8:12])
                    elif field[7] not in ("", "PROHIBITED_DESTINATION", "UNAUTHORIZED_PATHWAY"):
                        got[(int(field[0]), field[7])] = tuple(field[8:12])
                if got != want or result.returncode != (1 if "breach" in result.stdout else 0):
                    failures += 1
                    print(f"seed {seed} {' '.join(replay)}: exit {result.returncode}")
                    for key in sorted(set(want) | set(got)):
                        if want.get(key) != got.get(key):
                            print(f"  {key}: model {want.get(key)}, capledger {got.get(key)}")
    print(f"{end - first} seeds, {failures} differing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
