# bench/plots.gp: the baseline plots, one PNG with four panels. Called by bench/report.py:
#   gnuplot -e "datadir='DIR'; out='FILE.png'; nservers=3" bench/plots.gp
# DIR/bars.dat:    server s1_sent_per_s s3_kib_per_conn s2b_cpu_us_per_msg s4_drain_per_s
# DIR/latency.dat: percentile <ms per server...> (send→receipt in scenario 2)

if (!exists("datadir")) datadir = "."
if (!exists("out")) out = "bench-baseline.png"
if (!exists("nservers")) nservers = 3

set terminal pngcairo size 1400,1000 font "DejaVu Sans,11"
set output out
set multiplot layout 2,2 title "tern-bench baseline: ternd vs ejabberd vs Prosody (server on one core)" font ",14"

set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.8
set grid ytics
set key off
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set format y "%'.0f"

set title "1. Throughput at saturation (messages/s, higher is better)"
plot datadir."/bars.dat" using 2:xtic(1) linecolor rgb "#2b7bba", \
     "" using 0:2:(sprintf("%'.0f", $2)) with labels offset 0,1 notitle

set title "3. Server RSS per idle connection (KiB, lower is better)"
set format y "%.1f"
plot datadir."/bars.dat" using 3:xtic(1) linecolor rgb "#c0504d", \
     "" using 0:3:(sprintf("%.2f", $3)) with labels offset 0,1 notitle

set title "2. Latency send→receipt at 50% of ternd's rate (ms, log scale)"
set style data linespoints
set logscale y
set format y "%g"
set yrange [*:*]
set offsets 0, 0, 0, 0
set key top left autotitle columnhead
set xtics ("p50" 0, "p90" 1, "p99" 2, "p99.9" 3, "p99.999" 4, "max" 5)
plot for [i=2:nservers+1] datadir."/latency.dat" using 0:i linewidth 2 pointtype 7
unset logscale y
set key noautotitle
set key off
set xtics auto

set title "Server CPU per delivered message (µs, lower is better)"
set style data histograms
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set format y "%.0f"
plot datadir."/bars.dat" using 4:xtic(1) linecolor rgb "#9bbb59", \
     "" using 0:4:(sprintf("%.1f", $4)) with labels offset 0,1 notitle

unset multiplot
