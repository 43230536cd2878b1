#!/usr/bin/env bash
# backend_diff.sh -- command-level differential test of two capledger `report` backends.
#
#   backend_diff.sh -c PATH_TO_CAPLEDGER [-w WORKDIR] [-a BACKEND_A] [-b BACKEND_B]
#                   [-j JOBS] [-k CASE_REGEX]
#
# Defaults: -a cpu -b gpu, WORKDIR a fresh temporary directory (kept, path printed),
# JOBS = number of CPUs.  Needs bash and python3 (standard library only).
#
# Every case is one `capledger report ...` argument list, run as four variants
# (`--out DIR`, `--format table`, `--format json`, `--format csv`), each once with
# `--backend A` and once with `--backend B`, from the same working directory with the
# same relative paths, so that every path the program prints or records is the same
# on both sides.  Per variant it compares: the exit code, stdout, stderr, every file
# the run wrote (the --out directory, the --rejects file).
#
# NORMALISATION (exactly this, nothing else; README: "CPU and GPU outputs are
# byte-identical except summary.json's backend field"):
#   1. In every file named summary.json and in `--format json` stdout: a line of the
#      form   <spaces>"backend": "<anything>"<optional comma>   has its value replaced
#      by "<BACKEND>".
#   2. In `--format table` stdout: the first line, `capledger report ... backend <x>`,
#      has its trailing `backend <x>` replaced by `backend <BACKEND>` (the table prints
#      the same backend field).
#   3. stderr: lines starting with `capledger: backend` (the backend choice note) are
#      dropped.
#   4. File NAMES (not contents) matching `.tmp.<digits>` (a staging file left by a
#      crashed run) have the PID replaced by `<PID>`.
# Nothing else is normalised: input paths, sizes, SHA-256s, as_of etc. must match.
#
# Output: one line per case, `same: <case>` or `DIFF: <case>: <variant>/<stream>` with
# a short diff excerpt (indented), then `backend_diff: N cases, M identical, K differ`.
# Exit 0: nothing differs; 1: something differs; 2: could not run (binary missing or
# not executable, python3 missing, bad options, a backend that cannot report a
# trivial log at all, e.g. `--backend gpu` on a machine without a usable GPU).
#
# Self-test (proves the script can fail): DIFF_SELFTEST=<mode> perturbs side B after it
# ran, for one run of one case (DIFF_SELFTEST_CASE overrides the case, default
# gen_small_fb; the rejects mode uses bad_rejects):
#   1 | file  : flip one byte of out/findings.csv      stdout : edit one byte of json stdout
#   stderr    : append a line to table stderr           rc     : change the exit code
#   rejects   : flip one byte of the rejects file       missing: delete out/by_chip.csv
# The script then reports that case as DIFF and exits 1.
#
# DIFF_RUN_TIMEOUT (seconds, default 60) bounds each capledger run; -j JOBS runs that many
# (case, variant) pairs at once; -k REGEX keeps only the cases whose name matches.
#
# Environment passed to capledger: inherited (e.g. CAPLEDGER_DATASETS), plus
# TMPDIR=WORKDIR/tmp so that nothing is written outside WORKDIR.

set -u
usage() { sed -n '2,6p' "$0" >&2; exit 2; }

BIN="" WORKDIR="" BA="cpu" BB="gpu" JOBS="" FILTER=""
while getopts ":c:w:a:b:j:k:h" opt; do
  case "$opt" in
    c) BIN=$OPTARG ;; w) WORKDIR=$OPTARG ;; a) BA=$OPTARG ;; b) BB=$OPTARG ;;
    j) JOBS=$OPTARG ;; k) FILTER=$OPTARG ;; h) usage ;;
    *) echo "backend_diff: bad option -$OPTARG" >&2; usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || { echo "backend_diff: unexpected argument: $1" >&2; usage; }
[ -n "$BIN" ] || { echo "backend_diff: -c PATH_TO_CAPLEDGER is required" >&2; usage; }
if [ ! -f "$BIN" ] || [ ! -x "$BIN" ]; then
  echo "backend_diff: cannot run: '$BIN' is not an executable file" >&2; exit 2
fi
command -v python3 >/dev/null 2>&1 || { echo "backend_diff: cannot run: python3 not found" >&2; exit 2; }
[ -n "$JOBS" ] || JOBS=$(nproc 2>/dev/null || echo 2)
case "$JOBS" in ''|*[!0-9]*|0) echo "backend_diff: -j needs a positive integer" >&2; exit 2 ;; esac
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

if [ -z "$WORKDIR" ]; then
  WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/backend_diff.XXXXXX") || { echo "backend_diff: cannot make a temp dir" >&2; exit 2; }
else
  mkdir -p "$WORKDIR" || { echo "backend_diff: cannot create $WORKDIR" >&2; exit 2; }
  # Refuse to clear a directory that holds anything but an earlier run of this script.
  if [ -n "$(ls -A "$WORKDIR")" ] && [ ! -e "$WORKDIR/.backend_diff" ]; then
    echo "backend_diff: cannot run: $WORKDIR is not empty and not a backend_diff workdir" >&2; exit 2
  fi
fi
WORKDIR=$(cd "$WORKDIR" && pwd)
: > "$WORKDIR/.backend_diff"

PY=$(cat <<'PYEOF'
import sys, os, re, json, random, shutil, difflib, subprocess, time, csv, io
import concurrent.futures as cf

BIN, W, BA, BB, JOBS, FILTER = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
SELFTEST = os.environ.get("DIFF_SELFTEST", "")
T0 = time.time()
RUN_TIMEOUT = int(os.environ.get("DIFF_RUN_TIMEOUT", "60"))   # per capledger run; a timeout is recorded as exit "timeout"

def P(*a): return os.path.join(W, *a)
for d in ("in", "run", "res", "tmp"):
    shutil.rmtree(P(d), ignore_errors=True)
    os.makedirs(P(d))
ENV = dict(os.environ); ENV["TMPDIR"] = P("tmp")

def cant(msg):
    print("backend_diff: cannot run: " + msg, file=sys.stderr); sys.exit(2)

def wr(rel, data, mode="w"):
    path = P(rel); os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str): data = data.encode("utf-8")
    with open(path, "wb") as f: f.write(data)
    return rel

