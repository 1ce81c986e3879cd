#!/usr/bin/env python3
# Formats bench/ab/s1-alternating's lines: msg/s, server CPU use, server CPU per message.
import sys,json
for l in sys.stdin:
    t,_,j=l.partition(' ')
    try:
        d=json.loads(j); print(t, round(d['throughput']['sent_per_s']), 'msg/s', 'cpu_util', round(d['server']['cpu_util'],2), 'cpu/msg us', round(d['server']['cpu_s']/max(1,d['throughput']['window_sent'])*1e6,1), flush=True)
    except Exception as e: print(l[:200], flush=True)
