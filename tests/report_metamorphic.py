#!/usr/bin/env python3
"""`capledger report --backend cpu` against itself under changes of its input that SPEC says cannot
change the answer (a metamorphic test of the streamed CPU path: chunks, windows, the parse pool,
the second look at crossing days out of date order, the id set, the many-core pipeline).

From a generated log (`generate --force-breaches`, returns) the base report is compared, every
output file byte for byte and summary.json field by field (input names, sizes and hashes aside,
and the line counts a change moves by what it moves them), with the reports of:
- the lines split at random line boundaries into k files (each with the header), given in order;
- the lines of each date kept in their order, the dates interleaved at random, reversed, sorted;
- stdin and a pipe;
- CRLF, a BOM, every field quoted, columns permuted, unknown columns, header names in other case
  with spaces; ids holding `""` and line breaks (against a base with the same ids);
- OMP_NUM_THREADS 1, 2, 3, 8, 16 (8 and more: the many-core pipeline);
- `--as-of D` against the log cut to lines dated <= D (only `lines.read` and `lines.after_as_of`
  may differ);
- with `--rejects`: copies of lines (same id) placed later, in the same or a later file, and bad
  lines of each reason of SPEC §7, which must leave the outputs as they were and be listed in
  the rejects file exactly, at the file, line and column worked out here from where they were put.
- with `--past-id-check` (not in ctest: it writes several 2.2 GB files): every line padded with
  spaces (trimmed from its last field) so that the inputs pass `external_id_check_above` (2 GiB):
  files are then checked for repeated ids out of memory (a first pass, temporary files), stdin in
  memory; the padded log as 1 and 3 files and as stdin against the base, and the `--rejects` audit
  (repeats far apart, bad lines) in both paths. stderr must say which check ran.

ctest runs one 40,000-line log with 40 entities (many LPP crossings for the second look); the same
script at 200,000 to 3,000,000 lines is the audit at scale.

usage: report_metamorphic.py CAPLEDGER [--records N] [--seeds S,S] [--entities E,E] [--returns R]
           [--days FIRST,LAST] [--k K,K] [--threads T,T] [--only split,order,stdin,text,threads,as_of,rejects]
           [--past-id-check] [--keep]   (--keep: leave each log's work folder in $TMPDIR)

Not reached here: the second look's position filter past `max_blocks` (33.5 M lines), which needs
a log larger than this script holds in memory (each row is a list of strings).
"""
import argparse
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

FILES = ["by_country.csv", "by_entity.csv", "by_entity_country.csv", "by_chip.csv", "by_exporter.csv",
         "uveu_shares.csv", "findings.csv"]
failures = []


def fail(what):
    failures.append(what)
    print("FAIL", what[:2000], flush=True)


def cell(value, quote_all=False):
    if quote_all or any(c in value for c in ',"\r\n') or value[:1] in (" ", "\t") or value[-1:] in (" ", "\t"):
        return '"' + value.replace('"', '""') + '"'
    return value


class Log:
    """A log as rows of fields (the header first), and how to write it."""

    def __init__(self, header, rows):
        self.header = header
        self.rows = rows

    def col(self, name):
        return self.header.index(name)

    @staticmethod
    def line(row, quote_all=False):
        return ",".join(cell(v, quote_all) for v in row)

    def text(self, rows=None, header=None, eol="\n", quote_all=False, bom=False, order=None, extra=None, pad=0):
        """The CSV text of @p rows (all by default); @p order permutes the columns, @p extra
        appends (name, value) columns, @p pad spaces end each line (trimmed from its last field)."""
        header = header or self.header
        order = order or list(range(len(self.header)))
        extra = extra or []
        out = io.StringIO()
        if bom:
            out.write("\ufeff")
        out.write(",".join([cell(header[i], quote_all) for i in order] + [cell(n, quote_all) for n, _ in extra]) + eol)
        for r in self.rows if rows is None else rows:
            out.write(",".join([cell(r[i], quote_all) for i in order] + [cell(v, quote_all) for _, v in extra]) +
                      " " * pad + eol)
        return out.getvalue()


def write_padded(path, rows, pad):
    """Writes @p rows (Log.line text, header first) to @p path, each data line ending in @p pad
    spaces, a line at a time (the padded log does not fit in memory)."""
    spaces = " " * pad
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(rows[0] + "\n")
        for r in rows[1:]:
            f.write(r + spaces + "\n")
    return path


