#!/usr/bin/env python3
"""`capledger report --out DIR` against an independent model of SPEC §1-§5 and the README's
choices: from the input files alone (its own RFC 4180 reader, validation, ordering, checks and
formatting) the model computes every CSV file byte for byte, summary.json field by field (all but
`tool`, `version` and `backend`), the
`--rejects` file and the exit code (or, without `--rejects`, the first bad line's
`file:line:column: REASON` on stderr and no output directory).

Random adversarial logs per seed: one to three files (a BOM, CRLF, blank lines, quoted fields
with commas, quotes and line breaks, columns in any order and case, an unknown column), returns,
every pathway in any case, LPP orders spanning days and years, NVEU entities under phase caps and
for unauthorized countries, UVEU entities with US and other HQs near their share limits, tier-3
destinations, ad-hoc chips with `tpp_per_unit`, lines outside the counting window and after
`--as-of`, ids repeated across files, bad lines of every reject reason, and caps reached exactly
at the limit or one tpp past it. A third of the seeds run under other tables (smaller caps, a G2G
partner, falling NVEU phases, other UVEU shares, another window).

usage: report_model.py CAPLEDGER FIRST_SEED END_SEED [-v] [--backend NAME]   (-v: more detail, and each
differing seed's inputs kept in $TMPDIR/report_model_seedN; --backend: passed to `report`, so that the
GPU backend meets the same model on a machine with a card; without it capledger picks its default)
"""
import csv
import datetime
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
from fractions import Fraction

D = datetime.date
DATASETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "datasets")
INT64_MAX = 2**63 - 1
PATHWAYS = {"LICENSE", "LPP", "NVEU", "UVEU", "AIA", "ACA"}
RULES = ["PROHIBITED_DESTINATION", "COUNTRY_CAP_EXCEEDED", "LPP_ORDER_LIMIT", "LPP_ANNUAL_LIMIT",
         "NVEU_CAP_EXCEEDED", "UNAUTHORIZED_PATHWAY", "UVEU_TIER2_SHARE", "UVEU_TIER1_SHARE", "UVEU_US_SHARE",
         "CAP_NEAR_LIMIT"]
FILES = ["by_country.csv", "by_entity.csv", "by_entity_country.csv", "by_chip.csv", "by_exporter.csv",
         "uveu_shares.csv", "findings.csv"]


# ---------------------------------------------------------------------------------------------
# Reference tables


def ppm(text):
    """A rule-set fraction as an exact Fraction."""
    return Fraction(str(text))


class Tables:
    """Countries, chips and rules: the bundled ones, or (custom) copies with other figures written
    into @p work and named by `flags`."""

    def __init__(self, rng, work, custom):
        with open(os.path.join(DATASETS, "countries.csv"), newline="") as f:
            self.countries = {r["iso2"].upper(): [int(r["tier"]), int(r["g2g_partner"])] for r in csv.DictReader(f)}
        with open(os.path.join(DATASETS, "chips.csv"), newline="") as f:
            self.chips = {r["chip"].upper(): [r["chip"], int(r["tpp"]), r["datacenter"] == "1"]
                          for r in csv.DictReader(f)}
        with open(os.path.join(DATASETS, "rules", "ai-diffusion-2025.json")) as f:
            self.rules_text = f.read()
        r = json.loads(self.rules_text)
        self.paths = {"countries": "bundled:countries.csv", "chips": "bundled:chips.csv",
                      "rules": "bundled:rules/ai-diffusion-2025.json"}
        self.files = {"countries": os.path.join(DATASETS, "countries.csv"),
                      "chips": os.path.join(DATASETS, "chips.csv"),
                      "rules": os.path.join(DATASETS, "rules", "ai-diffusion-2025.json")}
        self.flags = []
        if custom:
            self.countries["IN"][1] = 1  # a G2G partner
            if rng.random() < 0.5:
                self.countries["SA"][0] = 3
            if rng.random() < 0.3:
                self.countries["JP"][0] = 2
            self.chips["H100-SXM"][1] = rng.choice([15832, 1000, 77777])
            self.chips["RTX-4090"][2] = rng.random() < 0.5
            r["id"] = "model-rules-" + str(rng.randrange(1000))
            r["country_cap"] = {"tpp": rng.choice([30000000, 300000000]), "g2g_multiplier": rng.choice([1, 3]),
                                "pathways": rng.choice([["LICENSE"], ["LICENSE", "AIA"]])}
            if rng.random() < 0.2:
                del r["country_cap"]["pathways"]  # LICENSE, SPEC §4
            r["lpp"] = {"per_order_tpp": rng.choice([5000000, 20000000]),
                        "per_consignee_year_tpp": rng.choice([8000000, 30000000])}
            if rng.random() < 0.5:
                r["counting_starts"], r["counting_ends"] = "2025-03-01", rng.choice(["2026-06-30", "2027-12-31"])
            r["nveu_caps"] = [{"through": "2025-06-30", "tpp": rng.choice([10000000, 100000000])},
                              {"through": "2026-02-28", "tpp": rng.choice([300000000, 50000000])},
                              {"through": r["counting_ends"], "tpp": rng.choice([5000000, 300000000])}]
            r["uveu"] = {"max_tier2_country_share": rng.choice([0.25, 0.1, 0.333333]),
                         "min_tier1_share": rng.choice([0.5, 0.6]), "min_us_share_if_us_hq": rng.choice([0.6, 0.4])}
            self.rules_text = json.dumps(r)
            files = {"countries": "iso2,name,tier,g2g_partner\n" +
                     "".join(f"{iso},\"Name, {iso}\",{t},{g}\n" for iso, (t, g) in self.countries.items()),
                     "chips": "chip,vendor,tpp,performance_density,datacenter\n" +
                     "".join(f"{s},V,{tpp},1.5,{int(dc)}\n" for s, tpp, dc in self.chips.values()),
                     "rules": self.rules_text}
            for name, text in files.items():
                path = os.path.join(work, name + (".json" if name == "rules" else ".csv"))
                with open(path, "w", newline="") as f:
                    f.write(text)
                self.paths[name] = self.files[name] = path
                self.flags += ["--" + name, path]
        self.id = r["id"]
        self.window = (D.fromisoformat(r["counting_starts"]), D.fromisoformat(r["counting_ends"]))
        self.h100 = r["h100_tpp"]
        self.cap, self.multiplier = r["country_cap"]["tpp"], r["country_cap"].get("g2g_multiplier", 1)
        self.cap_pathways = set(r["country_cap"].get("pathways", ["LICENSE"]))
        self.lpp_order, self.lpp_year = r["lpp"]["per_order_tpp"], r["lpp"]["per_consignee_year_tpp"]
        self.phases = [(D.fromisoformat(p["through"]), p["tpp"]) for p in r["nveu_caps"]]
        u = r["uveu"]
        self.max_tier2 = ppm(u["max_tier2_country_share"])
        self.min_tier1, self.min_us = ppm(u["min_tier1_share"]), ppm(u["min_us_share_if_us_hq"])

    def nveu_cap(self, day):
        return next(cap for through, cap in self.phases if day <= through)

    def country_cap(self, iso):
        return self.cap * (self.multiplier if self.countries[iso][1] else 1)

    def tier(self, iso):
        return self.countries[iso][0] if iso in self.countries else None


