#!/bin/bash
# A Slurm job array that runs one experiment grid on N GPUs: task K runs shard K/N (run --shard K/N).
#
#   sbatch --array=1-8 configs/slurm_array.sh configs/main.yaml        # 8 shards of the full grid
#
# Each task computes the same cost-balanced split of the grid (smoothdistill_lib/shards.py), trains
# its runs replica-stacked (run --stack: seeds x folds of one method in one model), and writes one
# JSON record per finished run. With a shared filesystem every task writes into the SAME folder
# ($SMOOTHDISTILL_RESULTS/<experiment>/runs; shards lock separately, so they do not block each other).
# Without one, give each task its own folder and copy the records together afterwards: every record
# is its own file named by its run id, so the union of the folders is the grid:
#   cp shard-*/main/runs/*.json results/main/runs/ && python -m smoothdistill_lib report main
# A task that is killed (time limit, preemption) loses only its unfinished stack: resubmit the same
# array and finished runs are skipped.
#SBATCH --job-name=smoothdistill
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail
CONFIG=${1:?usage: sbatch --array=1-N configs/slurm_array.sh CONFIG [MODE]}
MODE=${2:-full}
N=${SLURM_ARRAY_TASK_COUNT:?run me as a job array: sbatch --array=1-N ...}
K=${SLURM_ARRAY_TASK_ID:?}
# the array must be numbered 1..N (shards are 1-based); --array=0-7 would name a shard 0
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# export SMOOTHDISTILL_RESULTS=$SCRATCH/smoothdistill-results/shard-$K   # no shared filesystem
python -m smoothdistill_lib run "$CONFIG" --mode "$MODE" --device cuda --stack --shard "$K/$N" --require-clean
