# Shell helpers the bench tools share (sourced, not run).

# The median of the numbers in FILE, one per line.
median_file() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# A / B.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }
# wrk's latency on stdin in microseconds ("371.00us", "3.83ms", "1.02s").
micros() { awk '{ v = $1 + 0; if ($1 ~ /ms$/) v *= 1000; else if ($1 ~ /[0-9]s$/) v *= 1e6; print v }'; }
