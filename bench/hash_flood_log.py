#!/usr/bin/env python3
# hash_flood_log.py MODE COLUMN N OUT : MODE collide|control; COLUMN id|entity|order|exporter
# collide: values of 1461 bytes whose hash_bytes are all equal (bytes 8-15 = k0^(n*k2): the
# first 16-byte block multiplies by 0, so bytes 0-7 are free). control: same shape, one byte off.
import sys, random
mode, col, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
L = 1461; S0 = 'Pi* IR89' if mode == 'collide' else 'Pi* IR8A'
rnd = random.Random(1)
alnum = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
seen = set()
def crafted():
    while True:
        a = ''.join(rnd.choice(alnum) for _ in range(8))
        if a not in seen:
            seen.add(a); return a + S0 + 'x' * (L - 16)
with open(out, 'w') as f:
    f.write('shipment_id,date,entity,country,chip,quantity,pathway,order_id,exporter\n')
    for i in range(n):
        sid = crafted() if col == 'id' else 'S%d' % i
        ent = crafted() if col == 'entity' else 'E%d' % (i % 50)
        pw = 'LPP' if col == 'order' else 'LICENSE'
        order = crafted() if col == 'order' else ''
        exp = crafted() if col == 'exporter' else 'NV'
        f.write('%s,2025-03-01,%s,AE,H100-SXM,1,%s,%s,%s\n' % (sid, ent, pw, order, exp))
