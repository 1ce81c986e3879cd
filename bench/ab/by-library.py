#!/usr/bin/env python3
# bench/ab/by-library.py OLD.out NEW.out: two callgrind profiles' self costs summed by library
# (RocksDB, libc, cJSON, ...) and by tern layer (src/<layer>/), side by side.
import subprocess,re,sys
def load(f):
    out=subprocess.run(['callgrind_annotate','--threshold=100','--tree=none','--auto=no',f],capture_output=True,text=True).stdout
    groups={}
    for l in out.split('\n'):
        m=re.match(r'\s*([\d,]+) \([ \d.]+%\)\s+(.*)',l)
        if not m or 'PROGRAM TOTALS' in l: continue
        v=int(m.group(1).replace(',','')); name=m.group(2)
        if 'librocksdb' in name or 'libsnappy' in name: g='rocksdb'
        elif 'libcjson' in name: g='cjson'
        elif 'libc.so' in name: g='libc'
        elif 'ld-linux' in name: g='ld.so'
        elif 'libuv' in name: g='libuv'
        elif re.search(r'src/(\w+)/',name): g='tern:'+re.search(r'src/(\w+)/',name).group(1)
        else: g='other'
        groups[g]=groups.get(g,0)+v
    return groups
a=load(sys.argv[1]); b=load(sys.argv[2])
for k in sorted(set(a)|set(b), key=lambda k:-(b.get(k,0))):
    print(f"{k:14s} old {a.get(k,0)/1e6:8.1f}M new {b.get(k,0)/1e6:8.1f}M  {(b.get(k,0)-a.get(k,0))/1e6:+7.1f}M")