# ---------------------------------------------------------------------------------------------
# Formatting


def fraction(num, den, digits):
    """num/den as an exact decimal with @p digits places, half away from zero; no sign on zero."""
    scaled = Fraction(abs(num) * 10**digits, abs(den))
    rounded = int(scaled) + (1 if scaled - int(scaled) >= Fraction(1, 2) else 0)
    sign = "-" if (num < 0) != (den < 0) and rounded else ""
    return f"{sign}{rounded // 10**digits}.{rounded % 10**digits:0{digits}d}"


def csv_field(text):
    """RFC 4180 quoting; also around surrounding spaces, which a reader that trims (capledger's) would drop."""
    quote = any(c in text for c in ',"\r\n') or text[:1] in (" ", "\t") or text[-1:] in (" ", "\t")
    return '"' + text.replace('"', '""') + '"' if quote else text


def csv_text(header, rows):
    return "".join(",".join(csv_field(str(v)) for v in row) + "\n" for row in [header] + rows)


# ---------------------------------------------------------------------------------------------
# Reading a log (SPEC §1.1, README "Input format")


class Bad(Exception):
    def __init__(self, reason, line, column):
        super().__init__(reason)
        self.reason, self.line, self.column = reason, line, column


def records(data):
    """Yield (start line, [(value bytes, line, column)], raw bytes, error) per record; blank lines
    are skipped. Columns are 1-based bytes of the physical line (a BOM counts on line 1)."""
    n = len(data)
    pos, line, line_start = (3 if data.startswith(b"\xef\xbb\xbf") else 0), 1, 0
    while pos < n:
        if data[pos:pos + 1] == b"\n" or data[pos:pos + 2] == b"\r\n":  # a blank line
            pos += 1 if data[pos:pos + 1] == b"\n" else 2
            line, line_start = line + 1, pos
            continue
        first_line, record_start = line, line_start
        fields, error = [], None
        while True:
            p = pos
            while p < n and data[p] in b" \t":
                p += 1
            col = p - line_start + 1  # the value's first byte, past spaces the reader trims
            if p < n and data[p] == ord('"'):
                q, value = p + 1, b""
                while True:
                    close = data.find(b'"', q)
                    if close < 0:
                        error = Bad("UNTERMINATED_QUOTE", line, col)
                        break
                    if data[close + 1:close + 2] == b'"':
                        value += data[q:close + 1]
                        q = close + 2
                        continue
                    value += data[q:close]
                    break
                if error:  # the record ends with the opening quote's line
                    end = data.find(b"\n", p)
                    pos = n if end < 0 else end + 1
                    break
                field_line = line  # the line the field starts on names it
                breaks = data.count(b"\n", p, close)
                if breaks:
                    line += breaks
                    line_start = data.rfind(b"\n", p, close) + 1
                after = close + 1
                while after < n and data[after] in b" \t":
                    after += 1
                if data[after:] == b"\r":  # a `\r\n` cut short ends the file
                    after = n
                if not (after >= n or data[after] == ord(",") or data[after:after + 1] == b"\n"
                        or data[after:after + 2] == b"\r\n"):
                    error = Bad("BAD_QUOTE", line, after - line_start + 1)  # the text past the spaces
                    end = data.find(b"\n", after)
                    pos = n if end < 0 else end + 1
                    break
                fields.append((value, field_line, col))
                pos = after
            else:
                end = p
                while end < n and data[end] != ord(",") and data[end] != ord("\n"):
                    end += 1
                value = data[pos:end]
                if (end == n or data[end] == ord("\n")) and value.endswith(b"\r"):
                    value = value[:-1]
                fields.append((value.strip(b" \t"), line, col))
                pos = end
            if pos < n and data[pos] == ord(","):
                pos += 1
                continue
            pos += 1 if data[pos:pos + 1] == b"\n" else 2 if data[pos:pos + 2] == b"\r\n" else 0
            break
        raw_end = pos
        if raw_end > 0 and data[raw_end - 1:raw_end] == b"\n":
            raw_end -= 1
        if raw_end > 0 and data[raw_end - 1:raw_end] == b"\r":
            raw_end -= 1
        bom = 3 if record_start == 0 and data.startswith(b"\xef\xbb\xbf") else 0
        raw = data[record_start + bom:raw_end]
        line, line_start = line + 1, pos
        yield first_line, fields, raw, error


def text(value):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_int(s):
    """A 64-bit decimal integer (README: sign and leading zeros allowed), else None."""
    value = int(s) if re.fullmatch(r"[+-]?[0-9]+", s) else None
    return value if value is not None and -2**63 <= value <= INT64_MAX else None


def parse_date(s):
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", s):
        return None
    try:
        return D(int(s[:4]), int(s[5:7]), int(s[8:]))
    except ValueError:
        return None


