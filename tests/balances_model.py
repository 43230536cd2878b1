#!/usr/bin/env python3
"""`ledger balances` and `reconcile` against an independent model of what the README says they
print, on both paths: the running state and `--replay` must give the model's rows, byte for byte
the same as each other (stdout, files, exit code, stderr past the line naming the path), and
stderr must name the running state exactly where the README says it is read, and note the entity
ids written alike as the README's entities paragraph says (its own grouping key, below).

Random ledgers of two to five nights: LPP orders whose lines span nights and lie partly outside
the counting window, return-only orders, an order id shared by consignees and destinations, NVEU
pairs authorized but never shipped, the entities file replaced between nights, keys spelled in
other cases (entities are case-sensitive: `e1` is not `E1`; `NV 1` and `Nv  1` are noted as written
alike, `U 1` and `U1` are not), ad-hoc chips and `tpp_per_unit`
overrides, lines dated far past the window, back-dated nights, rejected lines (`--rejects`),
orders at exactly a `--warn-at` level or their limit.
Two fifths of the seeds ingest under other tables (copies of datasets/ with other tiers, a G2G
partner, chip tpp, caps, window and NVEU phases), some nights of them under the bundled ones
first (a rebuild); some seeds mimic an older capledger between nights (the later state parts
dropped, or recorded stale), which the next ingest must rebuild; some query under yet other
tables or another entities file (both paths replay).

usage: balances_model.py CAPLEDGER FIRST_SEED END_SEED
"""
import csv
import datetime
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from fractions import Fraction

D = datetime.date
DATASETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets")
ENTITIES = ["E1", "E2", "E3", "e1", "NV1", "NV2", "U1", "u1", "NV 1", "Nv  1", "nv\u202f1"]
COUNTRIES = ["AE", "ae", "BR", "IN", "MY", "SA", "DE", "US", "CN"]
CHIPS = ["H100-SXM", "h100-sxm", "B200", "H20", "RTX-4090"]
ADHOC = ["FOO", "foo", "Bar"]  # outside every chips table: grouped upper-cased


class Tables:
    """Countries, chips and rules: the bundled ones, or (custom) copies with other values written
    into @p folder, given by `flags`."""

    def __init__(self, rng, folder, custom):
        self.flags = []
        with open(os.path.join(DATASETS, "countries.csv")) as f:
            self.countries = {r["iso2"].upper(): (int(r["tier"]), int(r["g2g_partner"])) for r in csv.DictReader(f)}
        with open(os.path.join(DATASETS, "chips.csv")) as f:
            self.chips = {r["chip"].upper(): (r["chip"], int(r["tpp"])) for r in csv.DictReader(f)}
        with open(os.path.join(DATASETS, "rules", "ai-diffusion-2025.json")) as f:
            self.rules = json.load(f)
        if custom:
            os.makedirs(folder)
            if rng.random() < 0.5:
                self.countries["MY"] = (2, 1)
            if rng.random() < 0.4:
                self.countries["SA"] = (3, 0)
            if rng.random() < 0.3:
                self.countries["DE"] = (2, 0)
            if rng.random() < 0.6:
                chip = rng.choice(["H100-SXM", "B200", "H20"])
                self.chips[chip] = (self.chips[chip][0], rng.choice([1, 777, 50000]))
            r = self.rules
            r["country_cap"]["tpp"] = rng.choice([30000000, 300000000, 790000000])
            r["country_cap"]["g2g_multiplier"] = rng.choice([1, 3])
            r["lpp"] = {"per_order_tpp": rng.choice([5000000, 20000000]),
                        "per_consignee_year_tpp": rng.choice([8000000, 30000000])}
            if rng.random() < 0.5:
                r["counting_starts"] = "2025-03-01"
                r["counting_ends"] = rng.choice(["2026-06-30", "2027-12-31"])
            r["nveu_caps"] = [{"through": "2025-06-30", "tpp": rng.choice([10000000, 100000000])},
                              {"through": r["counting_ends"], "tpp": rng.choice([5000000, 300000000])}]
            files = {"countries.csv": "iso2,name,tier,g2g_partner\n" +
                     "".join(f"{iso},X,{t},{g}\n" for iso, (t, g) in self.countries.items()),
                     "chips.csv": "chip,vendor,tpp,performance_density,datacenter\n" +
                     "".join(f"{spelling},V,{tpp},1.0,1\n" for spelling, tpp in self.chips.values()),
                     "rules.json": json.dumps(r)}
            for name, text in files.items():
                with open(os.path.join(folder, name), "w") as f:
                    f.write(text)
            self.flags = ["--countries", os.path.join(folder, "countries.csv"),
                          "--chips", os.path.join(folder, "chips.csv"), "--rules", os.path.join(folder, "rules.json")]
        r = self.rules
        self.window = (D.fromisoformat(r["counting_starts"]), D.fromisoformat(r["counting_ends"]))
        self.cap, self.multiplier = r["country_cap"]["tpp"], r["country_cap"].get("g2g_multiplier", 1)
        self.cap_pathways = set(r["country_cap"].get("pathways", ["LICENSE"]))
        self.lpp_order, self.lpp_year = r["lpp"]["per_order_tpp"], r["lpp"]["per_consignee_year_tpp"]
        self.phases = [(D.fromisoformat(p["through"]), p["tpp"]) for p in r["nveu_caps"]]

    def nveu_cap(self, day):
        return next(cap for through, cap in self.phases if day <= through)

    def country_cap(self, iso):
        return self.cap * (self.multiplier if self.countries[iso][1] else 1)

    def chip_key(self, chip):
        """The key a chip is grouped under: the table's spelling, or the upper-cased name."""
        return self.chips[chip.upper()][0] if chip.upper() in self.chips else chip.upper()