def rd(rel):
    with open(P(rel), "rb") as f: return f.read()

# ---------------------------------------------------------------- reference data
TIER1 = "AU BE CA DE DK ES FI FR GB IE IT JP KR NL NO NZ SE TW US".split()
TIER3 = "AF BY CD CF CN CU ER HK HT IQ IR KH KP LB LY MM MO NI RU SD SO SS SY VE ZW".split()
ISO = ("AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT "
       "BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH "
       "ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT "
       "HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS "
       "LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI "
       "NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG "
       "SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG "
       "UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW").split()
CHIPS = """chip,vendor,tpp,performance_density,datacenter
H100-SXM,NVIDIA,15832,19.45,1
H100-NVL,NVIDIA,13364,16.42,1
H200-SXM,NVIDIA,15832,19.45,1
H200-NVL,NVIDIA,13364,16.42,1
H800-SXM,NVIDIA,15832,19.45,1
H800-PCIE,NVIDIA,12104,14.87,1
H20,NVIDIA,2368,2.91,1
A100,NVIDIA,4992,6.04,1
A800,NVIDIA,4992,6.04,1
B100,NVIDIA,28000,17.20,1
B200,NVIDIA,36000,22.11,1
B300,NVIDIA,56000,34.40,1
MI300X,AMD,20919,20.57,1
MI325X,AMD,20919,20.57,1
MI300A,AMD,15690,15.43,1
MI350X,AMD,36910,36.29,1
MI355X,AMD,40265,39.59,1
MI250X,AMD,6128,3.88,1
MI250,AMD,5794,3.67,1
MI210,AMD,2896,3.67,1
RTX-4090,NVIDIA,5285,8.66,0
"""
CHIP_NAMES = [l.split(",")[0] for l in CHIPS.strip().split("\n")[1:]]
RULES = {
  "id": "ai-diffusion-2025",
  "title": "Framework for Artificial Intelligence Diffusion, interim final rule (90 FR 4544)",
  "counting_starts": "2025-01-13", "counting_ends": "2027-12-31", "h100_tpp": 15832,
  "country_cap": {"tpp": 790000000, "g2g_multiplier": 2, "pathways": ["LICENSE"]},
  "lpp": {"per_order_tpp": 26900000, "per_consignee_year_tpp": 26900000},
  "nveu_caps": [{"through": "2025-12-31", "tpp": 633000000},
                {"through": "2026-12-31", "tpp": 1699000000},
                {"through": "2027-12-31", "tpp": 5064000000}],
  "uveu": {"max_tier2_country_share": 0.07, "min_tier1_share": 0.75, "min_us_share_if_us_hq": 0.50},
}

def rules_file(name, **edit):
    r = json.loads(json.dumps(RULES))
    for k, v in edit.items():
        if v is None: r.pop(k, None)
        elif isinstance(v, dict) and isinstance(r.get(k), dict): r[k].update(v)
        else: r[k] = v
    return wr("in/ref/" + name, json.dumps(r, indent=2) + "\n")

# ---------------------------------------------------------------- input builders
HDR = ["shipment_id", "date", "entity", "country", "chip", "quantity", "pathway", "order_id", "exporter", "tpp_per_unit"]

def csv_text(rows, header=HDR, eol="\n", bom=False, final_eol=True):
    s = io.StringIO()
    w = csv.writer(s, lineterminator=eol)
    w.writerow(header)
    for r in rows: w.writerow(r)
    t = s.getvalue()
    if not final_eol and t.endswith(eol): t = t[: -len(eol)]
    return ("\ufeff" if bom else "") + t

