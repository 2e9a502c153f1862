#!/usr/bin/env bash
# nnUNetv2_train + nnUNetv2_predict end to end at the real-scale phantom's stock plans, one trainer after the
# other, each command under /usr/bin/time -v (docs: e2e_commands.md). By default polite on a shared machine
# (core 1 only, nice 19, one thread); on an idle machine give it the cores:
#   E2E_CPUS=0,1 E2E_THREADS=2 E2E_NICE=0 e2e.sh WORKDIR TRAINER...
# E2E_SCHEDULE (default _ep1it2val1) is the short-schedule suffix of every trainer name.
# E2E_STOP_AT_EPOCH=1 (with a schedule of 2+ epochs) stops training after epoch 0 through
# NNUNET_EXT_STOP_AT_EPOCH, before nnU-Net's final validation (8 tiles x 8 mirrorings), and predicts from
# checkpoint_latest.pth: ES-UNet's final validation alone takes ~50 min on 2 CPU cores.
#
#   e2e.sh WORKDIR TRAINER...     run; WORKDIR gets logs, /usr/bin/time reports and predictions
#   e2e.sh --table WORKDIR        print the table of peak RSS and times from WORKDIR's reports
#
# Needs nnUNet_raw / nnUNet_preprocessed / nnUNet_results with dataset 990 planned (python -m
# nnunet_ext.benchmark.real_scale --generate), a splits_final.json (4 cases: nnU-Net's 5-fold split refuses
# them), and the environment's console scripts on PATH.
set -euo pipefail

row() {  # trainer, step, /usr/bin/time -v report
    awk -v t="$1" -v s="$2" -F': ' '
        /Maximum resident set size/ {rss = $2 / 1048576}
        /User time/ {user = $2} /System time/ {sys = $2}
        /Elapsed \(wall clock\)/ {n = split($2, p, ":"); wall = (n == 3 ? p[1] * 3600 + p[2] * 60 + p[3] : p[1] * 60 + p[2])}
        /Exit status/ {if (status == "") status = $2}
        /Command terminated by signal/ {split($0, w, "signal "); status = "killed by signal " w[2]}
        END {printf "| %s | %s | %s | %.2f | %.0f | %.0f |\n", t, s, status, rss, wall, user + sys}' "$3"
}

if [[ "${1:-}" == "--table" ]]; then
    cd "$2"
    echo "| trainer | command | exit | peak RSS GB | wall s | CPU s (user + sys) |"
    echo "|---|---|---|---|---|---|"
    for report in time_train_*.txt; do
        trainer=${report#time_train_}; trainer=${trainer%.txt}
        row "$trainer" nnUNetv2_train "$report"
        [[ -f time_predict_$trainer.txt ]] && row "$trainer" nnUNetv2_predict "time_predict_$trainer.txt"
    done
    exit 0
fi

work=$1; shift
mkdir -p "$work/in"
case_image="$nnUNet_raw/Dataset990_RealScale/imagesTr/realscale_003_0000.nii.gz"  # fold 0's validation case
ln -sf "$case_image" "$work/in/"
cd "$work"
export nnUNet_extTrainer=${nnUNet_extTrainer:-$(nnunet-ext trainers-dir)}
cpus=${E2E_CPUS:-1} threads=${E2E_THREADS:-1} niceness=${E2E_NICE:-19} schedule=${E2E_SCHEDULE:-_ep1it2val1}
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads nnUNet_n_proc_DA=1
checkpoint=checkpoint_final.pth
if [[ -n "${E2E_STOP_AT_EPOCH:-}" ]]; then export NNUNET_EXT_STOP_AT_EPOCH=$E2E_STOP_AT_EPOCH; checkpoint=checkpoint_latest.pth; fi
echo "== cpus $cpus, $threads threads, nice $niceness, schedule $schedule, stop at ${E2E_STOP_AT_EPOCH:-end}" >> progress.log
for trainer in "$@"; do
    echo "== ${trainer}$schedule train $(date -u +%T)" >> progress.log
    /usr/bin/time -v -o "time_train_$trainer.txt" taskset -c "$cpus" nice -n "$niceness" \
        nnUNetv2_train 990 3d_fullres 0 -tr "${trainer}$schedule" -device cpu > "log_train_$trainer.txt" 2>&1 || true
    echo "== ${trainer}$schedule predict $(date -u +%T)" >> progress.log
    rm -rf "out_$trainer"
    /usr/bin/time -v -o "time_predict_$trainer.txt" taskset -c "$cpus" nice -n "$niceness" \
        nnUNetv2_predict -i in -o "out_$trainer" -d 990 -c 3d_fullres -tr "${trainer}$schedule" -f 0 \
        --disable_tta -device cpu -npp 1 -nps 1 -chk "$checkpoint" > "log_predict_$trainer.txt" 2>&1 || true
done
echo "done $(date -u +%T)" >> progress.log
