#!/usr/bin/env python3
"""bench/floor/race.py RESULTS [--docs FILE]: the tables of bench/floor/race.

Reads RESULTS/CONFIG-{closed,open}-rN.{json,load,stat0,stat1,metrics,server.log} and prints
Markdown: closed-loop saturation, open loop at half of each configuration's own rate, the
ratios (ternd ÷ floor, ternd ÷ ejabberd at its best of the two ack regimes), frames written per
message, and how busy the machine was. Best-of and median over the rounds, every round shown.
With --docs FILE it replaces what lies between the floor-race markers in FILE instead."""
import glob
import json
import os
import re
import statistics
import sys

NAMES = {
    "floor": "floor (tern-floor)",
    "ternd": "ternd (RocksDB)",
    "ejabberd-sparse": "ejabberd, sparse acks (`--xmpp-ack-every 10`)",
    "ejabberd-per-batch": "ejabberd, `<r/>` per batch (`--xmpp-ack-every 1`)",
}
ORDER = list(NAMES)


def load(results):
    runs = {}
    for path in sorted(glob.glob(os.path.join(results, "*-r*.json"))):
        m = re.match(r"(.+)-(closed|opensame|open|at\d+)-r(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        conf, scen, rnd = m.group(1), m.group(2), int(m.group(3))
        base = path[: -len(".json")]
        try:
            j = json.load(open(path))
        except (OSError, ValueError):
            continue
        run = {"json": j, "round": rnd}
        try:
            run["load1"] = float(open(base + ".load").read().split()[0])
        except (OSError, ValueError, IndexError):
            run["load1"] = None
        run["cores"] = core_busy(base)
        try:
            q = dict(kv.split("=") for kv in open(base + ".quiet").read().split())
            run["quiet"] = (int(q["busy"]), int(q["waited_s"]))
        except (OSError, ValueError, KeyError):
            run["quiet"] = None
        run["frames"] = frames_per_msg(conf, base)
        runs.setdefault((conf, scen), []).append(run)
    return runs


def core_busy(base):
    """Busy share of cpu0 and cpu1 over the whole tern-bench run, from /proc/stat."""
    def read(p):
        out = {}
        for line in open(p):
            f = line.split()
            if re.match(r"cpu\d+$", f[0]):
                v = [int(x) for x in f[1:]]
                idle = v[3] + v[4]
                out[f[0]] = (sum(v[:8]), idle)
        return out
    try:
        a, b = read(base + ".stat0"), read(base + ".stat1")
    except OSError:
        return {}
    res = {}
    for cpu in a:
        tot = b[cpu][0] - a[cpu][0]
        idle = b[cpu][1] - a[cpu][1]
        res[cpu] = (tot - idle) / tot if tot else 0
    return res


def frames_per_msg(conf, base):
    """Text frames the server wrote per message relayed, over the whole run."""
    if conf == "floor":
        try:
            m = re.search(r"messages=(\d+) frames_out=(\d+)", open(base + ".server.log").read())
        except OSError:
            return None
        if m and int(m.group(1)):
            return int(m.group(2)) / int(m.group(1))
    if conf == "ternd":
        try:
            t = open(base + ".metrics").read()
        except OSError:
            return None
        sent = re.search(r"^tern_messages_sent_total (\d+)", t, re.M)
        env = re.search(r"^tern_envelopes_delivered_total (\d+)", t, re.M)
        if sent and env and int(sent.group(1)):
            return (int(sent.group(1)) + int(env.group(1))) / int(sent.group(1))
    return None


def g(j, path, default=0.0):
    v = j
    for k in path.split("."):
        if not isinstance(v, dict) or k not in v:
            return default
        v = v[k]
    return v


def cpu_per_msg(j):
    """Server CPU µs per delivered message over the window (utime+stime, all threads)."""
    s = g(j, "server.cpu_s")
    d = g(j, "throughput.window_delivered")
    return s * 1e6 / d if d else 0.0


def split(j):
    """(user, system) µs per delivered message."""
    st, en = g(j, "server.start", {}), g(j, "server.end", {})
    d = g(j, "throughput.window_delivered")
    if not d or not st or not en:
        return (0.0, 0.0)
    return ((en["utime_s"] - st["utime_s"]) * 1e6 / d, (en["stime_s"] - st["stime_s"]) * 1e6 / d)


def fmt(v, nd=0):
    if v is None:
        return "–"
    return f"{v:,.{nd}f}"


def best_med(vals, lower_better):
    vals = [v for v in vals if v]
    if not vals:
        return None, None
    return (min(vals) if lower_better else max(vals)), statistics.median(vals)


def report(results):
    runs = load(results)
    confs = [c for c in ORDER if (c, "closed") in runs or (c, "open") in runs]
    machine = {}
    try:
        for line in open(os.path.join(results, "machine.txt")):
            k, _, v = line.strip().partition("=")
            machine[k] = v
    except OSError:
        pass
    out = []
    w = out.append
    loads = [r["load1"] for rs in runs.values() for r in rs if r["load1"] is not None]
    w(f"Run {machine.get('date', '?')} at commit `{machine.get('commit', '?')}` by `bench/floor/race` "
      f"({machine.get('rounds', '?')} rounds, {machine.get('elapsed_s', '?')} s, {machine.get('users', '?')} users; "
      f"ejabberd {machine.get('ejabberd', '-')}). Server on core 0, tern-bench on core 1, a fresh server per run; "
      f"rounds alternate the order. 1-minute load average at the start of the runs: "
      f"{fmt(min(loads), 2) if loads else '?'}–{fmt(max(loads), 2) if loads else '?'} "
      f"(the two programs under test make about 2 of it).")
    w("")
    # closed loop
    w("#### Closed loop: saturation, window 8 per user, receipts on")
    w("")
    w("| configuration | sent/s per round | best | median | server core | bench core | server CPU/msg (median) | frames written per msg | verified |")
    w("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    closed = {}
    for c in confs:
        rs = sorted(runs.get((c, "closed"), []), key=lambda r: r["round"])
        if not rs:
            continue
        rates = [g(r["json"], "throughput.sent_per_s") for r in rs]
        b, m = best_med(rates, False)
        cpus = [cpu_per_msg(r["json"]) for r in rs]
        closed[c] = {"best": b, "median": m, "cpu_best": best_med(cpus, True)[0], "cpu_med": best_med(cpus, True)[1]}
        fr = [r["frames"] for r in rs if r["frames"]]
        ok = all(g(r["json"], "verification.ok", False) for r in rs)
        w(f"| {NAMES[c]} | {' · '.join(fmt(x) for x in rates)} | {fmt(b)} | {fmt(m)} | "
          f"{fmt(statistics.median([100 * g(r['json'], 'server.cpu_util') for r in rs]))} % | "
          f"{fmt(statistics.median([100 * g(r['json'], 'bench.cpu_util') for r in rs]))} % | "
          f"{fmt(closed[c]['cpu_med'], 2)} µs | {fmt(statistics.median(fr), 2) if fr else '–'} | {'OK' if ok else 'FAILED'} |")
    w("")
    # open loop
    w("#### Open loop at half of each one's own closed-loop rate (median of the rounds)")
    w("")
    w("| configuration | rate | server CPU/msg per round | best | median | user + sys (best run) | p99 send→receipt (ms) best · median | p99.9 send→sent (ms) best · median | frames written per msg | verified |")
    w("| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |")
    opened = {}
    rows = [(c, "open") for c in confs]
    if ("floor", "opensame") in runs:
        rows.insert(1, ("floor", "opensame"))
    fixed = sorted({scen for (_, scen) in runs if scen.startswith("at")}, key=lambda x: -int(x[2:]))
    for scen in fixed:
        rows += [(c, scen) for c in ("floor", "ternd") if (c, scen) in runs]
    for c, scen in rows:
        rs = sorted(runs.get((c, scen), []), key=lambda r: r["round"])
        if not rs:
            continue
        label = NAMES[c] + (" at ternd's rate" if scen == "opensame" else "")
        key = c if scen == "open" else "floor-same" if scen == "opensame" else f"{c}-{scen}"
        if scen.startswith("at"):
            label = f"{NAMES[c]}, fixed rate"
        rate = g(rs[0]["json"], "scenario.target_rate")
        cpus = [cpu_per_msg(r["json"]) for r in rs]
        b, m = best_med(cpus, True)
        bi = cpus.index(b) if b in cpus else 0
        us, sy = split(rs[bi]["json"])
        p99 = [g(r["json"], "latency_us.send_to_receipt.p99") / 1000 for r in rs]
        p999 = [g(r["json"], "latency_us.send_to_sent.p99_9") / 1000 for r in rs]
        opened[key] = {"best": b, "median": m, "p99": best_med(p99, True), "p999": best_med(p999, True), "rate": rate}
        ok = all(g(r["json"], "verification.ok", False) for r in rs)
        frs = [r["frames"] for r in rs if r["frames"]]
        fr = fmt(statistics.median(frs), 2) if frs else "–"
        w(f"| {label} | {fmt(rate)} | {' · '.join(fmt(x, 2) for x in cpus)} µs | {fmt(b, 2)} µs | {fmt(m, 2)} µs | "
          f"{fmt(us, 2)} + {fmt(sy, 2)} µs | {fmt(opened[key]['p99'][0], 2)} · {fmt(opened[key]['p99'][1], 2)} | "
          f"{fmt(opened[key]['p999'][0], 2)} · {fmt(opened[key]['p999'][1], 2)} | {fr} | {'OK' if ok else 'FAILED'} |")
    w("")
    # ratios
    w("#### Ratios from this run (best-of · median)")
    w("")
    w("CPU per message: below 1 means ternd needs less. Throughput: above 1 means ternd does more.")
    w("ejabberd \"at its best\" is, per figure, the better of its two ack regimes.")
    w("")
    w("| ratio | closed-loop msg/s | closed-loop CPU/msg | open-loop CPU/msg | open-loop p99 send→receipt |")
    w("| --- | ---: | ---: | ---: | ---: |")

    def ratio(a, b):
        return a / b if a and b else None

    def row(label, peer_closed, peer_open):
        t_c, t_o = closed.get("ternd"), opened.get("ternd")
        if not (t_c and t_o and peer_closed and peer_open):
            return
        w(f"| {label} | {fmt(ratio(t_c['best'], peer_closed['best']), 2)}× · {fmt(ratio(t_c['median'], peer_closed['median']), 2)}× | "
          f"{fmt(ratio(t_c['cpu_best'], peer_closed['cpu_best']), 2)}× · {fmt(ratio(t_c['cpu_med'], peer_closed['cpu_med']), 2)}× | "
          f"{fmt(ratio(t_o['best'], peer_open['best']), 2)}× · {fmt(ratio(t_o['median'], peer_open['median']), 2)}× | "
          f"{fmt(ratio(t_o['p99'][0], peer_open['p99'][0]), 2)}× · {fmt(ratio(t_o['p99'][1], peer_open['p99'][1]), 2)}× |")

    row("ternd ÷ floor (each open loop at half its own rate)", closed.get("floor"), opened.get("floor"))
    row("ternd ÷ floor (open loop at the same rate, ternd's)", closed.get("floor"), opened.get("floor-same"))
    for scen in fixed:
        f_o, t_o = opened.get(f"floor-{scen}"), opened.get(f"ternd-{scen}")
        if f_o and t_o:
            w(f"| ternd ÷ floor, both open loop at {int(scen[2:]):,}/s | | | "
              f"{fmt(ratio(t_o['best'], f_o['best']), 2)}× · {fmt(ratio(t_o['median'], f_o['median']), 2)}× | "
              f"{fmt(ratio(t_o['p99'][0], f_o['p99'][0]), 2)}× · {fmt(ratio(t_o['p99'][1], f_o['p99'][1]), 2)}× |")
    ej = [c for c in ("ejabberd-sparse", "ejabberd-per-batch") if c in closed and c in opened]
    if ej:
        pc = {"best": max(closed[c]["best"] for c in ej), "median": max(closed[c]["median"] for c in ej),
              "cpu_best": min(closed[c]["cpu_best"] for c in ej), "cpu_med": min(closed[c]["cpu_med"] for c in ej)}
        po = {"best": min(opened[c]["best"] for c in ej), "median": min(opened[c]["median"] for c in ej),
              "p99": (min(opened[c]["p99"][0] for c in ej), min(opened[c]["p99"][1] for c in ej))}
        row("ternd ÷ ejabberd at its best", pc, po)
        for c in ej:
            row(f"ternd ÷ {NAMES[c]}", closed[c], opened[c])
    w("")
    w("#### The machine during each run (share of each core busy, everything on it, whole tern-bench run)")
    w("")
    w("| run | load avg (1 min) at start | machine busy just before (waited) | core 0 (server) | core 1 (tern-bench) |")
    w("| --- | ---: | ---: | ---: | ---: |")
    for c in confs:
        for scen in ["closed", "open", "opensame"] + fixed:
            for r in sorted(runs.get((c, scen), []), key=lambda r: r["round"]):
                co = r["cores"]
                q = f"{r['quiet'][0]} % ({r['quiet'][1]} s)" if r["quiet"] else "–"
                w(f"| {c} {scen} r{r['round']} | {fmt(r['load1'], 2)} | {q} | {fmt(100 * co.get('cpu0', 0))} % | {fmt(100 * co.get('cpu1', 0))} % |")
    w("")
    return "\n".join(out)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    text = report(sys.argv[1])
    if len(sys.argv) == 4 and sys.argv[2] == "--docs":
        path = sys.argv[3]
        doc = open(path).read()
        begin, end = "<!-- floor-race:begin (bench/floor/race writes this part) -->", "<!-- floor-race:end -->"
        if begin not in doc or end not in doc:
            sys.exit(f"race.py: {path} has no floor-race markers")
        head, rest = doc.split(begin, 1)
        _, tail = rest.split(end, 1)
        open(path, "w").write(head + begin + "\n" + text + "\n" + end + tail)
        print(f"race.py: wrote {path}", file=sys.stderr)
    print(text)


if __name__ == "__main__":
    main()
