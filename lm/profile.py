"""The top ops of a run's jax.profiler trace (train.profile_steps), read from the trace file.

    python -m lm.profile runs/quickstart              # the newest trace in WORKDIR/profile
    python -m lm.profile path/to/host.xplane.pb --top=30 --json

For each plane of the trace (/host:CPU; /device:GPU:0 or /device:TPU:0 on an accelerator), the
events are summed by name, as self time: an event's duration less that of the events nested in
it on the same line (thread or stream), so a kernel inside an executor call counts once, where
it runs. An XLA op is named with its program (jit_train_step:fusion.12), whose ops' self times
are also summed. Python frames ("$..." events) and the profiler's own bookkeeping are left out;
the per-line totals say how the window's time divides between compiling, executing, waiting
and the rest. A trace that does not read whole (a run is writing it) is skipped, with a
warning, for the one before.
TensorBoard's profile plugin and xprof show the same trace interactively.
"""
import collections
import glob
import json
import os
import sys

from jax.profiler import ProfileData

from core import cli
from core.run_format import DamagedFile, damaged
from lm.train import workdir as run_files

BOOKKEEPING = ("ThreadpoolListener::",)
TRACE_FIX = ("if a run is profiling, wait for its profile window (train.profile_steps) to end; "
             "else profile again")


def read_newest(path: str) -> tuple[str, ProfileData]:
    """(trace file, its ProfileData): `path` if it is a trace file, else the newest *.xplane.pb
    under it (a workdir's profile/ included) that reads whole; a newer one that does not (a run
    is writing it, or it is damaged) is skipped with a warning. FileNotFoundError names what to
    run when there is none; DamagedFile, a trace file given that does not read."""
    if os.path.isfile(path):
        return path, read_trace(path)
    traces = sorted(glob.glob(os.path.join(path, "**", "*.xplane.pb"), recursive=True),
                    key=os.path.getmtime, reverse=True)
    if not traces:
        raise FileNotFoundError(f"no *.xplane.pb under {path}: train with "
                                "--config.train.profile_steps=FIRST:LAST (e.g. 20:25) to write "
                                f"one to WORKDIR/{run_files.PROFILE}")
    for trace in traces[:-1]:
        try:
            return trace, read_trace(trace)
        except DamagedFile as err:
            print(f"warning: {err}; reading the one before", file=sys.stderr)
    return traces[-1], read_trace(traces[-1])


def read_trace(trace: str) -> ProfileData:
    """The trace file `trace`; DamagedFile if it does not parse or holds no plane (a run's
    profile window is writing it, or it is damaged)."""
    try:
        data = ProfileData.from_file(trace)
    except RuntimeError as err:  # "Failed to parse XSpace from array"
        raise damaged(trace, str(err), TRACE_FIX) from err
    if not list(data.planes):
        raise damaged(trace, "it holds no plane", TRACE_FIX)
    return data


def self_times(events) -> tuple[dict, dict, dict]:
    """({key: self ns}, {key: total ns}, {key: count}) of one line's events (start ns,
    duration ns, key), nesting found from their start times and durations."""
    own, total, count = collections.Counter(), collections.Counter(), collections.Counter()
    stack = []  # (end ns, name) of the enclosing events
    for start, duration, name in sorted(events, key=lambda e: (e[0], -e[1])):
        while stack and stack[-1][0] <= start:
            stack.pop()
        if stack:
            own[stack[-1][1]] -= duration
        own[name] += duration
        total[name] += duration
        count[name] += 1
        stack.append((start + duration, name))
    return own, total, count


def _op_key(event) -> tuple[str, str]:
    """(XLA program, name) of an event: the program is its "hlo_module" stat ("" for events
    that are not XLA ops)."""
    return next((value for key, value in event.stats if key == "hlo_module"), ""), event.name


def summarize(trace: ProfileData, top: int) -> list[dict]:
    """One dict per plane with events: its name, the span from its first event's start to its
    last one's end, the busy time of each line, the self time of each XLA program's ops, and the
    `top` event names by self time (ms), with their total time and count."""
    planes = []
    for plane in trace.planes:
        own, total, count, lines = (collections.Counter(), collections.Counter(),
                                    collections.Counter(), {})
        first, last = float("inf"), 0
        for line in plane.lines:
            events = [(e.start_ns, e.duration_ns, _op_key(e)) for e in line.events
                      if not e.name.startswith("$") and not e.name.startswith(BOOKKEEPING)]
            if not events:
                continue
            first = min(first, min(start for start, _, _ in events))
            last = max(last, max(start + duration for start, duration, _ in events))
            line_own, line_total, line_count = self_times(events)
            own.update(line_own)
            total.update(line_total)
            count.update(line_count)
            lines[line.name] = lines.get(line.name, 0) + sum(line_own.values()) / 1e6
        if own:
            ops = [dict(name=f"{key[0]}:{key[1]}" if key[0] else key[1], self_ms=ns / 1e6,
                        total_ms=total[key] / 1e6, count=count[key])
                   for key, ns in own.most_common(top)]
            programs = collections.Counter()
            for (program, _), ns in own.items():
                if program:
                    programs[program] += ns / 1e6
            planes.append(dict(plane=plane.name, span_ms=(last - first) / 1e6, lines_ms=lines,
                               programs_ms=dict(programs.most_common()), ops=ops))
    return planes


PARSER = cli.parser("python -m lm.profile", __doc__)
PARSER.add_argument("path", help="a run's workdir, its profile/ folder or a .xplane.pb")
PARSER.add_argument("--top", type=int, default=15, help="ops listed per plane")
PARSER.add_argument("--json", action="store_true", help="one JSON line per plane")


@cli.main(FileNotFoundError)
def main(argv) -> int:
    args = PARSER.parse_args(argv)
    path, trace = read_newest(args.path)
    print(f"trace: {path}", file=sys.stderr)
    for plane in summarize(trace, args.top):
        if args.json:
            print(json.dumps(plane))
            continue
        print(f"{plane['plane']}: {plane['span_ms']:.1f} ms from the first event to the last; "
              "busy time per line (ms, self)")
        for name, ms in sorted(plane["lines_ms"].items(), key=lambda item: -item[1]):
            print(f"  {ms:10.1f}  {name}")
        for program, ms in [(p, ms) for p, ms in plane["programs_ms"].items() if ms >= 0.1]:
            print(f"  {ms:10.1f}  the ops of {program}")
        print(f"{plane['plane']}: top {len(plane['ops'])} ops by self time")
        print(f"  {'self ms':>10} {'total ms':>10} {'count':>6}  name")
        for op in plane["ops"]:
            print(f"  {op['self_ms']:10.2f} {op['total_ms']:10.2f} {op['count']:6d}  "
                  f"{op['name'][:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
