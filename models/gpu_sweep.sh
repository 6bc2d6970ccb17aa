#!/usr/bin/env bash
# One GPU lease, one command: train a sweep of teachers in parallel, distil the best of them into
# students, bring back the best model by TweetEval val macro-recall (model selection only).
#   here:  python models/gpu_pack.py pack --out .gpu
#   there: OUT=/some/dir bash models/gpu_sweep.sh          (GPU: ~8.5 minutes with the defaults)
#   here:  python models/gpu_pack.py receive-weights OUT models/.work/gpu/best.pt
# DAPT_BUDGET=150 (seconds) first adapts the encoder to tweets with masked-LM on the training tweets
# (models/mlm.py) and fine-tunes every run from it; with it, e.g. TEACHER_BUDGET=170 STUDENT_BUDGET=140
# keeps the whole sweep near 9 minutes. Measured on CPU (MODEL_CARD.md): 1.1 epochs of it changed TweetEval
# val macro-recall by under 0.7 point in a paired recipe-A run, so it is off by default.
set -u
cd "$(dirname "$0")"
OUT=${OUT:?set OUT}
WORK=${WORK:-/tmp/gpu}
TEACHER_BUDGET=${TEACHER_BUDGET:-215}
STUDENT_BUDGET=${STUDENT_BUDGET:-170}
S140_SMALL=${S140_SMALL:-15000}
S140_BIG=${S140_BIG:-40000}
SEED_BASE=${SEED_BASE:-0}
DAPT_BUDGET=${DAPT_BUDGET:-0}
export PYTHONUNBUFFERED=1 BADBUZZ_ENCODER_DIR=$WORK/encoder BADBUZZ_DATA_DIR=${BADBUZZ_DATA_DIR:-$WORK/data}
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
python3 gpu_pack.py unpack ../.gpu "$WORK" || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
if [ "$DAPT_BUDGET" -gt 0 ]; then
  stamp "masked-LM on the training tweets, ${DAPT_BUDGET}s"
  if python3 mlm.py --out "$WORK/encoder-dapt" --epochs 3 --batch 256 --lr 2e-4 --threads 4 \
      --time-budget "$DAPT_BUDGET" >"$WORK/mlm.out" 2>&1; then
    export BADBUZZ_ENCODER_DIR=$WORK/encoder-dapt
    mkdir -p "$OUT" && cp "$WORK/encoder-dapt/mlm.log" "$OUT/"
  else
    stamp "masked-LM failed (see below): the runs start from the base encoder"
  fi
  tail -n 2 "$WORK/mlm.out"
fi
common=(--save-every 100000 --threads 1 --time-budget "$TEACHER_BUDGET")
# one teacher per line: name lr epochs s140 batch [extra args]; $TEACHERS replaces the list
DEFAULT_TEACHERS="t1 5e-5 3 $S140_SMALL 32
t2 5e-5 3 $S140_SMALL 32 --class-weighted
t3 8e-5 3 $S140_SMALL 32
t4 5e-5 4 $S140_BIG 32
t5 3e-5 4 $S140_SMALL 32
t6 1e-4 4 $S140_SMALL 64
t7 5e-5 3 $S140_BIG 32 --class-weighted
t8 8e-5 2 $S140_SMALL 32"
mapfile -t teachers <<<"${TEACHERS:-$DEFAULT_TEACHERS}"
stamp "teachers: ${#teachers[@]} in parallel, ${TEACHER_BUDGET}s each"
i=0
for spec in "${teachers[@]}"; do
  read -r name lr ep s140 batch extra <<<"$spec"
  i=$((i + 1))
  python3 train.py --out "$WORK/$name" --lr "$lr" --epochs "$ep" --s140 "$s140" --batch "$batch" \
    --seed "$((SEED_BASE + i))" "${common[@]}" ${extra:-} >"$WORK/$name.out" 2>&1 &
done
wait
stamp "teachers done"
rank() {  # run folders by best TweetEval val macro-recall, best first
  python3 - "$@" <<'PY'
import json, sys
from pathlib import Path
best = []
for d in map(Path, sys.argv[1:]):
    if not (d / "train.log").exists():
        continue
    hist = [json.loads(l) for l in (d / "train.log").read_text().splitlines() if '"tweeteval_val"' in l]
    if hist and (d / "best.pt").exists():
        best.append((max(h["tweeteval_val"]["macro_recall"] for h in hist), str(d)))
for score, d in sorted(best, reverse=True):
    print(d, round(score, 4))
PY
}
rank $(for spec in "${teachers[@]}"; do echo "$WORK/${spec%% *}"; done) | tee "$WORK/teachers.rank"
# the best teacher comes back even if the students do not finish in time
python3 gpu_pack.py send-weights "$(head -1 "$WORK/teachers.rank" | cut -d' ' -f1)/best.pt" "$OUT"
top=$(head -4 "$WORK/teachers.rank" | cut -d' ' -f1 | sed 's|$|/best.pt|')
stamp "soft targets from: $top"
python3 soft_targets.py --ckpts $top --s140 "$S140_SMALL" --out "$WORK/soft_small.npy" &
python3 soft_targets.py --ckpts $top --s140 "$S140_BIG" --out "$WORK/soft_big.npy" &
wait
stamp "students"
# one student per line: name s140-mix(small|big) alpha seed lr batch epochs; $STUDENTS replaces the list
DEFAULT_STUDENTS="s1 small 0.8 21 8e-5 32 4
s2 big 0.8 22 8e-5 32 4
s3 small 1.0 23 8e-5 32 4"
while read -r name mix alpha seed lr batch ep; do
  if [ "$mix" = big ]; then rows=$S140_BIG; else rows=$S140_SMALL; fi
  python3 train.py --out "$WORK/$name" --s140 "$rows" --soft-targets "$WORK/soft_$mix.npy" --distill-alpha "$alpha" \
    --seed "$seed" --lr "$lr" --batch "$batch" --epochs "$ep" --save-every 100000 --threads 1 \
    --time-budget "$STUDENT_BUDGET" >"$WORK/$name.out" 2>&1 &
done <<<"${STUDENTS:-$DEFAULT_STUDENTS}"
wait
stamp "students done"
rank "$WORK"/*/ | tee "$WORK/all.rank"
winner=$(head -1 "$WORK/all.rank" | cut -d' ' -f1)
rm -f "$OUT"/weights*
python3 gpu_pack.py send-weights "$winner/best.pt" "$OUT"
python3 - "$WORK" "$OUT/sweep.json" <<'PY'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
runs = {}
for d in sorted(p for p in work.iterdir() if p.is_dir() and (p / "train.log").exists()):
    lines = [json.loads(l) for l in (d / "train.log").read_text().splitlines()]
    runs[d.name] = {"evals": [l for l in lines if "tweeteval_val" in l], "last": [l for l in lines if "loss" in l][-1:]}
ranks = (work / "all.rank").read_text().split("\n")
json.dump({"ranking": ranks, "runs": runs}, out.open("w"), indent=1)
PY
tail -n 3 "$WORK"/*.out >"$OUT/sweep.log"
stamp "winner $winner"