def gen(name, *opts):
    d = "in/gen/" + name
    p = subprocess.run([BIN, "generate", "--out", d] + list(opts), cwd=W, env=ENV,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        cant("capledger generate %s failed (rc %d): %s" % (" ".join(opts), p.returncode, p.stderr.decode(errors="replace")[-400:]))
    return d + "/shipments.csv", d + "/entities.csv"

def read_rows(rel):
    with open(P(rel), newline="", encoding="utf-8") as f:
        r = list(csv.reader(f))
    return r[0], r[1:]

# -- preflight: binary answers, both backends can report a trivial log
try:
    v = subprocess.run([BIN, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
except Exception as e:
    cant("%s --version: %s" % (BIN, e))
VERSION = v.stdout.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
pre_s, pre_e = gen("preflight", "--records", "3", "--seed", "1")
for be in (BA, BB):
    p = subprocess.run([BIN, "report", pre_s, "--entities", pre_e, "--format", "csv", "--backend", be],
                       cwd=W, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
    if p.returncode not in (0, 1):
        cant("backend '%s' cannot report a 3-line generated log (rc %d): %s\n"
             "(is CAPLEDGER_DATASETS needed? is the backend usable on this machine?)"
             % (be, p.returncode, p.stderr.decode(errors="replace").strip()[-600:]))

# -- generated logs (fixed seeds)
G = {}
G["empty"]    = gen("empty", "--records", "0", "--seed", "1")
G["one"]      = gen("one", "--records", "1", "--seed", "2")
G["small_fb"] = gen("small_fb", "--records", "1000", "--seed", "3", "--force-breaches")
G["fewent"]   = gen("fewent", "--records", "20000", "--seed", "4", "--entities", "3", "--returns-per-mille", "0")
G["manyent"]  = gen("manyent", "--records", "20000", "--seed", "5", "--entities", "20000", "--force-breaches")
G["big_fb"]   = gen("big_fb", "--records", "200000", "--seed", "6", "--force-breaches", "--returns-per-mille", "300")
G["big_plain"]= gen("big_plain", "--records", "200000", "--seed", "7", "--entities", "50", "--returns-per-mille", "0")
G["start"]    = gen("start", "--records", "50000", "--seed", "8", "--first-day", "2025-01-01", "--last-day", "2025-01-31", "--force-breaches")
G["end"]      = gen("end", "--records", "50000", "--seed", "9", "--first-day", "2027-12-01", "--last-day", "2028-01-31", "--force-breaches")
G["before"]   = gen("before", "--records", "30000", "--seed", "10", "--first-day", "2024-01-01", "--last-day", "2024-12-31")
G["ret"]      = gen("ret", "--records", "5000", "--seed", "11", "--returns-per-mille", "1000", "--entities", "5")
G["two"]      = gen("two", "--records", "100000", "--seed", "12", "--entities", "2", "--force-breaches")
G["oneday"]   = gen("oneday", "--records", "20000", "--seed", "13", "--first-day", "2025-05-05", "--last-day", "2025-05-05", "--force-breaches")

# -- derived from generated logs
h, rows = read_rows(G["big_fb"][0])
rnd = random.Random(101); sh = rows[:]; rnd.shuffle(sh)
wr("in/big_shuf.csv", csv_text(sh, h))
n3 = len(rows) // 3
wr("in/part1.csv", csv_text(rows[:n3], h))
perm = [8, 5, 0, 3, 1, 9, 2, 4, 7, 6]           # part 2: columns reordered, odd header case, extra column
h2 = ["  " + h[i].upper() + " " for i in perm] + ["Comment"]
wr("in/part2.csv", csv_text([[r[i] for i in perm] + ["x, \"y\""] for r in rows[n3:2 * n3]], h2))
wr("in/part3.csv", csv_text(rows[2 * n3:], h, eol="\r\n", bom=True))   # part 3: CRLF + BOM
h, rows = read_rows(G["oneday"][0])
wr("in/oneday_rev.csv", csv_text(rows[::-1], h))

# -- quoted line breaks everywhere, so that 256 KiB ingest chunk seams fall inside quoted records
rnd = random.Random(202)
ql = []
for i in range(40000):
    exp = "Vendor %d\nbuilding %d, \"dock\" %d" % (i % 7, i % 13, i % 3) if i % 2 else "Plain Exporter %d" % (i % 5)
    ql.append(["Q%06d" % i, "2025-%02d-%02d" % (rnd.randint(1, 12), rnd.randint(1, 28)), "QE%03d" % rnd.randint(0, 400),
               rnd.choice(["AE", "SA", "IN", "US", "DE", "MX", "CN"]), rnd.choice(CHIP_NAMES),
               str(rnd.choice([1, -1, 1, 1]) * rnd.randint(1, 3000)), rnd.choice(["", "LICENSE", "LPP", "NVEU"]),
               "QO%d" % rnd.randint(0, 900), exp, ""])
wr("in/quoted_nl.csv", csv_text(ql))

# -- hand-made bad lines, one of every reject kind (SPEC 7 / README)
def bad_log(eol="\n", bom=False):
    L = [",".join(HDR),
      "B01,2025-03-01,E00,AE,H100-SXM,10,LICENSE,,NVIDIA,",              # good
      "B02,2025-03-01,E00,AE,H100-SXM,10",                               # WRONG_FIELD_COUNT (few)
      "B03,2025-03-01,E00,AE,H100-SXM,10,LICENSE,,NVIDIA,,extra",       # WRONG_FIELD_COUNT (many)
      "B04,2025-02-30,E00,AE,H100-SXM,10,,,,",                            # BAD_DATE
      "B05,2025-13-01,E00,AE,H100-SXM,10,,,,",
      "B06,25-03-01,E00,AE,H100-SXM,10,,,,",
      "B07,,E00,AE,H100-SXM,10,,,,",
      "B08,2025-3-1,E00,AE,H100-SXM,10,,,,",
      "B09,2025-03-01,E00,AE,H100-SXM,0,,,,",                             # BAD_QUANTITY
      "B10,2025-03-01,E00,AE,H100-SXM,1.5,,,,",
      "B11,2025-03-01,E00,AE,H100-SXM,abc,,,,",
      "B12,2025-03-01,E00,AE,H100-SXM,,,,,",
      "B13,2025-03-01,E00,AE,H100-SXM,99999999999999999999,,,,",
      "B14,2025-03-01,E00,XX,H100-SXM,10,,,,",                            # UNKNOWN_COUNTRY
      "B15,2025-03-01,E00,USA,H100-SXM,10,,,,",
      "B16,2025-03-01,E00,AE,FOO-1,10,,,,",                               # UNKNOWN_CHIP
      "B17,2025-03-01,E00,AE,FOO-1,10,,,,777",                            # unknown chip with tpp: ok
      "B18,2025-03-01,E00,AE,H100-SXM,10,BOGUS,,,",                       # UNKNOWN_PATHWAY
      "B01,2025-03-02,E00,AE,H100-SXM,10,LICENSE,,NVIDIA,",              # DUPLICATE_ID
      "B19,2025-03-01,E00,AE,H100-SXM,1000000000000000,,,,",              # TPP_OVERFLOW (product)
      "B20,2025-03-01,E00,AE,H100-SXM,10,,,,-5",                          # BAD_TPP_PER_UNIT
      "B21,2025-03-01,E00,AE,H100-SXM,10,,,,abc",
      ",2025-03-01,E00,AE,H100-SXM,10,,,,",                               # EMPTY_FIELD
      "B22,2025-03-01,,AE,H100-SXM,10,,,,",
      "B23,2025-03-01,E00,AE,,10,,,,",
      "B24,2025-03-01,E\xff\xfe,AE,H100-SXM,10,,,,",                      # BAD_ENCODING (raw bytes below)
      "B25,2025-03-01,\"E00\"x,AE,H100-SXM,10,,,,",                       # BAD_QUOTE
      "   ",                                                              # spaces only
      "",                                                                 # blank (skipped)
      "B26,2025-03-01,E01,ae,h100-sxm,7,lpp,O1,\"Acme, \"\"Inc\"\"\",",  # good, lower-case codes
      "B27,2025-03-01, E02 ,\tIN\t, \"B200\" ,  -3 ,,,\"multi\nline exporter\",",  # good, quoted newline
      "B29,2025-03-02,E03,CN,H20,5,,,,",                                  # good, tier 3
      "B02,2025-03-02,E00,AE,H100-SXM,10,LICENSE,,NVIDIA,",              # id of a rejected line: accepted
      "B30,2025-03-03,E04,SA,H100-SXM,-2,NVEU,,,",
      "B31,2025-03-03,E04,SA,H100-SXM,5,nveu,,,20000",
      "B32,2025-03-04,E00,AE,H100-SXM,1,UVEU,,,",
      "B33,2025-03-04,E00,AE,H100-SXM,\"12\",AIA,,,",
      "B34,2025-03-04,E00,US,RTX-4090,12,ACA,,,",
      "B35,2025-03-04,E00,US,H100-SXM,12,ACA,,,",
      "B36,2025-03-05,E00,AE,H100-SXM,10,\"LICENSE\nmore\",,NVIDIA,",     # quoted newline: UNKNOWN_PATHWAY
      "B37,2025-03-05,E00,AE,\"H100-SXM\"\"\",10,,,,",                       # BAD_QUOTE-ish ("" inside)
      "B28,2025-03-01,E00,AE,H100-SXM,10,\"LICENSE,,NVIDIA,",             # UNTERMINATED_QUOTE (to EOF)
    ]
    t = ("\ufeff" if bom else "") + eol.join(L) + eol
    b = t.encode("utf-8").replace("E\u00ff\u00fe".encode("utf-8"), b"E\xff\xfe")
    return b
wr("in/bad.csv", bad_log())
wr("in/bad_crlf_bom.csv", bad_log("\r\n", True))

allbad = [",".join(HDR)] + ["A%02d,2025-02-30,E00,AE,H100-SXM,1,,,," % i for i in range(5)] + \
         ["A10,2025-03-01,E00,ZZ,H100-SXM,1,,,,", "A11,2025-03-01,E00,AE,NOPE,1,,,,", "A12,2025-03-01,E00,AE,H100-SXM,0,,,,"]
wr("in/allbad.csv", "\n".join(allbad) + "\n")

# formatting variety: BOM, CRLF, header names in odd case/order, missing optional columns,
# blank lines, trimmed spaces, quotes, quoted newline in an unknown column, no final line end
fmt = ("\ufeff Notes ,Quantity,  SHIPMENT_ID,Date,COUNTRY,entity,Chip,PathWay\r\n"
       "\"first\r\nnote\",5,F1,2025-02-01,ae,E00,h100-sxm,license\r\n"
       "\r\n"
       ",  -2 ,F2,2025-02-01,AE,E00,H100-SXM,\r\n"
       "\"x\",\"40000\",\"F3\",2025-02-02,\"SA\", \"E04\" ,B300,NVEU\r\n"
       "\r\n\r\n"
       "y,3,\"F\"\"4\",2025-02-03,us,\"E\"\"q\",rtx-4090,aca\r\n"
       "z,1,F5,2025-02-03,MO,E05,A100,lpp")
wr("in/fmt.csv", fmt)
wr("in/empty0.csv", b"")
wr("in/hdr_only.csv", "\ufeff" + ",".join(HDR) + "\r\n")
wr("in/missing_col.csv", "shipment_id,date,entity,country,chip\nM1,2025-03-01,E00,AE,H100-SXM\n")
wr("in/dup_col.csv", "shipment_id,date,entity,Country,country,chip,quantity\nD1,2025-03-01,E00,AE,AE,H100-SXM,1\n")

# 64-bit bound: exactly at the bound (accepted), and past it (TPP_OVERFLOW)
I63 = (1 << 63) - 1
wr("in/ovf_bound.csv", csv_text([
    ["O1", "2025-03-01", "E00", "US", "CUSTOM", str((1 << 62) - 1), "LICENSE", "", "X", "1"],
    ["O2", "2025-03-02", "E00", "AE", "CUSTOM", str(-(1 << 62)), "LICENSE", "", "X", "1"]]))
qmax = I63 // 2368
wr("in/ovf_over.csv", csv_text([
    ["V1", "2025-03-01", "E00", "AE", "H20", str(qmax), "LICENSE", "", "X", ""],
    ["V2", "2025-03-01", "E01", "AE", "H20", str(qmax + 1), "LICENSE", "", "X", ""],      # product overflow
    ["V3", "2025-03-02", "E01", "US", "H100-SXM", "1", "", "", "X", ""],                   # sum bound
    ["V4", "2025-03-02", "E01", "US", "H100-SXM", "-1", "", "", "X", ""],
    ["V5", "2025-03-02", "E02", "US", "CUSTOM", str(1 << 63), "", "", "X", "1"],           # not int64
    ["V6", "2025-03-02", "E02", "US", "CUSTOM", str(-(1 << 63)), "", "", "X", "1"],        # |tpp| = 2^63
    ["V7", "2025-03-02", "E02", "US", "CUSTOM", "1", "", "", "X", str(I63)],
    ["V8", "2024-01-01", "E03", "DE", "CUSTOM", "1", "", "", "X", str(I63 - qmax * 2368)],  # fills to the bound
    ["V9", "2025-03-03", "E03", "DE", "CUSTOM", "1", "", "", "X", "1"]]))

# large per-entity totals (~3e18), caps used far beyond 100 %
wr("in/bigent.csv", csv_text([["G%04d" % i, "2025-%02d-%02d" % (1 + i % 12, 1 + i % 28), "BIG%d" % (i % 3),
                               ["AE", "US", "SA", "IN"][i % 4], "H100-SXM", str(200000000000 * (1 if i % 7 else -1)),
                               ["LICENSE", "NVEU", "UVEU", "LPP"][i % 4], "BO%d" % (i % 5), "", ""] for i in range(1000)]))

# returns exceeding shipments: negative totals everywhere
neg = [
    ["N01", "2025-02-01", "E00", "US", "H100-SXM", "100", "UVEU", "", "NVIDIA", ""],
    ["N02", "2025-02-02", "E00", "US", "H100-SXM", "-300", "UVEU", "", "NVIDIA", ""],
    ["N03", "2025-02-03", "E00", "AE", "H100-SXM", "-7", "UVEU", "", "NVIDIA", ""],
    ["N04", "2025-03-01", "E04", "AE", "H100-SXM", "40000", "NVEU", "", "NVIDIA", ""],    # crosses 633M
    ["N05", "2025-03-02", "E04", "AE", "H100-SXM", "-80000", "NVEU", "", "NVIDIA", ""],
    ["N06", "2025-04-01", "E07", "AE", "H100-SXM", "50000", "LICENSE", "", "Dell", ""],  # crosses 790M
    ["N07", "2025-04-01", "E07", "AE", "H100-SXM", "-100000", "LICENSE", "", "Dell", ""],
    ["N08", "2025-04-02", "E08", "AE", "H100-SXM", "2000", "LPP", "LO1", "Dell", ""],      # LPP order crossing
    ["N09", "2025-04-03", "E08", "AE", "H100-SXM", "-5000", "LPP", "LO1", "Dell", ""],
    ["N10", "2025-04-04", "E09", "CN", "H20", "10", "", "", "", ""],
    ["N11", "2025-04-05", "E09", "CN", "H20", "-20", "", "", "", ""],
    ["N12", "2025-04-05", "E10", "DE", "A100", "-5", "", "", "", ""],
    ["N13", "2025-04-06", "E07", "US", "RTX-4090", "5", "ACA", "", "", ""],
    ["N14", "2025-04-06", "E07", "US", "H100-SXM", "5", "ACA", "", "", ""],
    ["N15", "2026-01-02", "E04", "AE", "H100-SXM", "110000", "NVEU", "", "NVIDIA", ""],
    ["N16", "2024-12-31", "E01", "SA", "B300", "-99", "LICENSE", "", "", ""],
    ["N17", "2028-02-01", "E01", "SA", "B300", "-99", "LICENSE", "", "", ""],
]
wr("in/neg.csv", csv_text(neg))

# tier-3 destinations: every embargoed code, both signs, every pathway
rnd = random.Random(303)
t3 = []
for i in range(600):
    c = TIER3[i % len(TIER3)]
    t3.append(["T%04d" % i, "2025-%02d-%02d" % (1 + i % 12, 1 + (i * 7) % 28), "E%02d" % (i % 12),
               c.lower() if i % 5 == 0 else c, rnd.choice(CHIP_NAMES), str(rnd.choice([1, 1, -1]) * rnd.randint(1, 500)),
               rnd.choice(["", "LICENSE", "LPP", "NVEU", "UVEU", "AIA", "ACA"]), "TO%d" % (i % 9), "", ""])
wr("in/tier3.csv", csv_text(t3))

# random rule-heavy logs: dates around window edges and out of order, all pathways,
# signed quantities, unknown chips with tpp_per_unit, shuffled columns, a few bad lines
def stress(seed, n, bad=False):
    rnd = random.Random(seed)
    cols = HDR[:] + ["notes"]; rnd.shuffle(cols)
    ctry = ["AE", "SA", "IN", "MX", "BR", "SG", "MY", "IL", "US", "DE", "JP", "GB", "CN", "RU", "HK", "MO", "ae", "Sa", "VN"]
    days = ["2024-12-20", "2025-01-12", "2025-01-13", "2025-01-14", "2025-06-30", "2025-07-01", "2025-12-31",
            "2026-01-01", "2026-06-30", "2026-07-01", "2027-12-31", "2028-01-01", "2028-01-10"]
    rows = []
    for i in range(n):
        d = rnd.choice(days) if rnd.random() < 0.4 else "%d-%02d-%02d" % (rnd.choice([2025, 2026, 2027]), rnd.randint(1, 12), rnd.randint(1, 28))
        chip = rnd.choice(CHIP_NAMES + ["h100-sxm", "CUSTOM-X", "b200"])
        tpu = str(rnd.randint(1, 90000)) if chip == "CUSTOM-X" or rnd.random() < 0.03 else ""
        q = int(10 ** rnd.uniform(0, 3.7)) * (-1 if rnd.random() < 0.25 else 1)
        rec = {"shipment_id": "S%d_%06d" % (seed, i), "date": d, "entity": "E%02d" % rnd.randint(0, 39),
               "country": rnd.choice(ctry), "chip": chip, "quantity": str(q),
               "pathway": rnd.choice(["", "LICENSE", "LICENSE", "LPP", "lpp", "NVEU", "NVEU", "UVEU", "AIA", "ACA"]),
               "order_id": rnd.choice(["", "O%d" % rnd.randint(0, 199)]),
               "exporter": rnd.choice(["NVIDIA", "AMD", "Acme, Inc.", "", "Dell \"EMC\""]),
               "tpp_per_unit": tpu, "notes": rnd.choice(["", "n", "a\nb"])}
        if bad and rnd.random() < 0.01:
            k = rnd.choice(["date", "quantity", "country", "chip", "pathway", "shipment_id"])
            rec[k] = {"date": "2025-02-31", "quantity": "0", "country": "QQ", "chip": "NOPE",
                      "pathway": "GIFT", "shipment_id": "S%d_%06d" % (seed, max(0, i - 1))}[k]
            if k == "chip": rec["tpp_per_unit"] = ""
        rows.append([rec[c] for c in cols])
    return csv_text(rows, cols)
wr("in/stress1.csv", stress(1, 30000))
wr("in/stress2.csv", stress(2, 30000))
wr("in/stress3.csv", stress(3, 30000, bad=True))
wr("in/stress4.csv", stress(4, 3000))

# -- reference variants
ents = [["entity", "hq_country", "status", "nveu_countries", "name"],
        ["E00", "US", "UVEU", "", "Big Cloud, Inc."], ["E01", "DE", "UVEU", "", ""], ["E02", "AE", "UVEU", "", ""],
        ["E03", "", "UVEU", "", "no HQ"], ["E04", "SG", "NVEU", "AE;SA;IN", ""], ["E05", "AE", "NVEU", "AE", ""],
        ["E06", "IN", "NVEU", "", "withdrawn"], ["E07", "US", "NONE", "", ""], ["E08", "JP", "NONE", "", ""],
        ["E09", "", "", "", "empty status"]]
rnd = random.Random(404)
for i in range(10, 30):
    st = rnd.choice(["UVEU", "NVEU", "NONE", "nveu", ""])
    nv = ";".join(rnd.sample(["AE", "SA", "IN", "MX", "BR", "SG", "MY", "IL", "VN", "us"], rnd.randint(0, 4))) if st.upper() == "NVEU" else ""
    ents.append(["E%02d" % i, rnd.choice(["US", "DE", "AE", "IN", "SG", "", "CN", "gb"]), st, nv, "Entity %d" % i])
s = io.StringIO(); csv.writer(s, lineterminator="\n").writerows(ents); wr("in/ref/ents_custom.csv", s.getvalue())
wr("in/ref/ents_nocol.csv", "entity,hq_country,status\nE00,US,UVEU\nE01,DE,NONE\nE02,,\n")
wr("in/ref/ents_nveu_nocol.csv", "entity,hq_country,status\nE00,US,NVEU\n")

rules_file("rules_copy.json")
rules_file("rules_tiny.json", id="tiny", country_cap={"tpp": 100000, "g2g_multiplier": 3, "pathways": ["LICENSE", "LPP"]},
           lpp={"per_order_tpp": 50000, "per_consignee_year_tpp": 80000},
           nveu_caps=[{"through": "2025-06-30", "tpp": 100000}, {"through": "2026-06-30", "tpp": 50000},
                      {"through": "2027-12-31", "tpp": 300000}],
           uveu={"max_tier2_country_share": 0.2, "min_tier1_share": 0.5, "min_us_share_if_us_hq": 0.3})
rules_file("rules_window.json", id="window", title=None, counting_starts="2025-06-01", counting_ends="2025-09-30",
           country_cap={"tpp": 5000000, "g2g_multiplier": 2}, lpp={"per_order_tpp": 1000000, "per_consignee_year_tpp": 2000000},
           nveu_caps=[{"through": "2025-07-15", "tpp": 3000000}, {"through": "2025-09-30", "tpp": 1000000}],
           uveu={"max_tier2_country_share": 0.070001, "min_tier1_share": 0.999999, "min_us_share_if_us_hq": 0.000001})
wr("in/ref/countries_g2g.csv", "iso2,name,tier,g2g_partner\n" + "".join(
    "%s,\"Name of %s, the\",%d,%d\n" % (c, c, 3 if c in TIER3 or c == "SA" else (1 if c in TIER1 else 2), 1 if c in ("AE", "IN", "MX") else 0)
    for c in ISO if c != "CN") + "CN,China,2,1\n")
rules_file("rules_allpaths.json", id="allpaths", country_cap={"tpp": 20000000, "g2g_multiplier": 5,
           "pathways": ["LICENSE", "LPP", "NVEU", "UVEU", "AIA", "ACA"]})
wr("in/ref/rules_bad.json", json.dumps(dict(RULES, pathway=["LPP"]), indent=2))
chips_alt = CHIPS.replace("H100-SXM,NVIDIA,15832", "H100-SXM,NVIDIA,15833").replace("RTX-4090,NVIDIA,5285,8.66,0", "RTX-4090,NVIDIA,5285,8.66,1") \
    + "GAUDI3,Intel,20000,10.00,0\nCUSTOM-X,Other,1,0,0\n"
wr("in/ref/chips_alt.csv", chips_alt)

# ---------------------------------------------------------------- cases
CASES = []
def case(name, args, stdin=None, rejects=None, max_rejects=None, setup=None, variants=("out", "table", "json", "csv")):
    CASES.append(dict(name=name, args=list(args), stdin=stdin, rejects=rejects, max_rejects=max_rejects,
                      setup=setup, variants=variants))
def g(k): return [G[k][0], "--entities", G[k][1]]
E = ["--entities", "in/ref/ents_custom.csv"]

for k in ["empty", "one", "small_fb", "fewent", "manyent", "big_fb", "big_plain", "start", "end", "before", "ret", "two", "oneday"]:
    case("gen_" + k, g(k))
case("gen_empty_asof", g("empty") + ["--as-of", "2025-06-01"])
case("gen_small_noentities", [G["small_fb"][0]])
for tag, d in [("pre_data", "2024-06-30"), ("pre_window", "2025-01-12"), ("window_start", "2025-01-13"),
               ("mid", "2025-07-15"), ("window_end", "2027-12-31"), ("after", "2028-06-30")]:
    case("asof_" + tag, g("big_fb") + ["--as-of", d])
case("asof_end_straddle", g("end") + ["--as-of", "2027-12-31"])
case("asof_start_straddle", g("start") + ["--as-of", "2025-01-20"])
case("warn_single", g("big_plain") + ["--warn-at", "0.5"])
case("warn_many", g("big_fb") + ["--warn-at", "0.000001,0.25,0.5,0.75,1"])
case("warn_one", g("manyent") + ["--warn-at", "1"])
case("warn_tiny_rules", ["in/stress4.csv"] + E + ["--rules", "in/ref/rules_tiny.json", "--warn-at", "0.1,0.3,0.6,0.999999"])
case("warn_bad", g("small_fb") + ["--warn-at", "0.5,1.5"])
case("multi_parts", ["in/part1.csv", "in/part2.csv", "in/part3.csv", "--entities", G["big_fb"][1]])
case("multi_parts_rev", ["in/part3.csv", "in/part2.csv", "in/part1.csv", "--entities", G["big_fb"][1]])
case("multi_twice_rejects", [G["small_fb"][0], G["small_fb"][0], "--entities", G["small_fb"][1]], rejects="rej.csv")
case("multi_twice_fatal", [G["small_fb"][0], G["small_fb"][0], "--entities", G["small_fb"][1]])
case("stdin", ["-", "--entities", G["small_fb"][1]], stdin=G["small_fb"][0])
case("stdin_mixed", ["in/part1.csv", "-", "in/part3.csv", "--entities", G["big_fb"][1]], stdin="in/part2.csv")
case("stdin_bad_rejects", ["-"] + E, stdin="in/bad.csv", rejects="rej.csv")
case("shuffled", ["in/big_shuf.csv", "--entities", G["big_fb"][1]])
case("shuffled_tiny_asof", ["in/big_shuf.csv", "--entities", G["big_fb"][1], "--rules", "in/ref/rules_tiny.json", "--as-of", "2025-09-30"])
case("oneday_reversed", ["in/oneday_rev.csv", "--entities", G["oneday"][1]])
case("quoted_newlines", ["in/quoted_nl.csv"] + E)
case("bad_rejects", ["in/bad.csv"] + E, rejects="rej.csv")
case("bad_fatal", ["in/bad.csv"] + E)
case("bad_max0", ["in/bad.csv"] + E, rejects="rej.csv", max_rejects=0)
case("bad_max3", ["in/bad.csv"] + E, rejects="rej.csv", max_rejects=3)
case("bad_max1000", ["in/bad.csv"] + E, rejects="rej.csv", max_rejects=1000)
case("bad_crlf_bom", ["in/bad_crlf_bom.csv"] + E, rejects="rej.csv")
case("allbad_rejects", ["in/allbad.csv"] + E, rejects="rej.csv")
case("allbad_rejects_in_out", ["in/allbad.csv"] + E, rejects="IN_OUT")
case("allbad_max2", ["in/allbad.csv"] + E, rejects="rej.csv", max_rejects=2)
case("fmt_variety", ["in/fmt.csv"] + E)
case("empty_file", ["in/empty0.csv"])
case("header_only_bom_crlf", ["in/hdr_only.csv"] + E)
case("missing_column", ["in/missing_col.csv"], rejects="rej.csv")
case("duplicate_column", ["in/dup_col.csv"], rejects="rej.csv")
case("ovf_bound", ["in/ovf_bound.csv"] + E)
case("ovf_over_rejects", ["in/ovf_over.csv"] + E, rejects="rej.csv")
case("ovf_over_fatal", ["in/ovf_over.csv"] + E)
case("big_entity_totals", ["in/bigent.csv"] + E + ["--rules", "in/ref/rules_tiny.json"])
case("negative", ["in/neg.csv"] + E)
case("negative_asof", ["in/neg.csv"] + E + ["--as-of", "2025-04-01"])
case("negative_tiny", ["in/neg.csv"] + E + ["--rules", "in/ref/rules_tiny.json"])
case("tier3", ["in/tier3.csv"] + E)
case("stress1_tiny", ["in/stress1.csv"] + E + ["--rules", "in/ref/rules_tiny.json"])
case("stress1_bundled", ["in/stress1.csv"] + E)
case("stress2_allpaths_g2g", ["in/stress2.csv"] + E + ["--rules", "in/ref/rules_allpaths.json", "--countries", "in/ref/countries_g2g.csv"], rejects="rej.csv")
case("stress3_window_chips", ["in/stress3.csv"] + E + ["--rules", "in/ref/rules_window.json", "--chips", "in/ref/chips_alt.csv"], rejects="rej.csv")
case("stress3_fatal", ["in/stress3.csv"] + E)
case("stress_multi", ["in/stress1.csv", "in/stress2.csv", "in/stress4.csv"] + E + ["--rules", "in/ref/rules_tiny.json", "--as-of", "2026-06-30"])
case("rules_copy", g("small_fb") + ["--rules", "in/ref/rules_copy.json"])
case("rules_tiny_big", g("big_fb") + ["--rules", "in/ref/rules_tiny.json"])
case("rules_window_big", g("big_fb") + ["--rules", "in/ref/rules_window.json"])
case("rules_bad", g("small_fb") + ["--rules", "in/ref/rules_bad.json"])
case("countries_g2g_big", g("big_fb") + ["--countries", "in/ref/countries_g2g.csv"], rejects="rej.csv")
case("chips_alt_big", g("big_plain") + ["--chips", "in/ref/chips_alt.csv"])
case("ents_nocol", [G["small_fb"][0], "--entities", "in/ref/ents_nocol.csv"])
case("ents_nveu_nocol", [G["small_fb"][0], "--entities", "in/ref/ents_nveu_nocol.csv"])
case("asof_empty_string", g("small_fb") + ["--as-of", ""])
REPORT_FILES = ["summary.json", "by_country.csv", "by_entity.csv", "by_entity_country.csv", "by_chip.csv",
                "by_exporter.csv", "uveu_shares.csv", "findings.csv"]
def pre_report(scratch, extra=False):
    os.makedirs(os.path.join(scratch, "out"))
    for f in REPORT_FILES:
        with open(os.path.join(scratch, "out", f), "w") as fh: fh.write("old\n")
    if extra:
        with open(os.path.join(scratch, "out", "notes.txt"), "w") as fh: fh.write("keep me\n")
case("out_replaces_earlier", g("small_fb"), setup=lambda s: pre_report(s), variants=("out",))
case("out_with_foreign_file", g("small_fb"), setup=lambda s: pre_report(s, True), variants=("out",))

if FILTER:
    CASES = [c for c in CASES if re.search(FILTER, c["name"])]

# ---------------------------------------------------------------- running
def command(c, v, rid):
    a = [BIN, "report"] + c["args"]
    if v == "out": a += ["--out", "run/%s/out" % rid]
    else: a += ["--format", v]
    if c["rejects"] == "IN_OUT":
        a += ["--rejects", ("run/%s/out/rejects.csv" if v == "out" else "run/%s/rejects.csv") % rid]
    elif c["rejects"]:
        a += ["--rejects", "run/%s/%s" % (rid, c["rejects"])]
    if c["max_rejects"] is not None: a += ["--max-rejects", str(c["max_rejects"])]
    return a

ST_TARGET = os.environ.get("DIFF_SELFTEST_CASE") or ("bad_rejects" if SELFTEST == "rejects" else "gen_small_fb")

def flip(path):
    with open(path, "rb") as f: b = bytearray(f.read())
    i = len(b) // 2
    b[i] = ord("1") if b[i] != ord("1") else ord("2")
    with open(path, "wb") as f: f.write(b)

def perturb(c, v, dest):
    """DIFF_SELFTEST: damage side B's result of one run (see header)."""
    if c["name"] != ST_TARGET: return
    m = SELFTEST
    if m in ("1", "file") and v == "out": flip(os.path.join(dest, "files", "out", "findings.csv"))
    elif m == "missing" and v == "out": os.remove(os.path.join(dest, "files", "out", "by_chip.csv"))
    elif m == "stdout" and v == "json": flip(os.path.join(dest, "stdout"))
    elif m == "stderr" and v == "table":
        with open(os.path.join(dest, "stderr"), "ab") as f: f.write(b"capledger: selftest extra line\n")
    elif m == "rc" and v == "csv":
        with open(os.path.join(dest, "rc"), "w") as f: f.write("42\n")
    elif m == "rejects" and v == "csv": flip(os.path.join(dest, "files", "rej.csv"))

def run_side(c, v, rid, side, backend):
    scratch = P("run", rid)
    shutil.rmtree(scratch, ignore_errors=True); os.makedirs(scratch)
    if c["setup"]: c["setup"](scratch)
    cmd = command(c, v, rid) + ["--backend", backend]
    fin = open(P(c["stdin"]), "rb") if c["stdin"] else subprocess.DEVNULL
    t = time.time()
    try:
        p = subprocess.run(cmd, cwd=W, env=ENV, stdin=fin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
        rc, out, err = str(p.returncode), p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or b"", e.stderr or b""
    finally:
        if c["stdin"]: fin.close()
    dt = time.time() - t
    dest = P("res", rid, side)
    shutil.rmtree(dest, ignore_errors=True); os.makedirs(os.path.dirname(dest), exist_ok=True); os.makedirs(dest)
    os.rename(scratch, os.path.join(dest, "files"))
    for n, data in (("stdout", out), ("stderr", err)):
        with open(os.path.join(dest, n), "wb") as f: f.write(data)
    with open(os.path.join(dest, "rc"), "w") as f: f.write(rc + "\n")
    with open(os.path.join(dest, "cmd"), "w") as f: f.write(" ".join(cmd) + "\n")
    if SELFTEST and side == "B": perturb(c, v, dest)
    return dt

BACKEND_JSON = re.compile(rb'^(\s*"backend": )"[^"]*"', re.M)
def norm_file(name, data):
    if os.path.basename(name) == "summary.json": return BACKEND_JSON.sub(rb'\1"<BACKEND>"', data)
    return data
def norm_stdout(v, data):
    if v == "json": return BACKEND_JSON.sub(rb'\1"<BACKEND>"', data)
    if v == "table":
        first, nl, rest = data.partition(b"\n")
        return re.sub(rb"(  backend )\S+$", rb"\1<BACKEND>", first) + nl + rest
    return data
def norm_stderr(data):
    return b"".join(l for l in data.splitlines(True) if not l.startswith(b"capledger: backend"))
def norm_name(n): return re.sub(r"\.tmp\.\d+", ".tmp.<PID>", n)

def tree(root):
    m = {}
    for dp, dn, fn in os.walk(root):
        for f in fn:
            full = os.path.join(dp, f)
            m[norm_name(os.path.relpath(full, root))] = full
    return m

def excerpt(a, b):
    ta, tb = a.decode("utf-8", "replace").splitlines(), b.decode("utf-8", "replace").splitlines()
    off = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    lines = ["first difference at byte %d (A %d bytes, B %d bytes)" % (off, len(a), len(b))]
    d = [l for l in difflib.unified_diff(ta, tb, "A", "B", n=0, lineterm="")][2:]
    lines += [(l[:200] + ("..." if len(l) > 200 else "")) for l in d[:6]]
    if len(d) > 6: lines.append("... (%d more diff lines)" % (len(d) - 6))
    return lines

def compare(c, v, rid):
    A, B = P("res", rid, "A"), P("res", rid, "B")
    r = lambda p: open(p, "rb").read()
    diffs = []
    ra, rb_ = r(os.path.join(A, "rc")), r(os.path.join(B, "rc"))
    if ra != rb_: diffs.append(("exit code", ["A exit %s, B exit %s" % (ra.decode().strip(), rb_.decode().strip())]))
    for n, f in (("stdout", lambda d: norm_stdout(v, d)), ("stderr", norm_stderr)):
        a, b = f(r(os.path.join(A, n))), f(r(os.path.join(B, n)))
        if a != b: diffs.append((n, excerpt(a, b)))
    ta, tb = tree(os.path.join(A, "files")), tree(os.path.join(B, "files"))
    for n in sorted(set(ta) | set(tb)):
        if n not in tb: diffs.append((n, ["file only in A's output"])); continue
        if n not in ta: diffs.append((n, ["file only in B's output"])); continue
        a, b = norm_file(n, r(ta[n])), norm_file(n, r(tb[n]))
        if a != b: diffs.append((n, excerpt(a, b)))
    return diffs

def do_run(c, v):
    rid = "%s.%s" % (c["name"], v)
    t = run_side(c, v, rid, "A", BA) + run_side(c, v, rid, "B", BB)
    return v, compare(c, v, rid), t

print("# backend_diff: %s (%s), A=%s B=%s, workdir %s, %d jobs, %d cases%s" %
      (BIN, VERSION[0], BA, BB, W, JOBS, len(CASES), (", DIFF_SELFTEST=%s on %s" % (SELFTEST, ST_TARGET)) if SELFTEST else ""))
print("# inputs ready in %.1f s" % (time.time() - T0)); sys.stdout.flush()
ndiff = 0
slow = []
with cf.ThreadPoolExecutor(max_workers=JOBS) as ex:
    futs = [(c, [ex.submit(do_run, c, v) for v in c["variants"]]) for c in CASES]
    for c, fl in futs:
        res = [f.result() for f in fl]
        slow.append((sum(x[2] for x in res), c["name"]))
        bad = [(v, d) for v, d, _ in res if d]
        if not bad:
            print("same: %s" % c["name"])
        else:
            ndiff += 1
            v, d = bad[0]
            more = sum(len(x[1]) for x in bad) - 1
            print("DIFF: %s: %s/%s%s" % (c["name"], v, d[0][0], (" (+%d more differing streams)" % more) if more else ""))
            for l in d[0][1]: print("    " + l)
            print("    (outputs: %s/{A,B}; command: %s/A/cmd)" % (P("res", c["name"] + "." + v), P("res", c["name"] + "." + v)))
        sys.stdout.flush()
slow.sort(reverse=True)
print("# elapsed %.1f s; slowest cases (both sides, all variants): %s" %
      (time.time() - T0, ", ".join("%s %.1fs" % (n, t) for t, n in slow[:3])))
print("backend_diff: %d cases, %d identical, %d differ" % (len(CASES), len(CASES) - ndiff, ndiff))
sys.exit(1 if ndiff else 0)
PYEOF
)
python3 -c "$PY" "$BIN" "$WORKDIR" "$BA" "$BB" "$JOBS" "$FILTER"
rc=$?
case $rc in 0|1|2) exit $rc ;; *) echo "backend_diff: internal error (python exit $rc)" >&2; exit 2 ;; esac