ID_CHECK_ABOVE = 2 << 30  # report_options::external_id_check_above: larger inputs (not stdin), ids out of memory
OUT_OF_MEMORY_NOTE = "checked for repeats out of memory"


def column_of(fields, index):
    """The 1-based byte column where written field @p index begins (fields as written, quotes included)."""
    return 1 + sum(len(v.encode("utf-8", "surrogateescape")) + 1 for v in fields[:index])


def read_log(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return Log(rows[0], rows[1:])


class Runner:
    def __init__(self, cli, work, entities):
        self.cli, self.work, self.entities, self.count = cli, work, entities, 0

    def write(self, name, text):
        path = os.path.join(self.work, name)
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write(text)
        return path

    def report(self, inputs, extra=(), env=None, stdin=None, shell=None):
        """Runs `report` into a fresh --out directory; returns (exit code, files, stderr)."""
        self.count += 1
        out = os.path.join(self.work, f"out{self.count}")
        args = [self.cli, "report", *inputs, "--entities", self.entities, "--backend", "cpu", "--out", out, *extra]
        full_env = dict(os.environ, **(env or {}))
        if shell:
            p = subprocess.run(shell + " | " + " ".join(f"'{a}'" for a in args), shell=True, capture_output=True,
                               env=full_env)
        elif stdin:
            with open(stdin, "rb") as f:
                p = subprocess.run(args, stdin=f, capture_output=True, env=full_env)
        else:
            p = subprocess.run(args, capture_output=True, env=full_env)
        files = {}
        if os.path.isdir(out):
            for name in FILES + ["summary.json"]:
                with open(os.path.join(out, name), "rb") as f:
                    files[name] = f.read()
            shutil.rmtree(out)
        return p.returncode, files, p.stderr.decode("utf-8", "replace")


def summary_of(files):
    """summary.json without what names the inputs (paths, sizes, SHA-256 differ by design)."""
    s = json.loads(files["summary.json"])
    s.pop("inputs", None)
    return s


def compare(name, base, got, lines_delta=None, files_compared=FILES):
    """@p got (exit code, files, stderr) against @p base; @p lines_delta: the `lines` fields of
    summary.json expected to differ, and by how much."""
    rc, files, err = got
    if rc != base[0]:
        fail(f"{name}: exit {rc}, base {base[0]}: {err}")
        return
    for f in files_compared:
        if files.get(f) != base[1].get(f):
            a, b = (base[1].get(f) or b"").splitlines(), (files.get(f) or b"").splitlines()
            diff = [f"-{x!r}" for x in a if x not in set(b)][:5] + [f"+{x!r}" for x in b if x not in set(a)][:5]
            fail(f"{name}: {f} differs ({len(a)} rows in base, {len(b)} here): " + " ".join(diff))
    if "summary.json" not in files:
        return
    want, have = summary_of(base[1]), summary_of(files)
    for key, delta in (lines_delta or {}).items():
        want["lines"][key] += delta
    if want != have:
        keys = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        fail(f"{name}: summary.json differs in {keys}: base {[want.get(k) for k in keys]} here "
             f"{[have.get(k) for k in keys]}")


def interleave(rows, date_col, rng, how):
    """The rows with each date's rows in their order and the dates interleaved as @p how says."""
    by_date = {}
    for r in rows:
        by_date.setdefault(r[date_col], []).append(r)
    if how == "sorted":
        return [r for d in sorted(by_date) for r in by_date[d]]
    if how == "reversed":
        return [r for d in sorted(by_date, reverse=True) for r in by_date[d]]
    slots = [r[date_col] for r in rows]
    rng.shuffle(slots)
    nexts = {d: iter(v) for d, v in by_date.items()}
    return [next(nexts[d]) for d in slots]


def split_points(n, k, rng):
    return [0] + sorted(rng.sample(range(1, n), k - 1)) + [n]


def bad_lines(log, rng, fresh):
    """One bad line per reason of SPEC §7 (and the README's), each from a good row: (text of the
    line, reason, column of the offending field); @p fresh() gives an unused shipment id."""
    h = log.header
    col = {name: h.index(name) for name in h}
    out = []

    def line(row, reason, field, raw=None):
        fields = [cell(v) for v in row]
        column = column_of(fields, col[field]) if field in col else field
        out.append((raw if raw is not None else ",".join(fields), reason, column))

    def base():
        r = list(rng.choice(log.rows))
        r[col["shipment_id"]] = fresh()
        r[col["tpp_per_unit"]] = ""
        return r

    r = base(); r[col["date"]] = "2025-02-30"; line(r, "BAD_DATE", "date")
    r = base(); r[col["date"]] = "2025-2-3"; line(r, "BAD_DATE", "date")
    r = base(); r[col["quantity"]] = "0"; line(r, "BAD_QUANTITY", "quantity")
    r = base(); r[col["quantity"]] = "1.0"; line(r, "BAD_QUANTITY", "quantity")
    r = base(); r[col["country"]] = "ZZ"; line(r, "UNKNOWN_COUNTRY", "country")
    r = base(); r[col["chip"]] = "NO-SUCH-CHIP"; line(r, "UNKNOWN_CHIP", "chip")
    r = base(); r[col["pathway"]] = "BARTER"; line(r, "UNKNOWN_PATHWAY", "pathway")
    r = base(); r[col["quantity"]] = str(2**62); line(r, "TPP_OVERFLOW", "quantity")
    r = base(); r[col["tpp_per_unit"]] = "0"; line(r, "BAD_TPP_PER_UNIT", "tpp_per_unit")
    r = base(); r[col["entity"]] = ""; line(r, "EMPTY_FIELD", "entity")
    r = base()
    fields = [cell(v) for v in r]
    fields[col["exporter"]] = "Bad\udcffByte"
    column = column_of(fields, col["exporter"])
    out.append((",".join(fields), "BAD_ENCODING", column))
    r = base()  # one field too many: the first one past the header's count
    line(r + ["x"], "WRONG_FIELD_COUNT", column_of([cell(v) for v in r], len(r)))
    r = base()  # one too few: the record's last field
    line(r[:-1], "WRONG_FIELD_COUNT", column_of([cell(v) for v in r], len(r) - 2))
    r = base()  # text after a closing quote: the column of that text
    fields = [cell(v) for v in r]
    fields[col["entity"]] = '"' + r[col["entity"]] + '"x'
    column = column_of(fields, col["entity"]) + len(r[col["entity"]]) + 2
    out.append((",".join(fields), "BAD_QUOTE", column))
    return out


def unterminated_quote_line(log, rng, fresh):
    """A line whose last field opens a quote that no later quote closes (the log's last line)."""
    r = list(rng.choice(log.rows))
    r[log.col("shipment_id")] = fresh()
    fields = [cell(v) for v in r]
    fields[-1] = '"' + r[-1].replace('"', "")
    return ",".join(fields), "UNTERMINATED_QUOTE", column_of(fields, len(fields) - 1)


def audit(args, seed, records, entities_count, work):
    rng = random.Random(seed)
    gen = os.path.join(work, "gen")
    days = ["--first-day", args.days[0], "--last-day", args.days[1]] if args.days else []
    subprocess.run([args.cli, "generate", "--records", str(records), "--seed", str(seed), "--entities",
                    str(entities_count), "--returns-per-mille", str(args.returns), *days, "--force-breaches",
                    "--out", gen], check=True, capture_output=True)
    run = Runner(args.cli, work, os.path.join(gen, "entities.csv"))
    log_path = os.path.join(gen, "shipments.csv")
    log = read_log(log_path)
    date_col, id_col = log.col("date"), log.col("shipment_id")
    n = len(log.rows)
    wanted = lambda name: not args.only or name in args.only
    tag = f"seed {seed} records {records} entities {entities_count} returns {args.returns} days {args.days}"
    print(f"{tag}: {n} lines", flush=True)

    base = run.report([log_path])
    if "summary.json" not in base[1]:
        fail(f"{tag}: base report failed: {base[2]}")
        return
    findings = base[1]["findings.csv"].count(b"\n") - 1
    crossings = sum(1 for x in base[1]["findings.csv"].splitlines() if x.split(b",")[7:8] != [b""])
    print(f"  base: exit {base[0]}, {findings} findings, {crossings} with a line", flush=True)

    if wanted("split"):
        for k in args.k:
            if k >= n:
                continue
            cuts = split_points(n, k, rng)
            paths = [run.write(f"part{i}.csv", log.text(log.rows[cuts[i]:cuts[i + 1]])) for i in range(k)]
            got = run.report(paths)
            compare(f"{tag}: split into {k} files", base, got)
            if "summary.json" in got[1]:
                read = [f["lines_read"] for f in json.loads(got[1]["summary.json"])["inputs"]]
                if read != [b - a for a, b in zip(cuts, cuts[1:])]:
                    fail(f"{tag}: split into {k} files: lines_read per input {read}, cuts {cuts}")

    if wanted("order"):
        for how in ("sorted", "reversed", "interleaved", "interleaved"):
            rows = interleave(log.rows, date_col, rng, how)
            path = run.write("ordered.csv", log.text(rows))
            compare(f"{tag}: dates {how}", base, run.report([path]))
            if how == "interleaved" and wanted("split"):  # out of date order across files too
                cuts = split_points(n, 7, rng)
                paths = [run.write(f"part{i}.csv", log.text(rows[cuts[i]:cuts[i + 1]])) for i in range(7)]
                compare(f"{tag}: dates interleaved, 7 files", base, run.report(paths))

    if wanted("stdin"):
        compare(f"{tag}: stdin", base, run.report(["-"], stdin=log_path))
        compare(f"{tag}: pipe", base, run.report(["-"], shell=f"cat '{log_path}'"))

    if wanted("text"):
        permuted = list(range(len(log.header)))
        rng.shuffle(permuted)
        odd_header = [("  " + h.upper() + " ") if i % 2 else (" " + h.title()) for i, h in enumerate(log.header)]
        variants = {
            "CRLF": dict(eol="\r\n"),
            "BOM": dict(bom=True),
            "every field quoted": dict(quote_all=True),
            "columns permuted": dict(order=permuted),
            "unknown columns": dict(extra=[("note", "x, y"), ("Shipment_ID2", "z")]),
            "header case and spaces": dict(header=odd_header),
            "all at once": dict(eol="\r\n", bom=True, quote_all=True, order=permuted, header=odd_header,
                                extra=[("note", "")]),
        }
        for name, how in variants.items():
            path = run.write("variant.csv", log.text(**how))
            compare(f"{tag}: {name}", base, run.report([path]))
        # Ids and orders holding quotes and line breaks (a chunk may start at a line start inside
        # one): a base of its own.
        rows = [list(r) for r in log.rows]
        for i in range(0, n, 5):
            rows[i][id_col] = rows[i][id_col] + '"q""\n' + str(i) + ("\r\n" if i % 2 else "")
        for i in range(0, n, 101):
            rows[i][log.col("order_id")] = "o\n" + rows[i][log.col("order_id")]
        odd = Log(log.header, rows)
        odd_base = run.report([run.write("odd.csv", odd.text())])
        # Findings and by_country.csv name shipment ids; the rest is as in the base.
        compare(f"{tag}: ids with line breaks and quotes (own base)", base, odd_base,
                files_compared=[f for f in FILES if f not in ("findings.csv", "by_country.csv")])
        for name, how in (("CRLF", dict(eol="\r\n")), ("every field quoted, BOM", dict(quote_all=True, bom=True)),
                          ("columns permuted", dict(order=permuted))):
            path = run.write("odd_variant.csv", odd.text(**how))
            compare(f"{tag}: ids with line breaks, {name}", odd_base, run.report([path]))
        cuts = split_points(n, 7, rng)
        paths = [run.write(f"oddpart{i}.csv", odd.text(rows[cuts[i]:cuts[i + 1]], eol="\r\n")) for i in range(7)]
        compare(f"{tag}: ids with line breaks, CRLF, 7 files", odd_base, run.report(paths))

    if wanted("threads"):
        # Lines padded to 3 times their length: several windows of 2 chunks a thread at 8 threads.
        rows = interleave(log.rows, date_col, rng, "interleaved")
        path = run.write("ordered.csv", log.text(rows, pad=150))
        cuts = split_points(n, 3, rng)
        paths = [run.write(f"part{i}.csv", log.text(rows[cuts[i]:cuts[i + 1]], pad=150)) for i in range(3)]
        for t in args.threads:
            env = {"OMP_NUM_THREADS": str(t)}
            compare(f"{tag}: OMP_NUM_THREADS={t}", base, run.report([log_path], env=env))
            compare(f"{tag}: dates interleaved, OMP_NUM_THREADS={t}", base, run.report([path], env=env))
            compare(f"{tag}: dates interleaved, 3 files, OMP_NUM_THREADS={t}", base, run.report(paths, env=env))
            compare(f"{tag}: stdin, OMP_NUM_THREADS={t}", base, run.report(["-"], stdin=path, env=env))

    if wanted("as_of"):
        dates = sorted({r[date_col] for r in log.rows})
        shuffled = run.write("shuffled.csv", log.text(interleave(log.rows, date_col, rng, "interleaved")))
        for d in rng.sample(dates[len(dates) // 10:], 3) + [dates[-2]]:
            cut = [r for r in log.rows if r[date_col] <= d]
            path = run.write("cut.csv", log.text(cut))
            later = n - len(cut)
            whole = run.report([log_path], ["--as-of", d])
            compare(f"{tag}: --as-of {d} against the log cut there", whole, run.report([path]),
                    {"read": len(cut) - n, "after_as_of": -later})
            compare(f"{tag}: --as-of {d}, the log cut there, --as-of {d}", whole, run.report([path], ["--as-of", d]),
                    {"read": len(cut) - n, "after_as_of": -later})
            compare(f"{tag}: --as-of {d}, dates interleaved", whole, run.report([shuffled], ["--as-of", d]))

    if wanted("rejects"):
        rejects_audit(run, log, rng, base, tag)

    if args.past_id_check:
        id_check_audit(run, log, rng, base, tag)


def id_check_audit(run, log, rng, base, tag):
    """The log, dates interleaved, every line padded so that the inputs pass 2 GiB: as 1 file and 3
    files (ids checked out of memory) and as stdin (in memory) against the base; then the rejects
    audit, padded the same way, in both paths."""
    csv.field_size_limit(1 << 24)  # rejects of padded lines
    n = len(log.rows)
    lines = [Log.line(r) for r in interleave(log.rows, log.col("date"), rng, "interleaved")]
    size = sum(len(x.encode("utf-8", "surrogateescape")) + 1 for x in lines)
    big_pad = (ID_CHECK_ABOVE + (64 << 20) - size) // n + 1
    header = ",".join(cell(h) for h in log.header)
    path = write_padded(os.path.join(run.work, "big.csv"), [header] + lines, big_pad)
    cuts = split_points(n, 3, rng)
    for name, inputs, stdin in (("1 file", [path], None), ("stdin", ["-"], path), ("3 files", None, None)):
        if inputs is None:
            os.remove(path)
            inputs = [write_padded(os.path.join(run.work, f"big{i}.csv"), [header] + lines[cuts[i]:cuts[i + 1]],
                                   big_pad) for i in range(3)]
        got = run.report(inputs, stdin=stdin)
        what = f"{tag}: dates interleaved, lines padded past 2 GiB ({big_pad} spaces), {name}"
        compare(what, base, got)
        if (OUT_OF_MEMORY_NOTE in got[2]) == bool(stdin):
            fail(f"{what}: ids not checked {'in' if stdin else 'out of'} memory: {got[2][:500]}")
    for p in inputs:
        os.remove(p)
    rejects_audit(run, log, rng, base, tag, runs=((1, None, False), (3, "8", False), (1, None, True)),
                  big_pad=big_pad)


REJECTS_RUNS = ((1, None, False), (3, None, False), (3, "8", False), (1, None, True), (1, "8", True))


def rejects_audit(run, log, rng, base, tag, runs=REJECTS_RUNS, big_pad=0):
    """Copies of lines placed later and bad lines of every reason: outputs as the base, and the
    rejects file lists exactly those lines. @p big_pad: spaces ending every good line (and its
    copies), to pass the out-of-memory id check's threshold; stderr then says which check ran."""
    n = len(log.rows)
    id_col = log.col("shipment_id")
    serial = iter(range(10**9))
    rejects = os.path.join(run.work, "rejects.csv")
    # stdin: the id set grows as the lines come (a file's size sizes it ahead).
    for files_count, threads, stdin in runs:
        # The good rows in order, split into files; then each inserted line placed after the one it
        # copies (duplicates) or anywhere (bad lines).
        # The first lines end in 200 spaces (trimmed from the last field): the ingest, which sizes
        # the id set from the first chunk's lines, must grow it, keeping every id it holds. With
        # 8 threads every line is padded: the ids of several windows are found in parallel.
        # (text, reason, column, spaces ending it): padded as written, so that a log padded past
        # 2 GiB is never held in memory.
        pad = lambda k: big_pad or (200 if k < 1500 else 150 if threads else 0)
        placed = [(Log.line(r), None, None, pad(k)) for k, r in enumerate(log.rows)]
        inserts = []
        for d in range(40):  # half of them copies of early lines: ids held the longest
            i = rng.randrange(n if d % 2 else min(n, 500))
            at = rng.randrange(i + 1, n + 1)
            inserts.append((at, (placed[i][0], "DUPLICATE_ID", column_of([cell(v) for v in log.rows[i]], id_col),
                                 placed[i][3])))
        # A bad line's id is new, or that of a later line (which is still accepted: a rejected
        # line's id is not taken), or of an earlier one (the line keeps its own reason).
        ranges = []

        def bad_id():
            how, j = rng.randrange(3), rng.randrange(n)
            ranges.append((0, n) if how == 0 else (0, j) if how == 1 else (j + 1, n))
            return f"FRESH-{next(serial)}" if how == 0 else log.rows[j][id_col]

        for _ in range(3):
            for bad in bad_lines(log, rng, bad_id):
                inserts.append((rng.randint(*ranges.pop(0)), (*bad, 0)))
        for at, item in sorted(inserts, key=lambda x: x[0], reverse=True):
            placed.insert(at, item)
        placed.append((*unterminated_quote_line(log, rng, lambda: f"FRESH-{next(serial)}"), 0))
        cuts = split_points(len(placed), files_count, rng) if files_count > 1 else [0, len(placed)]
        header = ",".join(cell(h) for h in log.header)
        expected, paths = [], []
        for f in range(files_count):
            part = placed[cuts[f]:cuts[f + 1]]
            path = os.path.join(run.work, f"rej{f}.csv")
            with open(path, "wb") as out:
                out.write((header + "\n").encode())
                for k, (text, reason, column, spaces) in enumerate(part):
                    text = text.encode("utf-8", "surrogateescape") + b" " * spaces
                    out.write(text + b"\n")
                    if reason:
                        expected.append(["-" if stdin else path, str(k + 2), str(column), reason, text])
            paths.append(path)
        bad_count = len(placed) - n
        got = run.report(["-"] if stdin else paths, ["--rejects", rejects], stdin=stdin and paths[0],
                         env=threads and {"OMP_NUM_THREADS": threads})
        name = (f"{tag}: {bad_count} bad and repeated lines in {'stdin' if stdin else f'{files_count} file(s)'}, "
                f"--rejects, OMP_NUM_THREADS={threads or 'unset'}" + (", padded past 2 GiB" if big_pad else ""))
        compare(name, base, got, {"read": bad_count, "rejected": bad_count})
        if big_pad and (OUT_OF_MEMORY_NOTE in got[2]) == stdin:
            fail(f"{name}: ids not checked {'in' if stdin else 'out of'} memory: {got[2][:500]}")
        with open(rejects, "rb") as f:
            rows = [r for r in csv.reader(io.TextIOWrapper(f, encoding="utf-8", errors="surrogateescape",
                                                            newline=""))]
        if rows[:1] != [["file", "line", "column", "reason", "raw"]]:
            fail(f"{tag}: rejects file header {rows[:1]}")
        have = sorted([r[0], r[1], r[2], r[3], r[4].encode("utf-8", "surrogateescape")] for r in rows[1:])
        if have != sorted(expected):
            missing = [e for e in expected if e not in have][:5]
            extra = [h for h in have if h not in expected][:5]
            fail(f"{tag}: rejects file ({len(have)} rows, {len(expected)} expected): missing {missing} extra {extra}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cli")
    p.add_argument("--records", type=int, default=40000)
    p.add_argument("--seeds", default="1")
    p.add_argument("--entities", default="40", help="generate's --entities (few: many LPP crossings)")
    p.add_argument("--k", default="2,7,50")
    p.add_argument("--threads", default="1,2,3,8,16")
    p.add_argument("--returns", type=int, default=20, help="generate's --returns-per-mille")
    p.add_argument("--days", default="", help="FIRST,LAST: generate's --first-day and --last-day")
    p.add_argument("--only", default="")
    p.add_argument("--past-id-check", action="store_true",
                   help="also the log padded past 2 GiB: ids out of memory (files) against in memory (stdin)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    args.cli = os.path.abspath(args.cli)
    args.k = [int(x) for x in args.k.split(",")]
    args.threads = [int(x) for x in args.threads.split(",")]
    args.only = set(args.only.split(",")) - {""}
    args.days = args.days.split(",") if args.days else None
    for seed in (int(s) for s in args.seeds.split(",")):
        for entities_count in (int(e) for e in args.entities.split(",")):
            work = tempfile.mkdtemp(prefix=f"report_metamorphic{seed}_")
            try:
                audit(args, seed, args.records, entities_count, work)
            finally:
                if not args.keep:
                    shutil.rmtree(work)
    print(f"{len(failures)} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
