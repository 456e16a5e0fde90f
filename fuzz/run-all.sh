#!/usr/bin/env bash
# Runs every fuzz target in turn for FUZZ_SECONDS (default 600) each, one at a time, and
# prints each run's final libFuzzer stats. Logs: fuzz/logs/<target>.log. Findings land in
# fuzz/artifacts/<target>/ and must become regression tests in the crate.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-600}
targets=${FUZZ_TARGETS:-"datagram sealed_datagram log_reader control_request config"}
mkdir -p logs
for t in $targets; do
  mkdir -p "corpus/$t" "seeds/$t"
  echo "==> $t for ${seconds}s"
  cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" \
    -rss_limit_mb=1024 >"logs/$t.log" 2>&1
  echo "exit $? ; $(grep -E '^(Done|#[0-9]+ +DONE)' "logs/$t.log" | tail -1)"
  grep -E 'SUMMARY|panicked|Test unit written' "logs/$t.log" | head -5
done
