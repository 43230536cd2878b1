#!/usr/bin/env python3
"""Every input text capledger writes back reads back as written, by Python's csv and json readers.

Shipment ids, entity ids, order ids, exporters and chip keys holding commas, quotes, CR, LF, CRLF,
tabs, NUL, C0 and C1 controls, U+2028/U+2029, bidirectional controls, a byte-order mark inside or
at the front, backslashes, surrounding spaces and a field longer than a 256 KiB chunk go through
`report` (the --out files; --format csv, json and table), `ledger ingest`, `ledger report`,
`ledger balances`, `reconcile` and `check`. Each must come back unchanged from every data output
(a chip outside the chips table upper-cased in ASCII, README), and through terminal_text's escapes
(undone here) from the table; no text for people (stdout tables, stderr) may hold a byte a terminal
acts on. Text that is not UTF-8 (overlong, surrogate, cut short, past U+10FFFF, a stray byte) is
refused at its file:line:column: a log's line as BAD_ENCODING with its bytes kept in the rejects
file's `raw`, an entities file or an inventory as a fatal BAD_ENCODING.

usage: text_roundtrip.py CAPLEDGER
"""
import csv
import io
import json
import os
import re
import subprocess
import sys
import tempfile

CAPLEDGER = os.path.abspath(sys.argv[1])
csv.field_size_limit(1 << 30)

TEXTS = ['a,b', 'say "hi"', 'a\rb', 'a\nb', 'a\r\nb', 'a\tb', 'a\0b', '\x1b[2Kx', 'a\x7fb', 'a\x85b\x9b',
         'a\u2028b\u2029c', 'a\u202eb', 'a\u202fb\u3000c', 'a\ufeffb', '\ufeffab', 'a\\x41', ' ab', 'ab ',
         '\tab', 'ab\t', '"', 'a;b', 'éß中', 'L' * 300000, 'y\n' * 150000]
NOT_UTF8 = [b'a\xc0\xafb', b'a\xed\xa0\x80b', b'a\xe2\x82', b'\x80a', b'\xf4\x90\x80\x80', b'\xf5\x80']
FIELDS = ['shipment_id', 'entity', 'order_id', 'exporter', 'chip']
# What a terminal acts on (terminal_text.hpp), \n aside: it ends a message's lines.
TERMINAL = re.compile('[\x00-\x09\x0b-\x1f\x7f-\x9f\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000\u00ad\u061c'
                      '\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]')
failures = []


def fail(what):
    failures.append(what)
    print('FAIL', what[:400])


def cell(value):
    return b'"' + value.replace(b'"', b'""') + b'"'


def csv_bytes(rows):
    return b''.join(b','.join(cell(c if isinstance(c, bytes) else c.encode()) for c in r) + b'\n' for r in rows)


def run(where, *args, expect=(0, 1)):
    p = subprocess.run([CAPLEDGER, *args], capture_output=True, cwd=where)
    for name, text in (('stderr', p.stderr), ('table', p.stdout if 'table' in args else b'')):
        try:
            shown = text.decode('utf-8')
        except UnicodeDecodeError as e:
            fail(f'{args[0]} {name} is not UTF-8: {e}')
            continue
        found = TERMINAL.search(shown)
        if found:
            fail(f'{args[0]} {name} holds {found.group()!r}')
    if p.returncode not in expect:
        fail(f'{" ".join(args)}: exit {p.returncode}: {p.stderr.decode("utf-8", "replace")[-300:]}')
    return p


def read_csv(data):
    return list(csv.DictReader(io.StringIO(data.decode('utf-8'), newline='')))


def column(data, name):
    return [row[name] for row in read_csv(data)]


def upper_ascii(text):
    return ''.join(c.upper() if 'a' <= c <= 'z' else c for c in text)


def unescape(shown):
    """terminal_text's escapes undone: \\\\, \\xHH (a byte), \\uXXXX."""
    out, at = bytearray(), 0
    while at < len(shown):
        if shown[at] != '\\':
            out += shown[at].encode()
            at += 1
        elif shown[at + 1] == '\\':
            out += b'\\'
            at += 2
        elif shown[at + 1] == 'x':
            out.append(int(shown[at + 2:at + 4], 16))
            at += 4
        else:
            out += chr(int(shown[at + 2:at + 6], 16)).encode()
            at += 6
    return out.decode('utf-8')


def expect_same(what, got, want):
    got, want = sorted(got, key=repr), sorted(want, key=repr)  # a short row reads None
    if got != want:
        fail(f'{what}: got {[v[:30] if v else v for v in got]}, want {[v[:30] for v in want]}')


HEADER = ['shipment_id', 'date', 'entity', 'country', 'chip', 'quantity', 'pathway', 'order_id', 'exporter',
          'tpp_per_unit']


def line(text, date='2025-03-01', quantity='5000'):
    # LPP over the per-order limit: a finding names the entity, the order and the shipment.
    return [text, date, text, 'AE', text, quantity, 'LPP', text, text, '15832']