class Log:
    """The accepted lines of every input (in input order), the rejects and the first bad line."""

    def __init__(self, paths, t):
        self.lines, self.rejects, self.inputs = [], [], []
        ids, abs_tpp, abs_units = {}, 0, 0
        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            read = 0
            header = None
            for _, fields, raw, error in records(data):
                if header is None:
                    header = {text(v).strip(" \t").lower(): k for k, (v, _, _) in enumerate(fields)}
                    count = len(fields)
                    continue
                read += 1
                try:
                    if error:
                        raise error
                    if len(fields) != count:
                        f = fields[count] if len(fields) > count else fields[-1]
                        raise Bad("WRONG_FIELD_COUNT", f[1], f[2])
                    line = self.validate(fields, header, t)
                    if line["id"] in ids:
                        raise Bad("DUPLICATE_ID", *fields[header["shipment_id"]][1:])
                    if abs_tpp + abs(line["tpp"]) > INT64_MAX or abs_units + abs(line["quantity"]) > INT64_MAX:
                        raise Bad("TPP_OVERFLOW", *fields[header["quantity"]][1:])
                except Bad as bad:
                    self.rejects.append((path, bad.line, bad.column, bad.reason, raw))
                    continue
                ids[line["id"]] = True
                abs_tpp += abs(line["tpp"])
                abs_units += abs(line["quantity"])
                line["position"] = len(self.lines)
                self.lines.append(line)
            self.inputs.append({"path": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                "lines_read": read})

    @staticmethod
    def validate(fields, header, t):
        def get(name):
            return fields[header[name]] if name in header else (b"", 0, 0)

        def where(name):
            return get(name)[1:]

        def string(name, required):
            value = text(get(name)[0])
            if value is None:
                raise Bad("BAD_ENCODING", *where(name))
            if required and value == "":
                raise Bad("EMPTY_FIELD", *where(name))
            return value

        sid = string("shipment_id", True)
        day = parse_date(get("date")[0].decode("latin-1"))
        if day is None:
            raise Bad("BAD_DATE", *where("date"))
        entity = string("entity", True)
        country = get("country")[0].decode("latin-1").upper()
        if country not in t.countries:
            raise Bad("UNKNOWN_COUNTRY", *where("country"))
        chip = string("chip", True)
        quantity = parse_int(get("quantity")[0].decode("latin-1"))
        if not quantity:
            raise Bad("BAD_QUANTITY", *where("quantity"))
        pathway = get("pathway")[0].decode("latin-1").upper() or "LICENSE"
        if pathway not in PATHWAYS:
            raise Bad("UNKNOWN_PATHWAY", *where("pathway"))
        order = string("order_id", False) or sid
        exporter = string("exporter", False)
        per_unit_text = get("tpp_per_unit")[0].decode("latin-1")
        per_unit = None
        if per_unit_text != "":
            per_unit = parse_int(per_unit_text)
            if per_unit is None or per_unit <= 0:
                raise Bad("BAD_TPP_PER_UNIT", *where("tpp_per_unit"))
        known = t.chips.get(chip.upper())
        if known is None and per_unit is None:
            raise Bad("UNKNOWN_CHIP", *where("chip"))
        tpp = quantity * (per_unit if per_unit is not None else known[1])
        if not -2**63 <= tpp <= INT64_MAX:
            raise Bad("TPP_OVERFLOW", *where("quantity"))
        return {"id": sid, "date": day, "entity": entity, "country": country,
                "chip": known[0] if known else chip.upper(), "datacenter": known[2] if known else True,
                "quantity": quantity, "pathway": pathway, "order": order, "exporter": exporter, "tpp": tpp}


# ---------------------------------------------------------------------------------------------
# The report (SPEC §2-§5)


