# Shared by the study scripts: one place for the size switch, the binaries and where reports go.
# STUDY_SIZE=full (default) writes the committed report to docs/benchmarks/<study>/;
# STUDY_SIZE=tiny runs the same benchmark command at toy size (1 fold, 2 iterations) into the work folder.
# STUDY_REPORT_ONLY=1 rewrites the report from the work folder's finished runs (--report-only: nothing trained).
BIN="${BIN:-.venv/bin}"
STUDY_ARGS=()

study_args() {  # study_args NAME WORKDIR FULL-SIZE-ARGS...
    local name="$1" workdir="$2"; shift 2
    STUDY_NAME="$name"
    STUDY_WORKDIR="${workdir:-study_output/$name}"
    if [ "${STUDY_SIZE:-full}" = tiny ]; then
        STUDY_ARGS=(--cases 12 -f 0 --epochs 1 --iterations 2 --val-iterations 1 --cost-repeats 1 --cost-cases 1
                    --report-dir "$STUDY_WORKDIR/report")
    elif [ "${STUDY_SIZE:-full}" = full ]; then
        STUDY_ARGS=("$@" --report-dir "docs/benchmarks/$name")
    else
        echo "STUDY_SIZE must be full or tiny, got '${STUDY_SIZE}'" >&2; exit 2
    fi
}

tiny_args() {  # tiny_args ARGS...: what one study's toy size needs beyond the shared toy arguments above
    if [ "${STUDY_SIZE:-full}" = tiny ]; then STUDY_ARGS+=("$@"); fi
}

run_study() {  # run_study BENCHMARK-ARGS...: one CPU thread per run, two runs at a time on a 2-core machine
    local cores; cores=$(nproc)
    "$BIN/nnunet-ext" benchmark --generate --device "${STUDY_DEVICE:-cpu}" --cpus-per-run 1 \
        --max-parallel "${STUDY_PARALLEL:-$cores}" --workdir "$STUDY_WORKDIR" "$@" "${STUDY_ARGS[@]}" \
        ${STUDY_REPORT_ONLY:+--report-only}
}