with tempfile.TemporaryDirectory() as work:
    def put(name, data):
        with open(os.path.join(work, name), 'wb') as f:
            f.write(data)

    def get(name):
        with open(os.path.join(work, name), 'rb') as f:
            return f.read()

    put('log.csv', csv_bytes([HEADER] + [line(t) for t in TEXTS]))
    put('entities.csv', csv_bytes([['entity', 'hq_country', 'status', 'nveu_countries']] +
                                  [[t, 'US', 'UVEU', ''] for t in TEXTS]))
    chips = [upper_ascii(t) for t in TEXTS]
    report = ['log.csv', '--entities', 'entities.csv']
    run(work, 'report', *report, '--out', 'out')
    findings = read_csv(get('out/findings.csv'))
    orders = [f for f in findings if f['rule'] == 'LPP_ORDER_LIMIT']
    for name in ('entity', 'order_id', 'shipment_id'):
        expect_same(f'findings.csv {name}', [f[name] for f in orders], TEXTS)
    for file, name, want in (('by_entity.csv', 'entity', TEXTS), ('by_entity_country.csv', 'entity', TEXTS),
                             ('uveu_shares.csv', 'entity', TEXTS), ('by_exporter.csv', 'exporter', TEXTS),
                             ('by_chip.csv', 'chip', chips)):
        expect_same(f'{file} {name}', column(get(f'out/{file}'), name), want)
    shown = run(work, 'report', *report, '--format', 'csv').stdout
    expect_same('--format csv', [f['shipment_id'] for f in read_csv(shown) if f['rule'] == 'LPP_ORDER_LIMIT'],
                TEXTS)
    shown = json.loads(run(work, 'report', *report, '--format', 'json').stdout.decode('utf-8'))
    expect_same('--format json', [f['order_id'] for f in shown['findings'] if f['rule'] == 'LPP_ORDER_LIMIT'],
                TEXTS)
    table = run(work, 'report', *report, '--format', 'table').stdout.decode('utf-8')
    expect_same('--format table', [unescape(m) for m in re.findall(r'LPP_ORDER_LIMIT  entity=(.*?)  country=', table)],
                TEXTS)

    run(work, 'ledger', 'init', 'l.db')
    run(work, 'ledger', 'ingest', 'l.db', 'log.csv', '--entities', 'entities.csv')
    run(work, 'ledger', 'report', 'l.db', '--out', 'ledger-out')
    for file in os.listdir(os.path.join(work, 'out')):
        if file != 'summary.json' and get(f'out/{file}') != get(f'ledger-out/{file}'):
            fail(f'ledger report {file} differs from report')
    for replay in ([], ['--replay']):
        rows = read_csv(run(work, 'ledger', 'balances', 'l.db', '--format', 'csv', *replay).stdout)
        expect_same(f'balances {replay} entity', [r['entity'] for r in rows if r['cap'] == 'LPP_ANNUAL'], TEXTS)
        expect_same(f'balances {replay} order_id', [r['order_id'] for r in rows if r['cap'] == 'LPP_ORDER'], TEXTS)
        run(work, 'ledger', 'balances', 'l.db', '--format', 'table', *replay)
    put('inventory.csv', csv_bytes([['entity', 'country', 'chip', 'units']] + [[t, 'AE', t, '1'] for t in TEXTS]))
    for replay in ([], ['--replay']):
        rows = read_csv(run(work, 'reconcile', 'l.db', '--inventory', 'inventory.csv', *replay).stdout)
        expect_same(f'reconcile {replay} entity', [r['entity'] for r in rows], TEXTS)
        expect_same(f'reconcile {replay} chip', [r['chip'] for r in rows], chips)
    put('proposed.csv', csv_bytes([HEADER] + [['P' + str(i)] + line(t, '2025-03-02', '1')[1:]
                                              for i, t in enumerate(TEXTS)]))
    for replay in ([], ['--replay']):
        rows = read_csv(run(work, 'check', 'l.db', '--proposed', 'proposed.csv', *replay).stdout)
        expect_same(f'check {replay} entity', list({r['line']: r['entity'] for r in rows}.values()), TEXTS)

    # Not UTF-8: each line's field at its column, the line's bytes kept in `raw`.
    good = line('g')
    lines, where = [], []
    for bad in NOT_UTF8:
        for field in FIELDS:
            fields = [c.encode() for c in good]
            fields[0] = f'n{len(lines)}'.encode()
            fields[HEADER.index(field)] = bad
            lines.append(fields)
            column_of = 1 + sum(len(cell(c)) + 1 for c in fields[:HEADER.index(field)])
            where.append((str(len(lines) + 1), str(column_of), csv_bytes([fields]).rstrip(b'\n')))
    put('bad.csv', csv_bytes([HEADER]) + b''.join(csv_bytes([f]) for f in lines))
    run(work, 'report', 'bad.csv', '--rejects', 'rejects.csv', '--out', 'bad-out')
    rejects = list(csv.DictReader(io.StringIO(get('rejects.csv').decode('utf-8', 'surrogateescape'), newline='')))
    got = [(r['line'], r['column'], r['raw'].encode('utf-8', 'surrogateescape')) for r in rejects
           if r['reason'] == 'BAD_ENCODING']
    if got != where or len(rejects) != len(where):
        fail(f'rejects: got {got[:3]}..., want {where[:3]}...')
    for i, bad in enumerate(NOT_UTF8):
        put('entities.csv', b'entity,hq_country,status\nE1,US,NONE\n' + cell(bad) + b',US,NONE\n')
        p = run(work, 'report', 'log.csv', '--entities', 'entities.csv', expect=(2,))
        if b'entities.csv:3:1: BAD_ENCODING' not in p.stderr:
            fail(f'entities file {bad}: {p.stderr[-200:]}')
        put('inventory.csv', b'entity,country,chip,units\nE1,AE,H100-SXM,1\n' + cell(bad) + b',AE,' + cell(bad) + b',1\n')
        p = run(work, 'reconcile', 'l.db', '--inventory', 'inventory.csv', expect=(2,))
        if b'inventory.csv:3:1: BAD_ENCODING: entity is not valid UTF-8' not in p.stderr:
            fail(f'inventory {bad}: {p.stderr[-200:]}')

print(f'{len(failures)} failure(s)')
sys.exit(1 if failures else 0)
