#!/usr/bin/env python3
"""What a data scientist would write instead of capledger's GPU aggregation: PyTorch index_add_.

Builds the issue-3 shape on the GPU (entity = floor(E * u^3), 249 countries uniform, 7 chips,
quantity 1..64, 1,096 days; with --countries-per-entity K, each entity ships to K countries of
its own, uniformly: the sparse shape), times index_add_ for country, entity, (entity, country) and
(country, day) tpp totals with CUDA events, and measures the device-to-device copy bandwidth
in the same run. With --three-sums it also times the same four groupings with the three sums
capledger keeps per cell (records, units, tpp: one index_add_ of an n x 3 tensor per grouping),
the peer for what capledger's dense pass computes rather than for tpp alone. With --dump FILE it also writes the columns (little-endian: int64 n, then
int32 date[n], int32 entity[n], uint16 country[n], uint16 chip[n], uint8 pathway[n],
int64 quantity[n], int64 tpp[n]) and the totals' checksums, so that
`aggregate_bench --verify FILE` can check that capledger computes the same totals.

Usage: python3 bench/torch_peer.py --lines 400000000 --entities 100000 [--countries-per-entity 3]
       [--three-sums] [--dump cols.bin]
"""
import argparse
import json
import sys

import torch


def checksum(values: torch.Tensor) -> int:
    """Summary of a totals vector: sum of (index + 1) * value in wrapping 64-bit arithmetic."""
    idx = torch.arange(1, values.numel() + 1, device=values.device, dtype=torch.int64)
    return int((idx * values).sum().item()) % (1 << 64)


def timed(fn, repeats=5):
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        best = min(best, start.elapsed_time(stop))
    return best


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1 << 24)
    parser.add_argument("--entities", type=int, default=100000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--countries-per-entity", type=int, default=0)
    parser.add_argument("--three-sums", action="store_true")
    parser.add_argument("--dump", default="")
    args = parser.parse_args()
    dev = torch.device("cuda")
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    n, countries, days = args.lines, 249, 1096
    u = torch.rand(n, generator=gen, device=dev, dtype=torch.float64)
    entity = (args.entities * u * u * u).floor().to(torch.int32).clamp_(max=args.entities - 1)
    del u
    if args.countries_per_entity > 0:
        # Each entity's countries: a start of its own, then steps of 37 (coprime to 249).
        first = torch.randint(0, countries, (args.entities,), generator=gen, device=dev, dtype=torch.int32)
        pick = torch.randint(0, args.countries_per_entity, (n,), generator=gen, device=dev, dtype=torch.int32)
        country = (first[entity.long()] + 37 * pick) % countries
        del pick
    else:
        country = torch.randint(0, countries, (n,), generator=gen, device=dev, dtype=torch.int32)
    date = torch.randint(0, days, (n,), generator=gen, device=dev, dtype=torch.int32) + 20101  # 2025-01-13
    chip = torch.randint(0, 7, (n,), generator=gen, device=dev, dtype=torch.int32)
    quantity = torch.randint(1, 65, (n,), generator=gen, device=dev, dtype=torch.int64)
    tpp = quantity * 15832

    e64, c64, d64 = entity.long(), country.long(), (date - 20101).long()
    out = {}

    def totals():
        out["country"] = torch.zeros(countries, dtype=torch.int64, device=dev).index_add_(0, c64, tpp)
        out["entity"] = torch.zeros(args.entities, dtype=torch.int64, device=dev).index_add_(0, e64, tpp)
        out["pair"] = torch.zeros(args.entities * countries, dtype=torch.int64, device=dev).index_add_(
            0, e64 * countries + c64, tpp)
        out["country_day"] = torch.zeros(countries * days, dtype=torch.int64, device=dev).index_add_(
            0, c64 * days + d64, tpp)

    ms_totals = timed(totals)
    ms_three, three_error = None, None
    if args.three_sums:
        try:
            sums = torch.stack((torch.ones_like(quantity), quantity, tpp), dim=1)  # n x 3 int64
            keys = (c64, e64, e64 * countries + c64, c64 * days + d64)
            sizes = (countries, args.entities, args.entities * countries, countries * days)
            three = {}

            def three_sums():
                for name, key, size in zip(("country", "entity", "pair", "country_day"), keys, sizes):
                    three[name] = torch.zeros((size, 3), dtype=torch.int64, device=dev).index_add_(0, key, sums)

            ms_three = timed(three_sums)
            del sums, keys
        except RuntimeError as e:  # out of memory: the other figures still count
            three_error, three = str(e).splitlines()[0], {}
        # The tpp column of each must be the tpp totals above.
        for name, table in three.items():
            if not torch.equal(table[:, 2], out[name]):
                raise SystemExit(f"three sums disagree with the tpp totals for {name}")
        del three
        torch.cuda.empty_cache()
    ms_country = timed(lambda: torch.zeros(countries, dtype=torch.int64, device=dev).index_add_(0, c64, tpp))
    buf = torch.empty(n * 8, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(buf)
    ms_copy = timed(lambda: dst.copy_(buf))
    copy_gbs = 2 * buf.numel() / ms_copy / 1e6  # bytes read + written
    result = {
        "device": torch.cuda.get_device_name(),
        "lines": n,
        "entities": args.entities,
        "countries_per_entity": args.countries_per_entity,
        "index_add_all_ms": ms_totals,
        "index_add_country_ms": ms_country,
        "index_add_three_sums_ms": ms_three,
        "index_add_three_sums_error": three_error,
        "copy_gbs_read_plus_write": copy_gbs,
        "checksums": {k: checksum(v) for k, v in out.items()},
        "tpp_total": int(out["country"].sum().item()),
    }
    print(json.dumps(result, indent=2))
    if args.dump:
        with open(args.dump, "wb") as f:
            f.write(int(n).to_bytes(8, "little"))
            for col, dtype in ((date, torch.int32), (entity, torch.int32), (country, torch.int16),
                               (chip, torch.int16), (torch.zeros_like(chip), torch.uint8),
                               (quantity, torch.int64), (tpp, torch.int64)):
                f.write(col.to(dtype).cpu().numpy().tobytes())
        with open(args.dump + ".json", "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
