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
worldwide total from 0 or below above 0, and a return, also get a row (no limit columns, a breach)
for each share rule then broken where their limit rows do not weigh it (for a return, at a part
whose share it moved the wrong way, the shares compared as fractions). Half the seeds keep their
UVEU entities mostly in tier 1, near their shares, and half end the proposal with a UVEU return
sized where its verdict turns; that proposal is then ingested, and `ledger report` must find each
share rule `check` called that return a breach of, and no rule it called ok that was not broken
before it.

usage: check_model.py CAPLEDGER FIRST_SEED END_SEED
"""
import datetime
from fractions import Fraction
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


def random_line(rng, shipment_id, scale, uveu_in_tier1):
    """A line; a UVEU entity's goes to tier 1 with chance @p uveu_in_tier1 (besides by lot), so that
    some entities stay near their shares."""
    pathway = rng.choice(["LICENSE", "LICENSE", "NVEU", "LPP", "UVEU"])
    quantity = rng.randint(-300, 1200) if pathway == "LPP" else rng.randint(-8000, 16000) * scale
    entity = rng.choice(["E1", "E2", "E3", "E4", "E5"])
    tier1 = entity in UVEU and rng.random() < uveu_in_tier1
    countries = ["DE", "US"] if tier1 else ["AE", "BR", "IN", "DE", "US", "US", "DE", "US"]
    return {"id": shipment_id, "date": datetime.date(2024, 12, 1) + datetime.timedelta(days=rng.randrange(600)),
            "entity": entity, "country": rng.choice(countries),
            "quantity": quantity or 1, "pathway": pathway,
            "order": rng.choice(["O1", "O2", "O3"]) if pathway == "LPP" else ""}


def boundary_return(rng, placed):
    """A UVEU entity's return out of a country it holds tpp in, dated last (after every line of
    @p placed), sized where the verdict turns: the fewest units whose return breaks a share rule not
    broken before it, or one unit fewer; a random size where no return of at most what it holds
    there does."""
    entity = rng.choice(sorted(UVEU))
    lines = [l for l in placed if l["entity"] == entity]
    holding = held(lines)
    countries = [c for c, tpp in sorted(holding.items()) if tpp >= H100]
    if not countries:
        return None
    country = rng.choice(countries)
    line = lambda units: {"id": "PB", "date": max(l["date"] for l in placed), "entity": entity, "country": country,
                          "quantity": -units, "pathway": "UVEU", "order": ""}
    was = broken(entity, holding)
    breaks = lambda units: bool(broken(entity, held(lines + [line(units)])) - was)
    low, high = 0, holding[country] // H100  # breaks(low) is false
    if not breaks(high):
        return line(rng.randint(1, high))
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if breaks(mid) else (mid, high)
    return line(high - (rng.randint(0, 1) if high > 1 else 0))


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


def held(lines):
    """Installed tpp by country."""
    out = {}
    for l in lines:
        out[l["country"]] = out.get(l["country"], 0) + l["quantity"] * H100
    return out


def share(holding, part):
    """The share of a part (a tier-2 country, "tier 1", "US") in the worldwide total (> 0), exact."""
    tpp = holding.get("DE", 0) + holding.get("US", 0) if part == "tier 1" else holding.get(part, 0)
    return Fraction(tpp, sum(holding.values()))


def broken(entity, holding):
    """The (rule, part) pairs of each share rule SPEC §4 finds broken, by the part that breaks it;
    none where the rules are not in force."""
    if sum(holding.values()) <= 0:
        return set()
    parts = [("UVEU_TIER2_SHARE", c) for c in TIER2] + [("UVEU_TIER1_SHARE", "tier 1")]
    parts += [("UVEU_US_SHARE", "US")] if UVEU[entity] == "US" else []
    least = {"UVEU_TIER1_SHARE": T.min_tier1, "UVEU_US_SHARE": T.min_us}
    return {(rule, part) for rule, part in parts
            if (share(holding, part) > Fraction(T.max_tier2, 1000000) if rule == "UVEU_TIER2_SHARE" else
                share(holding, part) < Fraction(least[rule], 1000000))}


def share_rows(number, line, earlier):
    """The share rules a UVEU entity's line can break; their limit columns are the most installed
    tpp the share allows (in the line's country, outside tier 1, outside the US) with the line in.
    A return is a breach of each rule broken with it in at a part whose share it moved the wrong way
    (a tier-2 country's up, the tier-1 or US share down), found here by the shares before and after
    it as fractions."""
    tpp = lambda lines: sum(l["quantity"] * H100 for l in lines)
    whole = tpp(earlier) + line["quantity"] * H100
    if whole <= 0:  # SPEC §4: the share rules apply where the worldwide installed tpp is > 0
        return {}
    before, after = held(earlier), held(earlier + [line])
    now = broken(line["entity"], after)
    # A return leaves the worldwide total above 0 before it too: the shares it moves are defined.
    wrong_way = {(rule, part) for rule, part in now if line["quantity"] < 0 and
                 (share(after, part) > share(before, part) if rule == "UVEU_TIER2_SHARE" else
                  share(after, part) < share(before, part))}
    rows = {}

    def row(rule, ppm, part_before, part):
        most = ppm * whole // 1000000
        if line["quantity"] > 0:
            status = "breach" if (rule, part) in now else "ok"
        else:
            status = "breach" if (rule, part) in wrong_way else "ok"
        rows[(number, rule)] = (str(most), str(part_before), str(most - part_before), status)

    if line["country"] in TIER2:
        row("UVEU_TIER2_SHARE", T.max_tier2, tpp(l for l in earlier if l["country"] == line["country"]),
            line["country"])
    if line["country"] != "DE" and line["country"] != "US":  # not tier 1: weighed outside tier 1
        row("UVEU_TIER1_SHARE", 1000000 - T.min_tier1, tpp(l for l in earlier if l["country"] not in ("DE", "US")),
            "tier 1")
    if UVEU[line["entity"]] == "US" and line["country"] != "US":
        row("UVEU_US_SHARE", 1000000 - T.min_us, tpp(l for l in earlier if l["country"] != "US"), "US")
    # A rule broken where the rows above do not weigh it (another tier-2 country, the tier-1 share of
    # a line in tier 1, the US share of a line to the US) is a row without limit columns, a breach:
    # for a line that lifts the worldwide total from 0 or below (bringing the rules into force), and
    # for a return that moved that share the wrong way.
    lifts = whole - line["quantity"] * H100 <= 0
    if lifts or line["quantity"] < 0:
        counted = now if lifts else wrong_way
        weighed = {("UVEU_TIER2_SHARE", line["country"]),
                   ("UVEU_TIER1_SHARE", "tier 1") if line["country"] not in ("DE", "US") else None,
                   ("UVEU_US_SHARE", "US") if line["country"] != "US" else None}
        for rule in ("UVEU_TIER2_SHARE", "UVEU_TIER1_SHARE", "UVEU_US_SHARE"):
            if any(r == rule and (r, part) not in weighed for r, part in counted):
                rows[(number, rule + " no limit")] = ("", "", "", "breach")
    return rows


def run(capledger, *args):
    return subprocess.run([capledger, *args], capture_output=True, text=True)


def agrees_with_report(capledger, work, tables, ledger, proposed, answer):
    """Whether `check`'s @p answer on the last @p proposed line (last in SPEC order too) agrees with
    `ledger report`'s share findings once the proposal is ingested: each rule it calls a breach is
    found for the entity, and none it calls ok is found unless broken before the line."""
    edge, number = proposed[-1], len(proposed)
    entities = os.path.join(work, "entities.csv")
    result = run(capledger, "ledger", "ingest", os.path.join(work, "l.db"), os.path.join(work, "proposed.csv"),
                 "--entities", entities, *tables)
    assert result.returncode == 0, result.stderr
    run(capledger, "ledger", "report", os.path.join(work, "l.db"), "--out", os.path.join(work, "report"), *tables)
    with open(os.path.join(work, "report", "findings.csv")) as f:
        found = {row.split(",")[1] for row in f.read().splitlines()[1:] if row.split(",")[2] == edge["entity"]}
    earlier = [l for l in ledger + proposed[:-1] if l["entity"] == edge["entity"]]
    was = {rule for rule, _ in broken(edge["entity"], held(earlier))}
    for rule in ("UVEU_TIER2_SHARE", "UVEU_TIER1_SHARE", "UVEU_US_SHARE"):
        breach = any(answer.get((number, rule + kind), ("",) * 4)[3] == "breach" for kind in ("", " no limit"))
        if (breach and rule not in found) or (not breach and rule not in was and rule in found):
            print(f"  {rule}: check {'breach' if breach else 'ok'}, report {'finds' if rule in found else 'does not'}")
            return False
    return True


def main():
    capledger, first, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    global T
    failures = 0
    for seed in range(first, end):
        rng = random.Random(seed)
        scale = 1 if seed % 2 else 4  # 4: caps crossed often
        T = Tables(custom=seed % 3 == 2)
        uveu_in_tier1 = rng.choice([0, 0.9])
        with tempfile.TemporaryDirectory() as work:
            tables = T.flags(work)
            db = os.path.join(work, "l.db")
            with open(os.path.join(work, "entities.csv"), "w") as f:
                f.write("entity,hq_country,status,nveu_countries\nE2,US,NVEU,IN;AE\nE3,US,NVEU,BR\n"
                        "E4,US,UVEU,\nE5,DE,UVEU,\n")
            assert run(capledger, "ledger", "init", db).returncode == 0
            ledger = []
            for night in range(rng.randint(1, 3)):
                lines = [random_line(rng, f"L{len(ledger) + i}", scale, uveu_in_tier1)
                         for i in range(rng.randint(1, 25))]
                path = os.path.join(work, f"night{night}.csv")
                with open(path, "w") as f:
                    f.write(to_csv(lines))
                result = run(capledger, "ledger", "ingest", db, path, "--entities", os.path.join(work, "entities.csv"),
                             *tables)
                assert result.returncode == 0, result.stderr
                ledger += lines
            proposed = [random_line(rng, f"P{i}", scale, uveu_in_tier1) for i in range(rng.randint(1, 6))]
            if rng.random() < 0.5:  # the vendor's usual case: shipments about to leave
                latest = max(l["date"] for l in ledger)
                for line in proposed:
                    line["date"] = latest + datetime.timedelta(days=rng.randrange(40))
            edge = boundary_return(rng, ledger + proposed) if rng.random() < 0.5 else None
            proposed += [edge] if edge else []
            path = os.path.join(work, "proposed.csv")
            with open(path, "w") as f:
                f.write(to_csv(proposed))
            want = model(ledger, proposed)
            answers = []
            for replay in ([], ["--replay"]):
                result = run(capledger, "check", db, "--proposed", path, *tables, *replay)
                got = {}
                for row in result.stdout.splitlines()[1:]:
                    field = row.split(",")
                    if field[7].startswith("UVEU_") and field[8] == "":
                        got[(int(field[0]), field[7] + " no limit")] = tuple(field[8:12])
                    elif field[7] not in ("", "PROHIBITED_DESTINATION", "UNAUTHORIZED_PATHWAY"):
                        got[(int(field[0]), field[7])] = tuple(field[8:12])
                answers.append(got)
                if got != want or result.returncode != (1 if "breach" in result.stdout else 0):
                    failures += 1
                    print(f"seed {seed} {' '.join(replay)}: exit {result.returncode}")
                    for key in sorted(set(want) | set(got)):
                        if want.get(key) != got.get(key):
                            print(f"  {key}: model {want.get(key)}, capledger {got.get(key)}")
            if edge and not agrees_with_report(capledger, work, tables, ledger, proposed, answers[0]):
                failures += 1
                print(f"seed {seed}: check's verdict on {edge['id']} and report's findings once ingested differ")
    print(f"{end - first} seeds, {failures} differing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