def write_entities(rng, path):
    """An entities file of random statuses, some ids written like the lines' (`e3` for `E3`); returns
    its authorized NVEU (entity, country) pairs and its ids."""
    rows, pairs = ["entity,hq_country,status,nveu_countries"], set()
    ids = ["E1", "E2", "e1", "NV1", "NV2", "U1"] + rng.sample(["e3", "nv 1", "U 1", "u1"], rng.randint(0, 2))
    for e in ids:
        status = rng.choice(["NONE", "NVEU", "UVEU", "NONE"])
        countries = rng.sample(["AE", "BR", "IN", "MY"], rng.randint(1, 2)) if status == "NVEU" else []
        pairs |= {(e, c) for c in countries}
        rows.append(f"{e},{rng.choice(['US', 'AE', 'DE'])},{status},{';'.join(countries)}")
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return pairs, ids


def night(rng, number, taken, start, back_dated, order_limit):
    """A night's log and its accepted lines (bad and repeated ones are rejected); maybe an order of
    one line at exactly half or all of @p order_limit (a `--warn-at` level reached, not exceeded)."""
    text = ["shipment_id,date,entity,country,chip,quantity,pathway,order_id,tpp_per_unit"]
    accepted = []
    if rng.random() < 0.4:
        units = rng.choice([order_limit // 2, order_limit])
        text.append(f"X{number},{start},E3,IN,FOO,{units},LPP,EDGE{number},1")
        taken.add(f"X{number}")
        accepted.append({"date": start, "entity": "E3", "country": "IN", "chip": "FOO", "quantity": units,
                         "pathway": "LPP", "order": f"EDGE{number}", "per_unit": 1})
    for i in range(rng.randint(3, 25)):
        sid = rng.choice(sorted(taken)) if taken and rng.random() < 0.05 else f"N{number}L{i}"
        r = rng.random()
        if back_dated:
            day = D(2025, 1, 2) + datetime.timedelta(days=rng.randrange(60))
        elif r < 0.08:
            day = D(2024, 6, 1) + datetime.timedelta(days=rng.randrange(200))  # before the window
        elif r < 0.12:
            day = rng.choice([D(2028, 3, 1), D(2031, 1, 1), D(2099, 12, 31)])  # past it
        else:
            day = start + datetime.timedelta(days=rng.randrange(20))
        entity, country, per_unit = rng.choice(ENTITIES), rng.choice(COUNTRIES), ""
        if rng.random() < 0.12:
            chip, per_unit = rng.choice(ADHOC), str(rng.choice([1, 3000, 16000]))
        else:
            chip = rng.choice(CHIPS)
            per_unit = str(rng.choice([5, 20000])) if rng.random() < 0.1 else ""
        pathway = rng.choice(["LICENSE", "LICENSE", "", "lpp", "LPP", "LPP", "NVEU", "nveu", "UVEU", "AIA", "ACA"])
        if pathway.upper() == "LPP":
            quantity = rng.randint(-400, 900)
            order = rng.choice(["O1", "O2", "O3", "O4", "RET", ""])  # RET: returns only; "": its id
            if order == "RET":
                quantity = -abs(quantity) or -1
        else:
            quantity, order = rng.randint(-6000, 20000), rng.choice(["", "", "O1"])
        quantity = quantity or 1
        bad = rng.random()
        if bad < 0.03:
            country = "ZZ"  # UNKNOWN_COUNTRY
        elif bad < 0.06:
            quantity = 0  # BAD_QUANTITY
        elif bad < 0.08:
            day = "2025-13-01"  # BAD_DATE
        text.append(f"{sid},{day},{entity},{country},{chip},{quantity},{pathway},{order},{per_unit}")
        if bad >= 0.08 and sid not in taken:
            taken.add(sid)
            accepted.append({"date": day, "entity": entity, "country": country.upper(), "chip": chip,
                             "quantity": quantity, "pathway": (pathway or "LICENSE").upper(),
                             "order": order or sid, "per_unit": int(per_unit) if per_unit else None})
    return "\n".join(text) + "\n", accepted


def tpp(line, t):
    return line["quantity"] * (line["per_unit"] or t.chips[line["chip"].upper()][1])


def percent(used, limit):
    """100 x used / limit, 2 decimals, half away from zero."""
    hundredths = abs(Fraction(used * 10000, limit))
    rounded = int(hundredths) + (1 if hundredths - int(hundredths) >= Fraction(1, 2) else 0)
    return ("-" if used * limit < 0 and rounded else "") + f"{rounded // 100}.{rounded % 100:02d}"


def model_balances(lines, t, authorized, as_of, warn_ppm):
    """The CSV rows of `ledger balances` (README): in-window lines up to as_of, in (date, input
    position) order; a cap is exceeded when its running total passes the limit on a line's date."""
    as_of = as_of or max(l["date"] for l in lines)
    counted = sorted((l["date"], i, l) for i, l in enumerate(lines) if t.window[0] <= l["date"] <= min(as_of, t.window[1]))
    caps = {}  # key: [total, crossed, entities, countries]

    def add(key, limit, line):
        c = caps.setdefault(key, [0, False, set(), set()])
        c[0] += tpp(line, t)
        c[1] |= c[0] > limit
        c[2].add(line["entity"])
        c[3].add(line["country"])

    for day, _, l in counted:
        if l["pathway"] in t.cap_pathways and t.countries[l["country"]][0] == 2:
            add(("COUNTRY_CAP", l["country"]), t.country_cap(l["country"]), l)
        if l["pathway"] == "NVEU":
            add(("NVEU_CAP", l["entity"], l["country"]), t.nveu_cap(day), l)
        if l["pathway"] == "LPP":
            add(("LPP_ANNUAL", l["entity"], day.year), t.lpp_year, l)
            add(("LPP_ORDER", l["order"]), t.lpp_order, l)
    rows = []

    def row(key, entity, country, year, limit, order=""):
        used, crossed, entities, countries = caps.get(key, [0, False, set(), set()])
        if key[0] == "LPP_ORDER":
            entity, country = ";".join(sorted(entities)), ";".join(sorted(countries))
        level = "exceeded" if crossed else ""
        for ppm in [] if crossed else warn_ppm:
            if used * 10**6 >= limit * ppm:
                text = f"{ppm // 10**6}.{ppm % 10**6:06d}".rstrip("0")
                level = text + ("0" if text.endswith(".") else "")
        rows.append([key[0], entity, country, year, str(limit), str(used), str(limit - used), percent(used, limit),
                     level, order])

    for iso in sorted(iso for iso, (tier, _) in t.countries.items() if tier == 2):
        row(("COUNTRY_CAP", iso), "", iso, "", t.country_cap(iso))
    nveu_limit = t.nveu_cap(max(t.window[0], min(as_of, t.window[1])))
    for e, c in sorted({k[1:] for k in caps if k[0] == "NVEU_CAP"} | authorized):
        row(("NVEU_CAP", e, c), e, c, "", nveu_limit)
    for key in sorted(k for k in caps if k[0] == "LPP_ANNUAL"):
        row(key, key[1], "", str(key[2]), t.lpp_year)
    for key in sorted(k for k in caps if k[0] == "LPP_ORDER"):
        row(key, "", "", "", t.lpp_order, key[1])
    return rows


# Every space but U+0020 (README: shown escaped, read as one space in a variant key).
OTHER_SPACES = set("\u00a0\u1680\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


def shown(entity):
    """An id as stderr quotes it; the model's ids hold no other character terminal_text escapes."""
    return "'" + "".join(f"\\u{ord(ch):04x}" if ch in OTHER_SPACES else ch for ch in entity) + "'"


def variant_key(entity):
    """README (entities): letters lower-cased in ASCII, U+00C0 to U+04FF (Latin-1, Latin Extended-A
    and -B, Greek and Coptic, Cyrillic) and U+1E00 to U+1EFF, not the Turkish dotted I; U+200B, U+2060, U+FEFF and U+00AD removed; each run of spaces, tabs and
    other spaces (U+00A0, U+1680, U+2000-U+200A, U+202F, U+205F, U+3000) one space, none at either end."""
    kept = []
    for ch in entity:
        if ch in "\u200b\u2060\ufeff\u00ad":
            continue
        if ch in " \t" or ch in OTHER_SPACES:
            ch = " "
        elif (ord(ch) <= 0x4FF or 0x1E00 <= ord(ch) <= 0x1EFF) and ch != "\u0130" and len(ch.lower()) == 1:
            ch = ch.lower()
        kept.append(ch)
    return " ".join(word for word in "".join(kept).split(" ") if word)


def model_notes(listed, ledger, inventory=()):
    """stderr's notes (README, entities): one per group of two or more ids written alike, by key;
    in a group the entities file's ids first, then the ledger's, then the inventory's, each part in
    byte order; an id marked with each of its places but the ledger's."""
    places = {}
    for place, ids in enumerate([listed, ledger, inventory]):  # 0: entities file, 1: ledger, 2: inventory
        for e in ids:
            places.setdefault(e, set()).add(place)
    groups = {}
    for e, where in places.items():
        groups.setdefault(variant_key(e), []).append((min(where), e, where))
    notes = ""
    for key in sorted(groups):  # code point order: UTF-8's byte order
        if len(groups[key]) > 1:
            names = [shown(e) + "".join(f" ({', '.join(m for p, m in [(0, 'entities file'), (2, 'inventory')] if p in where)})"
                                        for _ in [0] if where & {0, 2})
                     for _, e, where in sorted(groups[key])]
            notes += (f"capledger: note: entity {names[0]} is also written {', '.join(names[1:])}: counted as "
                      "separate entities (entity ids match exactly)\n")
    return notes


def model_reconcile(lines, t, as_of, inventory):
    """The rows of reconciliation.csv (README): net units per (entity, country, chip key) of the
    lines up to as_of against the inventory's."""
    as_of = as_of or max(l["date"] for l in lines)
    keys = {}  # key: [ledger units, reported units, shipped, listed]
    for l in lines:
        if l["date"] <= as_of:
            k = keys.setdefault((l["entity"], l["country"], t.chip_key(l["chip"])), [0, 0, True, False])
            k[0] += l["quantity"]
    for entity, country, chip, units in inventory:
        k = keys.setdefault((entity, country.upper(), t.chip_key(chip)), [0, 0, False, False])
        k[1], k[3] = units, True
    rows = []
    for key in sorted(keys):
        ledger, reported, shipped, listed = keys[key]
        if not listed and ledger == 0:
            continue
        difference = reported - ledger
        priced = str(difference * t.chips[key[2].upper()][1]) if key[2].upper() in t.chips else ""
        status = ("unshipped" if not shipped and reported > 0 else "match" if reported == ledger
                  else "shortfall" if reported < ledger else "surplus")
        rows.append(list(key) + [str(ledger), str(reported), str(difference), priced, status])
    return rows


def model_chip_notes(path, inventory, lines, t):
    """stderr's notes on inventory chips (README): a chip neither the chips table nor any stored
    line has, at its first row with units, with the table's chip it is written like (letters and
    digits, case aside) where exactly one is; ten at most."""
    def alnum(text):
        return "".join(c.upper() for c in text if c.isascii() and c.isalnum())
    known = set(t.chips) | {l["chip"].upper() for l in lines}
    notes, noted = [], set()
    for row, (entity, country, chip, units) in enumerate(inventory, start=2):
        if chip.upper() in known or units <= 0 or chip.upper() in noted or len(notes) == 10:
            continue
        noted.add(chip.upper())
        alike = [key for key, _ in t.chips.values() if alnum(chip) and alnum(key) == alnum(chip)]
        notes.append(f"capledger: note: {path}:{row}:{len(entity) + len(country) + 3}: chip '{chip}' is in neither "
                     "the chips table nor the ledger: its units are unshipped"
                     + (f"; did you mean '{alike[0]}'?" if len(alike) == 1 else "") + "\n")
    return "".join(notes)


def inventory_of(rng, lines):
    """An inventory for every status: ledger keys at random counts, at their net units, left out;
    keys in other cases; a key nothing shipped (unshipped, or 0: a match)."""
    rows, seen = [], set()
    for entity, country, chip in sorted({(l["entity"], l["country"], l["chip"]) for l in lines}):
        key = (entity, country, chip.upper())
        if key in seen or rng.random() < 0.2:
            continue
        seen.add(key)
        net = sum(l["quantity"] for l in lines if (l["entity"], l["country"], l["chip"].upper()) == key)
        units = max(0, net) if rng.random() < 0.4 else rng.choice([0, 1, 5, 100, 20000])
        rows.append((entity, country.lower() if rng.random() < 0.3 else country, chip, units))
    for extra in [("ZED", "AE", "H100-SXM", 7), ("ZED", "BR", "foo", 0), ("E2", "us", "b200", 3),
                  ("e2", "AE", "B200", 1), ("zed", "DE", "H20", 0),
                  ("ZED", "IN", "h100 sxm", 2), ("E2", "BR", "Qux-9", 4)]:  # chips no table or line has: noted
        if (extra[0], extra[1].upper(), extra[2].upper()) not in seen and rng.random() < 0.5:
            rows.append(extra)
    return rows


def run(args):
    p = subprocess.run([CAPLEDGER] + args, capture_output=True, text=True)
    first, _, rest = p.stderr.partition("\n")
    return p.returncode, p.stdout, first, rest


def one_seed(seed, work):
    """The differences found on seed @p seed's ledger, as messages."""
    rng = random.Random(seed)
    found = []
    db = os.path.join(work, "l.db")
    assert run(["ledger", "init", db])[0] == 0
    custom = rng.random() < 0.4
    final = Tables(rng, os.path.join(work, "t1"), custom)
    first = Tables(rng, None, False) if custom and rng.random() < 0.3 else final
    taken, lines, authorized, listed, start = set(), [], set(), [], D(2025, 2, 1)
    nights = rng.randint(2, 5)
    for n in range(nights):
        text, accepted = night(rng, n, taken, start, n > 0 and rng.random() < 0.2, final.lpp_order)
        start += datetime.timedelta(days=rng.randint(0, 60))
        log = os.path.join(work, f"night{n}.csv")
        with open(log, "w") as f:
            f.write(text)
        args = ["ledger", "ingest", db, log, "--rejects", os.path.join(work, f"rejects{n}.csv")]
        if n == 0 or rng.random() < 0.4:
            authorized, listed = write_entities(rng, os.path.join(work, f"entities{n}.csv"))
            args += ["--entities", os.path.join(work, f"entities{n}.csv")]
        code, _, said, rest = run(args + (final if n == nights - 1 else first).flags)
        if code != 0:
            return [f"ingest of night {n}: exit {code}: {said} {rest}"]
        lines += accepted
        older = rng.random()
        if n < nights - 1 and older < 0.25:  # an older capledger's ledger; the next ingest rebuilds
            db_ = sqlite3.connect(db)
            db_.executescript(["DROP TABLE state_parts; DROP TABLE st_order_party; DROP TABLE st_units",
                               "UPDATE state_parts SET lines = lines - 1 WHERE name = 'units'; DELETE FROM st_units",
                               "DELETE FROM state_parts WHERE name = 'order_parties'; DELETE FROM st_order_party"]
                              [int(older / 0.0834)])
            db_.commit()
            db_.close()
    if not lines:
        return found
    latest = max(l["date"] for l in lines)
    query = [(final, [], (authorized, listed))]
    if rng.random() < 0.3:
        other = Tables(rng, os.path.join(work, "t2"), True)
        query.append((other, [], (authorized, listed)))
    if rng.random() < 0.2:
        query.append((final, ["--entities", os.path.join(work, "entities-q.csv")],
                      write_entities(rng, os.path.join(work, "entities-q.csv"))))
    ledger_ids = {l["entity"] for l in lines}  # every stored line's, whatever --as-of
    for t, entities, (pairs, listed_now) in query:
        notes = model_notes(listed_now, ledger_ids)
        for as_of in [None, latest, latest + datetime.timedelta(days=3), D(9999, 12, 31),
                      latest - datetime.timedelta(days=1)]:
            flags = t.flags + entities + (["--as-of", str(as_of)] if as_of else [])
            state_path = t is final and (as_of is None or as_of >= latest)
            for warn, warn_ppm in [([], [800000, 900000, 950000]), (["--warn-at", "0.5,1"], [500000, 1000000])]:
                for fmt in ["csv", "table"]:
                    args = ["ledger", "balances", db, "--format", fmt] + flags + warn
                    state, replay = run(args), run(args + ["--replay"])
                    if state[2].startswith("capledger: ledger balances: running state of") != state_path:
                        found.append(f"{args}: stderr {state[2]}")
                    if (state[0], state[1], state[3]) != (replay[0], replay[1], replay[3]):
                        found.append(f"{args}: the paths differ:\n{state}\n{replay}")
                    elif state[3] != notes:
                        found.append(f"{args}: stderr past the path {state[3]!r}, model {notes!r}")
                    elif fmt == "csv":
                        want = model_balances(lines, t, pairs, as_of, warn_ppm)
                        got = list(csv.reader(io.StringIO(state[1])))[1:]
                        if got != want or state[0] != (1 if any(r[8] == "exceeded" for r in want) else 0):
                            wrong = [(g, w) for g, w in zip(got, want) if g != w][:2]
                            found.append(f"{args}: exit {state[0]}, {len(got)} rows, model {len(want)}: {wrong}")
            inventory = inventory_of(rng, [l for l in lines if as_of is None or l["date"] <= as_of])
            path = os.path.join(work, "inventory.csv")
            with open(path, "w") as f:
                f.write("entity,country,chip,units\n" + "".join(f"{e},{c},{ch},{u}\n" for e, c, ch, u in inventory))
            want = model_reconcile(lines, t, as_of, inventory)
            counts = ", ".join(f"{sum(r[7] == s for r in want)} {s}" for s in ["match", "shortfall", "surplus", "unshipped"])
            inventory_notes = (model_notes(listed_now, ledger_ids, [row[0] for row in inventory])
                               + model_chip_notes(path, inventory, lines, t))
            for out in [[], ["--out", os.path.join(work, "rec")]]:
                args = ["reconcile", db, "--inventory", path] + flags + out
                got = []
                for replay in [[], ["--replay"]]:
                    shutil.rmtree(os.path.join(work, "rec"), ignore_errors=True)
                    result = run(args + replay)
                    files = {name: open(os.path.join(work, "rec", name)).read()
                             for name in ["reconciliation.csv", "summary.json"] if out}
                    got.append((result[0], result[1], result[3], files, result[2]))
                if got[0][4].startswith("capledger: reconcile: running state of") != state_path:
                    found.append(f"{args}: stderr {got[0][4]}")
                if got[0][:4] != got[1][:4]:
                    found.append(f"{args}: the paths differ:\n{got[0]}\n{got[1]}")
                    continue
                said = (f"capledger: wrote reconciliation.csv and summary.json to {os.path.join(work, 'rec')}\n" if out
                        else f"reconciliation: {len(want)} key(s): {counts}\n")
                if got[0][2] != inventory_notes + said:
                    found.append(f"{args}: stderr past the path {got[0][2]!r}, model {inventory_notes + said!r}")
                rows = list(csv.reader(io.StringIO(got[0][3]["reconciliation.csv"] if out else got[0][1])))[1:]
                if rows != want or got[0][0] != (1 if any(r[7] != "match" for r in want) else 0):
                    wrong = [(g, w) for g, w in zip(rows, want) if g != w][:2]
                    found.append(f"{args}: exit {got[0][0]}, {len(rows)} rows, model {len(want)}: {wrong}")
    return found


if __name__ == "__main__":
    CAPLEDGER = sys.argv[1]
    failed = 0
    for seed in range(int(sys.argv[2]), int(sys.argv[3])):
        work = tempfile.mkdtemp(prefix=f"balances_model_{seed}_")
        found = one_seed(seed, work)
        for message in found[:3]:
            print(f"seed {seed}: {message}")
        failed += bool(found)
        if not found:
            shutil.rmtree(work)
    print(f"{failed} seed(s) differ of {int(sys.argv[3]) - int(sys.argv[2])}")
    sys.exit(1 if failed else 0)
