#!/usr/bin/env python3
"""CPU time of each of a command's threads, by thread name: which stage of capledger's ingest
pipeline sets the pace on a many-core host (issue 5), where perf may not be installed.

capledger names its threads by role (`detail::name_this_thread`): the main thread (`capledger`)
merges the parsed chunks, `cl-parse` parse them, `cl-sha256` hashes the input, `cl-aggregate`
aggregates the streamed batches, `cl-reparse` reads the crossing days again, `cl-idsearch` and
`cl-populate` are short-lived helpers. The busiest thread of a one-thread stage close to the
wall time is the serial stage that bounds the run.

Polls /proc/PID/task/*/stat every 10 ms while the command runs (a thread's last few ms before it
exits are lost), then prints, per name: threads seen, CPU seconds summed, and the busiest thread.

With --timeline S it also prints, every S seconds of the run, the CPU seconds each thread name
used in that step: where the run is in its phases (ingest, aggregation, output) and which
stage is busy in each.

Usage: bench/thread_times.py [--interval S] [--timeline S] -- COMMAND [ARG...]
Exit status: the command's.
"""
import argparse
import os
import subprocess
import sys
import time


def sample(pid, ticks, names):
    """Adds the CPU ticks (user + system) and name of every live thread of @pid."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # the thread exited between the listing and the read
        # The name is in parentheses and may hold spaces; the fields after it are numbered from 3.
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        used = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        ticks[tid] = max(ticks.get(tid, 0), used)
        names[tid] = name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("--timeline", type=float, default=0.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    hz = os.sysconf("SC_CLK_TCK")
    ticks, names = {}, {}
    start = time.monotonic()
    child = subprocess.Popen(command)
    next_step, shown = start + args.timeline, {}

    def show_step():
        step = {}
        for tid, used in ticks.items():
            step[names[tid]] = step.get(names[tid], 0) + used - shown.get(tid, 0)
            shown[tid] = used
        busy = ", ".join(f"{name} {t / hz:.2f}" for name, t in sorted(step.items(), key=lambda i: -i[1]) if t)
        print(f"timeline: {time.monotonic() - start:6.2f} s: {busy or 'idle'}", file=sys.stderr)

    while child.poll() is None:
        sample(child.pid, ticks, names)
        if args.timeline > 0 and time.monotonic() >= next_step:
            show_step()
            next_step += args.timeline
        time.sleep(args.interval)
    if args.timeline > 0:
        show_step()  # what the last samples saw since the last step
    wall = time.monotonic() - start
    by_name = {}
    for tid, used in ticks.items():
        by_name.setdefault(names[tid], []).append(used / hz)
    print(f"threads: wall {wall:.2f} s", file=sys.stderr)
    for name, times in sorted(by_name.items(), key=lambda item: -sum(item[1])):
        print(f"threads: {name:<14} {len(times):3d} thread(s) {sum(times):7.2f} CPU s, busiest {max(times):6.2f} s"
              f" ({100 * max(times) / wall:3.0f}% of wall)", file=sys.stderr)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