def model_report(log, t, entities, entities_path, as_of_flag, warn_levels):
    """{file name: text} and the summary fields the model determines."""
    lines = log.lines
    as_of = as_of_flag or (max(l["date"] for l in lines) if lines else None)
    used = [l for l in lines if as_of is not None and l["date"] <= as_of]
    out = {}

    def status(e):
        return entities.get(e, ("", "NONE", set()))

    def h100(tpp):
        return fraction(tpp, t.h100, 2)

    def totals(key):
        groups = {}
        for l in used:
            g = groups.setdefault(key(l), [0, 0, 0])
            g[0] += 1
            g[1] += l["quantity"]
            g[2] += l["tpp"]
        return groups

    # Checks: in-window lines up to as_of, in (date, input position) order.
    checked = sorted((l for l in used if t.window[0] <= l["date"] <= t.window[1]),
                     key=lambda l: (l["date"], l["position"]))
    findings = []  # (severity, rule, entity, country, pathway, order, year, date, id, value, limit)

    def finding(rule, entity="", country="", pathway="", order="", year="", line=None, value="", limit="",
                severity="violation"):
        findings.append([severity, rule, entity, country, pathway, order, year,
                         str(line["date"]) if line else "", line["id"] if line else "", str(value), str(limit)])

    running = {}  # (rule, key) -> [total, crossing line, value, limit]

    def run(rule, key, line, limit):
        r = running.setdefault((rule, key), [0, None, None, None])
        r[0] += line["tpp"]
        if r[1] is None and r[0] > limit:
            r[1:] = [line, r[0], limit]
        return r

    first = {}  # (rule, key) -> [first line, summed tpp]
    for l in checked:
        tier = t.tier(l["country"])
        if l["pathway"] in t.cap_pathways and tier == 2:
            run("COUNTRY_CAP_EXCEEDED", l["country"], l, t.country_cap(l["country"]))
        if l["pathway"] == "LPP":
            run("LPP_ORDER_LIMIT", l["order"], l, t.lpp_order)
            run("LPP_ANNUAL_LIMIT", (l["entity"], l["date"].year), l, t.lpp_year)
        if l["pathway"] == "NVEU":
            run("NVEU_CAP_EXCEEDED", (l["entity"], l["country"]), l, t.nveu_cap(l["date"]))
        if l["quantity"] > 0:
            hq, st, nveu = status(l["entity"])
            keys = []
            if tier == 3:
                keys.append(("PROHIBITED_DESTINATION", (l["entity"], l["country"])))
            p = l["pathway"]
            if ((p == "UVEU" and st != "UVEU") or (p == "NVEU" and not (st == "NVEU" and l["country"] in nveu))
                    or (p == "AIA" and (tier != 1 or t.tier(hq) != 1)) or (p == "ACA" and l["datacenter"])):
                keys.append(("UNAUTHORIZED_PATHWAY", (l["entity"], l["country"], p)))
            for key in keys:
                f = first.setdefault(key, [l, 0])
                f[1] += l["tpp"]
    for (rule, key), (line, tpp) in first.items():
        if rule == "PROHIBITED_DESTINATION":
            finding(rule, key[0], key[1], line=line, value=tpp)
        else:
            finding(rule, key[0], key[1], key[2], line=line, value=tpp)
    for (rule, key), (_, line, value, limit) in running.items():
        if line is None:
            continue
        if rule == "COUNTRY_CAP_EXCEEDED":
            finding(rule, country=key, line=line, value=value, limit=limit)
        elif rule == "LPP_ORDER_LIMIT":
            finding(rule, line["entity"], line["country"], order=key, line=line, value=value, limit=limit)
        elif rule == "LPP_ANNUAL_LIMIT":
            finding(rule, key[0], year=key[1], line=line, value=value, limit=limit)
        else:
            finding(rule, key[0], key[1], line=line, value=value, limit=limit)

    def near(total, cap):
        """The highest --warn-at level reached and its tpp, or None."""
        reached = [lv for lv in warn_levels if total * lv.denominator >= cap * lv.numerator]
        if not reached:
            return None
        lv = max(reached)
        return -(-cap * lv.numerator // lv.denominator)

    for (rule, key), (total, line, _, _) in running.items():
        if line is not None:
            continue
        if rule == "COUNTRY_CAP_EXCEEDED":
            at = near(total, t.country_cap(key))
            if at is not None:
                finding("CAP_NEAR_LIMIT", country=key, value=total, limit=at, severity="warning")
        elif rule == "NVEU_CAP_EXCEEDED":
            at = near(total, t.nveu_cap(min(as_of, t.window[1])))
            if at is not None:
                finding("CAP_NEAR_LIMIT", key[0], key[1], value=total, limit=at, severity="warning")

    # UVEU shares: every line up to as_of.
    pair = totals(lambda l: (l["entity"], l["country"]))
    shares_rows = []
    for e in sorted(e for e, (_, st, _) in entities.items() if st == "UVEU"):
        hq = entities[e][0]
        held = {c: v[2] for (pe, c), v in pair.items() if pe == e}
        whole = sum(held.values())
        tier2 = sorted((c for c in held if t.tier(c) == 2), key=lambda c: (-held[c], c))
        broken = False
        if whole > 0:
            for c in tier2:
                if held[c] * t.max_tier2.denominator * 1 > t.max_tier2.numerator * whole:
                    finding("UVEU_TIER2_SHARE", e, c, value=fraction(held[c], whole, 6),
                            limit=fraction(t.max_tier2.numerator, t.max_tier2.denominator, 6))
                    broken = True
            tier1 = sum(v for c, v in held.items() if t.tier(c) == 1)
            if Fraction(tier1, whole) < t.min_tier1:
                finding("UVEU_TIER1_SHARE", e, value=fraction(tier1, whole, 6),
                        limit=fraction(t.min_tier1.numerator, t.min_tier1.denominator, 6))
                broken = True
            us = held.get("US", 0)
            if hq == "US" and Fraction(us, whole) < t.min_us:
                finding("UVEU_US_SHARE", e, "US", value=fraction(us, whole, 6),
                        limit=fraction(t.min_us.numerator, t.min_us.denominator, 6))
                broken = True
            shares_rows.append([e, hq, whole, fraction(tier1, whole, 6), fraction(us, whole, 6),
                                tier2[0] if tier2 else "", fraction(held[tier2[0]], whole, 6) if tier2 else "",
                                0 if broken else 1])
        else:
            shares_rows.append([e, hq, whole, "", "", "", "", 1])

    severity_rank = {"violation": 0, "warning": 1}
    findings.sort(key=lambda f: (severity_rank[f[0]], f[1].encode(), f[2].encode(), f[3].encode(), f[4].encode(),
                                 f[5].encode(), int(f[6]) if f[6] != "" else -1))
    out["findings.csv"] = csv_text(["severity", "rule", "entity", "country", "pathway", "order_id", "year", "date",
                                    "shipment_id", "value", "limit"], findings)
    out["uveu_shares.csv"] = csv_text(["entity", "hq_country", "installed_tpp", "tier1_share", "us_share",
                                       "max_tier2_country", "max_tier2_share", "compliant"], shares_rows)

    rows = []
    for c, (n, units, tpp) in sorted(totals(lambda l: l["country"]).items()):
        row = [c, t.tier(c), n, units, tpp, h100(tpp)]
        if t.tier(c) == 2:
            cap = t.country_cap(c)
            r = running.get(("COUNTRY_CAP_EXCEEDED", c), [0, None])
            row += [r[0], cap, fraction(100 * r[0], cap, 2), str(r[1]["date"]) if r[1] else "",
                    r[1]["id"] if r[1] else ""]
        else:
            row += [""] * 5
        rows.append(row)
    out["by_country.csv"] = csv_text(["country", "tier", "records", "units", "tpp", "h100_equiv", "cap_pathway_tpp",
                                      "cap_tpp", "cap_used_pct", "breach_date", "breach_shipment_id"], rows)
    by_entity = sorted(totals(lambda l: l["entity"]).items(), key=lambda kv: kv[0].encode())
    out["by_entity.csv"] = csv_text(["entity", "status", "hq_country", "records", "units", "tpp", "h100_equiv"],
                                    [[e, status(e)[1], status(e)[0], n, u, tpp, h100(tpp)]
                                     for e, (n, u, tpp) in by_entity])
    out["by_entity_country.csv"] = csv_text(["entity", "country", "records", "units", "tpp"],
                                            [[e, c, *v] for (e, c), v in
                                             sorted(pair.items(), key=lambda kv: (kv[0][0].encode(), kv[0][1]))])
    for name, key, column in (("by_chip.csv", "chip", "chip"), ("by_exporter.csv", "exporter", "exporter")):
        out[name] = csv_text([column, "records", "units", "tpp"],
                             [[k, *v] for k, v in sorted(totals(lambda l: l[key]).items(),
                                                         key=lambda kv: kv[0].encode())])

    everything = [len(used), sum(l["quantity"] for l in used), sum(l["tpp"] for l in used)]
    by_tier = {str(tier): [0, 0, 0] for tier in (1, 2, 3)}
    by_tier.update(totals(lambda l: str(t.tier(l["country"]))))
    summary = {
        "rule_set": {"id": t.id, "path": t.paths["rules"], "sha256": sha_file(t.files["rules"])},
        "inputs": log.inputs,
        "as_of": str(as_of) if as_of else None,
        "lines": {"read": sum(i["lines_read"] for i in log.inputs), "used": len(used),
                  "after_as_of": len(lines) - len(used), "rejected": len(log.rejects)},
        "totals": {"records": everything[0], "units": everything[1], "tpp": everything[2],
                   "h100_equiv": h100(everything[2])},
        "totals_by_tier": {k: {"records": v[0], "units": v[1], "tpp": v[2], "h100_equiv": h100(v[2])}
                           for k, v in by_tier.items()},
        "findings": {"violations": sum(f[0] == "violation" for f in findings),
                     "warnings": sum(f[0] == "warning" for f in findings),
                     "by_rule": {r: sum(f[1] == r for f in findings) for r in RULES}},
    }
    for name in ("countries", "chips"):
        summary.setdefault("reference", {})[name] = {"path": t.paths[name], "bytes": os.path.getsize(t.files[name]),
                                                     "sha256": sha_file(t.files[name])}
    summary["reference"]["entities"] = None if entities_path is None else {
        "path": entities_path, "bytes": os.path.getsize(entities_path), "sha256": sha_file(entities_path)}
    return out, summary, any(f[0] == "violation" for f in findings)


def sha_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def rejects_text(rejects):
    """The --rejects file: raw is the record's bytes as read (not necessarily UTF-8)."""
    return b"file,line,column,reason,raw\n" + b"".join(
        b",".join([csv_field(p).encode(), str(ln).encode(), str(c).encode(), r.encode(),
                   (b'"' + raw.replace(b'"', b'""') + b'"') if any(x in raw for x in b',"\r\n')
                   or raw[:1] in (b" ", b"\t") or raw[-1:] in (b" ", b"\t") else raw]) + b"\n"
        for p, ln, c, r, raw in rejects)


# ---------------------------------------------------------------------------------------------
# Random adversarial inputs

COLUMNS = ["shipment_id", "date", "entity", "country", "chip", "quantity", "pathway", "order_id", "exporter",
           "tpp_per_unit"]
TIER2, TIER1, TIER3 = ["AE", "BR", "IN", "MY", "SA"], ["US", "DE", "JP"], ["CN", "RU", "MO"]
EXPORTERS = ["NVIDIA", "AMD", "Resale, Partners", 'Say "hi" Ltd', "Two\nLines", "Three\r\nLines,", "", "nvidia",
             "Élan GmbH"]


def write_entities(rng, path):
    """{entity: (hq, status, nveu countries)} and the file that says so (columns in any order)."""
    ents = {"NV1": ("US", "NVEU", {"AE", "IN"}), "NV2": ("AE", "NVEU", {"BR"}), "NV3": ("DE", "NVEU", set()),
            "U1": ("US", "UVEU", set()), "U2": ("DE", "UVEU", set()), "U3": ("AE", "UVEU", set()),
            "U4": ("US", "UVEU", set()), "UE": (rng.choice(["US", "AE", "DE"]), "UVEU", set()),
            "N1": ("JP", "NONE", set()), "N2": ("AE", "", set()), "ACME, Inc": ("US", "NONE", set()),
            "NVE": ("US", "NVEU", {"MY", "SA"}), "HQX": ("", "NONE", set())}
    for e in ("N1", "U2", "NV2"):
        if rng.random() < 0.3:
            ents[e] = (ents[e][0], rng.choice(["NONE", "NVEU", "UVEU"]), {"BR"} if rng.random() < 0.5 else set())
    cols = ["entity", "hq_country", "status", "nveu_countries", "name"]
    rng.shuffle(cols)
    rows = [",".join(cols)]
    for e, (hq, st, nv) in ents.items():
        cell = {"entity": csv_field(e), "hq_country": hq, "status": st, "nveu_countries": ";".join(sorted(nv)),
                "name": csv_field(f"Name of {e}, ltd")}
        rows.append(",".join(cell[c] for c in cols))
    with open(path, "w", newline="") as f:
        f.write("\n".join(rows) + "\n")
    return {e: (hq, st or "NONE", nv) for e, (hq, st, nv) in ents.items()}


def case(rng, s):
    return rng.choice([s, s, s.lower(), s.title()])


class Gen:
    def __init__(self, rng, t):
        self.rng, self.t, self.n = rng, t, 0
        self.ids = []

    def new_id(self):
        self.n += 1
        sid = f"S{self.n:04d}"
        self.ids.append(sid)
        return sid

    def day(self):
        r, rng = self.rng.random(), self.rng
        if r < 0.08:
            return D(2024, 6, 1) + datetime.timedelta(days=rng.randrange(220))
        if r < 0.12:
            return rng.choice([D(2028, 1, 1), D(2029, 6, 30), D(2027, 12, 31), D(2025, 1, 13), D(2025, 1, 12),
                               D(1, 1, 1), D(9999, 12, 31)])
        return D(2025, 1, 1) + datetime.timedelta(days=rng.randrange(1000))

    def line(self, **over):
        rng = self.rng
        pathway = rng.choice(["LICENSE", "LICENSE", "", "LPP", "LPP", "NVEU", "UVEU", "AIA", "ACA"])
        if pathway == "LPP":
            quantity = rng.randint(-200, 900)
        else:
            quantity = rng.randint(-3000, 20000) if rng.random() < 0.8 else rng.randint(-200, 200)
        entity = rng.choice(["NV1", "NV2", "NV3", "U1", "U2", "U3", "U4", "N1", "N2", "X1", "x1", "ACME, Inc", "HQX",
                             "NVE", "Ölwerk"])
        if entity.startswith("U") and rng.random() < 0.6:
            country = rng.choice(TIER1)
        else:
            country = rng.choice(TIER2 * 3 + TIER1 * 2 + TIER3)
        chip, per_unit = rng.choice(["H100-SXM", "H100-SXM", "h100-sxm", "B200", "H20", "RTX-4090"]), ""
        if rng.random() < 0.1:
            chip, per_unit = rng.choice(["Foo-1", "FOO-1", "bar"]), str(rng.choice([1, 3000, 16000]))
        elif rng.random() < 0.05:
            per_unit = str(rng.choice([7, 20000]))
        f = {"shipment_id": self.new_id(), "date": str(self.day()), "entity": entity, "country": case(rng, country),
             "chip": chip, "quantity": rng.choice(["{}", "{}", "{}", "{:+d}", "{:04d}"]).format(quantity or 1),
             "pathway": case(rng, pathway) if pathway else "",
             "order_id": rng.choice(["O1", "O2", "O3", "", "O-Year"]) if pathway == "LPP" else rng.choice(["", "Z"]),
             "exporter": rng.choice(EXPORTERS), "tpp_per_unit": per_unit}
        if f["order_id"] == "O-Year":  # an order spanning a year's end
            f["date"] = rng.choice(["2025-12-31", "2026-01-01", "2026-12-31", "2027-01-01"])
        f.update(over)
        return f

    def edge(self, key_kind):
        """Lines that bring one limit exactly to its limit (or a --warn-at level) or one tpp past it."""
        t, rng = self.t, self.rng
        past = rng.choice([0, 1, -1])
        day = D(2025, 7, 1) + datetime.timedelta(days=rng.randrange(200))
        if day < t.window[0] or day > t.window[1]:
            day = t.window[0]

        def split(total, **fields):
            first = rng.randint(1, max(1, total - 1)) if total > 1 and rng.random() < 0.6 else total
            out = []
            for k, amount in enumerate([first, total - first] if first != total else [total]):
                ret = rng.choice([0, 0, 12345])
                base = dict(chip="EDGE", quantity="1", tpp_per_unit=str(amount + ret), date=str(day),
                            exporter="", order_id="", pathway="LICENSE")
                base.update(fields)
                out.append(self.line(**base))
                if ret:
                    out.append(self.line(**{**base, "quantity": "-1", "tpp_per_unit": str(ret)}))
            return out

        level = rng.choice([Fraction(1), Fraction(9, 10), Fraction(4, 5)])
        if key_kind == "country":
            cap = t.country_cap("MY")
            return split(-(-cap * level.numerator // level.denominator) + past, country="MY", entity="N1")
        if key_kind == "nveu":
            return split(-(-t.nveu_cap(day) * level.numerator // level.denominator) + past, country="SA",
                         entity="NVE", pathway="NVEU")
        if key_kind == "nveu_fall":  # under the first phase's cap, over the next one's: a return crosses
            (through1, cap1), (_, cap2) = t.phases[0], t.phases[1]
            if cap2 >= cap1 or through1 < t.window[0]:
                return []
            first = dict(chip="EDGE", quantity="1", tpp_per_unit=str(rng.randint(cap2 + 1, cap1)), date=str(through1),
                         exporter="", order_id="", pathway="NVEU", country="SA", entity="NV2")
            later = dict(first, quantity="-1", tpp_per_unit=str(rng.choice([1, 2])),
                         date=str(through1 + datetime.timedelta(days=rng.choice([1, 30]))))
            return [self.line(**first), self.line(**later)]
        if key_kind == "lpp_order":
            return split(t.lpp_order + past, country="BR", entity="N2", pathway="LPP", order_id="EDGE-ORDER")
        if key_kind == "lpp_year":
            return split(t.lpp_year + past, country="IN", entity="HQX", pathway="lpp")
        # UVEU shares: the entity UE holds nothing else.
        m = rng.randint(1, 50)
        share = {"tier2": t.max_tier2, "tier1": t.min_tier1, "us": t.min_us}[key_kind]
        whole = share.denominator * m * 1000
        part = share * whole
        assert part.denominator == 1
        part = int(part) + (past if key_kind == "tier2" else -past)
        fields = dict(entity="UE", pathway="UVEU", quantity="1", chip="EDGE", exporter="", order_id="")
        rest = {"tier2": "US", "tier1": "AE", "us": "DE"}[key_kind]
        where = {"tier2": "AE", "tier1": "US", "us": "US"}[key_kind]
        out = [self.line(**fields, country=where, tpp_per_unit=str(part), date=str(self.day()))]
        if whole - part > 0:
            out.append(self.line(**fields, country=rest, tpp_per_unit=str(whole - part), date=str(self.day())))
        return out

    def bad(self, reason):
        """A line with one bad field, and where a file must end with it."""
        rng = self.rng
        f = self.line()
        if reason == "DUPLICATE_ID":
            f["shipment_id"] = rng.choice(self.ids[:-1] or ["S0001"])
        elif reason == "BAD_DATE":
            f["date"] = rng.choice(["2025-2-3", "2025-02-30", "20250203", "", "0000-01-01", "2025-01-01T00"])
        elif reason == "BAD_QUANTITY":
            f["quantity"] = rng.choice(["0", "+0", "-0", "1.0", "1e3", "", "abc", "1_000", "00", "9223372036854775808",
                                        "-9223372036854775809", "99999999999999999999"])
        elif reason == "UNKNOWN_COUNTRY":
            f["country"] = rng.choice(["XX", "", "USA", "u"])
        elif reason == "UNKNOWN_CHIP":
            f["chip"], f["tpp_per_unit"] = "NOPE-9", ""
        elif reason == "UNKNOWN_PATHWAY":
            f["pathway"] = rng.choice(["LICENCE", "X", "VEU"])
        elif reason == "BAD_TPP_PER_UNIT":
            f["tpp_per_unit"] = rng.choice(["0", "-5", "1.5", "x", "9223372036854775808", "+0"])
        elif reason == "EMPTY_FIELD":
            f[rng.choice(["shipment_id", "entity", "chip"])] = ""
        elif reason == "TPP_OVERFLOW":
            f["quantity"], f["tpp_per_unit"] = rng.choice([("3", str(2**62)), ("-3", str(2**62)),
                                                           ("-9223372036854775808", "1"),
                                                           ("2", "+0004611686018427387904")])
        elif reason == "BAD_ENCODING":
            f[rng.choice(["entity", "exporter", "order_id"])] = b"ab\xff".decode("latin-1")
        return f


def render(rng, lines, columns, crlf):
    """The bytes of a log: header, then each line (dicts of field text, or raw bytes)."""
    eol = b"\r\n" if crlf else b"\n"
    header = ",".join(rng.choice([c, c.upper(), " " + c.title() + " "]) for c in columns)
    out = [header.encode()]
    for f in lines:
        if isinstance(f, bytes):
            out.append(f)
            continue
        cells = []
        for c in columns:
            v = f.get(c, "")
            if c == "note":
                v = rng.choice(["", "a, b", "x"])
            if any(ch in v for ch in ',"\n\r') or rng.random() < 0.1:
                v = '"' + v.replace('"', '""') + '"'
            if v and rng.random() < 0.1:  # trimmed, also around quotes
                v = rng.choice([" ", "\t"]) + v + " "
            cells.append(v.encode("latin-1") if "\xff" in v else v.encode())
        out.append(b",".join(cells))
        if rng.random() < 0.05:
            out.append(b"")  # a blank line
    return eol.join(out) + (eol if rng.random() < 0.9 else b"")


def bad_raw(rng, gen, reason, columns):
    """A record (bytes) whose fault is in its structure."""
    f = gen.line()
    cells = [f.get(c, "").replace(",", ";").replace('"', "").replace("\n", " ").encode() for c in columns]
    if reason == "WRONG_FIELD_COUNT":
        return b",".join(cells + [b"extra"] if rng.random() < 0.5 else cells[:-1])
    if reason == "SPACES":  # a line of spaces is one field: WRONG_FIELD_COUNT
        return rng.choice([b"  ", b"\t", b" \t "])
    if reason == "BAD_QUOTE":
        k = rng.randrange(len(cells))
        cells[k] = b'"' + cells[k] + b'"x'
        return b",".join(cells)
    k = rng.randrange(len(cells))  # UNTERMINATED_QUOTE: no quote may follow in the file
    cells[k] = b'"' + cells[k]
    return b",".join(cells)


# ---------------------------------------------------------------------------------------------
# One seed


class Seed:
    backend = None  # --backend for `report`, from the command line

    def __init__(self, seed, work):
        rng = self.rng = random.Random(seed)
        self.work = work
        t = self.t = Tables(rng, work, custom=seed % 3 == 2)
        self.entities_path = os.path.join(work, "entities.csv")
        self.entities = write_entities(rng, self.entities_path)
        self.entities_flag = self.entities_path
        if rng.random() < 0.1:  # no entities file: every entity NONE, HQ unknown
            self.entities, self.entities_flag = {}, None
        gen = Gen(rng, t)
        with_bad = rng.random() < 0.6
        self.rejects = with_bad and rng.random() < 0.8 or rng.random() < 0.2
        lines = [gen.line() for _ in range(rng.randint(5, 60))]
        for kind in rng.sample(["country", "nveu", "lpp_order", "lpp_year", "tier2", "tier1", "us", "nveu_fall"],
                               rng.randint(0, 5)):
            lines += gen.edge(kind)
        rng.shuffle(lines)
        if rng.random() < 0.3:  # a log sorted by date, as most are
            lines.sort(key=lambda f: f["date"])
        if with_bad:
            for _ in range(rng.randint(1, 8)):
                reason = rng.choice(["DUPLICATE_ID", "BAD_DATE", "BAD_QUANTITY", "UNKNOWN_COUNTRY", "UNKNOWN_CHIP",
                                     "UNKNOWN_PATHWAY", "BAD_TPP_PER_UNIT", "EMPTY_FIELD", "TPP_OVERFLOW",
                                     "BAD_ENCODING", "WRONG_FIELD_COUNT", "BAD_QUOTE", "UNTERMINATED_QUOTE", "SPACES"])
                lines.insert(rng.randrange(len(lines) + 1), reason if reason in (
                    "WRONG_FIELD_COUNT", "BAD_QUOTE", "UNTERMINATED_QUOTE", "SPACES") else gen.bad(reason))
        if rng.random() < 0.1:  # 63-bit totals: a few lines of 2^59 to 2^61 tpp, up to the |tpp| bound
            for _ in range(rng.randint(1, 5)):
                big = gen.line(quantity=str(rng.choice([1, -1, 3])), tpp_per_unit=str(rng.randint(2**59, 2**61)))
                lines.insert(rng.randrange(len(lines) + 1), big)
        if with_bad:
            if rng.random() < 0.15:  # two lines whose |tpp| together pass 2^63 - 1
                for q in ("1", "-1"):
                    lines.insert(rng.randrange(len(lines) + 1), gen.line(quantity=q, tpp_per_unit=str(2**62 + 5)))
        self.paths = []
        parts = rng.randint(1, 3)
        cuts = sorted(rng.sample(range(1, len(lines)), min(parts - 1, len(lines) - 1)))
        for k, chunk in enumerate([lines[a:b] for a, b in zip([0] + cuts, cuts + [len(lines)])]):
            columns = COLUMNS[:]
            if rng.random() < 0.15:
                columns.remove(rng.choice(["pathway", "order_id", "exporter"]))
            if rng.random() < 0.3:
                columns.append("note")
            rng.shuffle(columns)
            body, tail = [], []
            for item in chunk:
                if item == "UNTERMINATED_QUOTE":
                    tail.append(bad_raw(rng, gen, item, columns))
                elif isinstance(item, str):
                    body.append(bad_raw(rng, gen, item, columns))
                else:
                    body.append(item)
            data = render(rng, body, columns, crlf=rng.random() < 0.3)
            if tail:  # an unterminated quote ends the file's quoting: what follows holds no quote
                data += (b"" if data.endswith(b"\n") else b"\n") + tail[0] + b"\n"
                if rng.random() < 0.5:
                    clean = gen.line(exporter="", entity="N1")
                    data += ",".join(clean.get(c, "") for c in columns).encode() + b"\n"
            if rng.random() < 0.05:
                data = data.split(b"\n")[0] + b"\n"  # the header alone
            if rng.random() < 0.1:
                data = rng.choice([b"\n", b"\r\n\n"]) + data  # blank lines before the header
            if k == 0 and rng.random() < 0.3:
                data = b"\xef\xbb\xbf" + data
            path = os.path.join(work, f"log{k}.csv")
            with open(path, "wb") as f:
                f.write(data)
            self.paths.append(path)
        self.as_of = None
        if rng.random() < 0.35:
            self.as_of = rng.choice([D(2025, 6, 30), D(2026, 3, 1), D(2027, 12, 31), D(2024, 12, 1), D(2030, 1, 1),
                                     rng.choice([parse_date(f["date"]) for f in lines if isinstance(f, dict)
                                                 and parse_date(f["date"])] or [D(2025, 6, 30)])])
        self.warn = None
        if rng.random() < 0.3:
            self.warn = rng.choice(["0.5,0.75", "1", ".9,0.8", "0.8,0.9,0.95,1", "0.333333"])
        self.max_rejects = rng.choice([None, None, None, None, 0, 5]) if self.rejects else None

    def warn_levels(self):
        return [Fraction(w) for w in (self.warn or "0.8,0.9,0.95").split(",")]

    def command(self, capledger, out):
        args = [capledger, "report", *self.paths, *(["--entities", self.entities_flag] if self.entities_flag else []),
                *self.t.flags, "--out", out]
        if self.rejects:
            args += ["--rejects", os.path.join(self.work, "rejects.csv")]
        if self.max_rejects is not None:
            args += ["--max-rejects", str(self.max_rejects)]
        if self.as_of:
            args += ["--as-of", str(self.as_of)]
        if self.warn:
            args += ["--warn-at", self.warn]
        if Seed.backend:
            args += ["--backend", Seed.backend]
        return args


def compare_json(want, got, path, problems):
    if isinstance(want, dict):
        if not isinstance(got, dict):
            problems.append(f"summary.json {path}: model {want!r}, capledger {got!r}")
            return
        for k in want:
            if k not in got:
                problems.append(f"summary.json {path}.{k}: missing")
            else:
                compare_json(want[k], got[k], f"{path}.{k}", problems)
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            problems.append(f"summary.json {path}: model {want!r}, capledger {got!r}")
            return
        for k, (w, g) in enumerate(zip(want, got)):
            compare_json(w, g, f"{path}[{k}]", problems)
    elif want != got or type(want) is not type(got):
        problems.append(f"summary.json {path}: model {want!r}, capledger {got!r}")


def first_difference(name, want, got):
    w, g = want.splitlines(), got.splitlines()
    for k in range(max(len(w), len(g))):
        a = w[k] if k < len(w) else "<none>"
        b = g[k] if k < len(g) else "<none>"
        if a != b:
            return f"{name} line {k + 1}: model {a!r}, capledger {b!r}"
    return f"{name}: line ends differ"


def check_seed(capledger, seed, verbose):
    try:
        return compare_seed(capledger, seed, verbose)
    except OSError as error:  # an output file missing
        print(f"seed {seed}: {error}")
        return False


def compare_seed(capledger, seed, verbose):
    with tempfile.TemporaryDirectory() as work:
        s = Seed(seed, work)
        out = os.path.join(work, "out")
        result = subprocess.run(s.command(capledger, out), capture_output=True)
        stderr = result.stderr.decode(errors="replace")
        log = Log(s.paths, s.t)
        problems = []
        stopped = s.max_rejects is not None and len(log.rejects) > s.max_rejects
        if not s.rejects and log.rejects or stopped:
            want_code = 2
        else:
            files, summary, violations = model_report(log, s.t, s.entities, s.entities_flag, s.as_of,
                                                       s.warn_levels())
            want_code = 1 if violations else 0
        if result.returncode != want_code:
            problems.append(f"exit {result.returncode}, model {want_code}: {stderr.strip()[-300:]}")
        elif want_code == 2:
            if os.path.exists(out):
                problems.append("exit 2 left an output directory")
            if not s.rejects:
                path, line, col, reason, _ = log.rejects[0]
                if f"{path}:{line}:{col}: {reason}" not in stderr:
                    problems.append(f"stderr lacks {path}:{line}:{col}: {reason}: {stderr.strip()[:300]}")
            else:
                with open(os.path.join(work, "rejects.csv"), "rb") as f:
                    got = f.read()
                want = rejects_text(log.rejects[:s.max_rejects + 1])
                if got != want:
                    problems.append(first_difference("rejects.csv", want.decode("latin-1"), got.decode("latin-1")))
        else:
            for name in FILES:
                with open(os.path.join(out, name), "rb") as f:
                    got = f.read().decode()
                if got != files[name]:
                    problems.append(first_difference(name, files[name], got))
            with open(os.path.join(out, "summary.json")) as f:
                compare_json(summary, json.load(f), "", problems)
            if s.rejects:
                with open(os.path.join(work, "rejects.csv"), "rb") as f:
                    got = f.read()
                want = rejects_text(log.rejects)
                if got != want:
                    problems.append(first_difference("rejects.csv", want.decode("latin-1"), got.decode("latin-1")))
        if problems:
            print(f"seed {seed}: " + " ".join(os.path.basename(a) if a.startswith(work) else a
                                                for a in s.command("capledger", "OUT")[1:]))
            for p in problems[:8 if verbose else 3]:
                print("  " + p.replace(work + "/", ""))
            if verbose:
                keep = os.path.join(tempfile.gettempdir(), f"report_model_seed{seed}")
                subprocess.run(["rm", "-rf", keep])
                subprocess.run(["cp", "-r", work, keep])
                print(f"  inputs kept in {keep}")
        return not problems


def main():
    capledger, first, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    options = sys.argv[4:]
    verbose = "-v" in options
    if "--backend" in options:
        Seed.backend = options[options.index("--backend") + 1]
    failures = sum(not check_seed(capledger, seed, verbose) for seed in range(first, end))
    print(f"{end - first} seeds, {failures} differing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
