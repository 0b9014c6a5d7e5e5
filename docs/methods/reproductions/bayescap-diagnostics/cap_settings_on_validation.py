# ruff: noqa  (diagnostic scripts kept as they were run; not library code)
import dataclasses
import sys
import time
from pathlib import Path

import torch

from varbayes.method import RunContext
from varbayes.methods.bnn import bayescap_tasks as tasks
from varbayes.methods.bnn.bayescap import BayesCap, Config, cap_config

torch.set_num_threads(1)
seed = int(sys.argv[1])
base = Config(frozen_epochs=300, epochs=200)
task = tasks.restoration_task(base, RunContext("bayescap", "digits-restoration", seed, out=Path(f"/tmp/bayescap-diag/s{seed}"), quiet=True), checkpoints=False)
def corr(e2, v):
    e2, v = e2.flatten().double(), v.flatten().double()
    a, b = e2 - e2.mean(), v - v.mean()
    return float((a * b).sum() / (a.pow(2).sum() * b.pow(2).sum()).sqrt())
cap0 = BayesCap(task.frozen, cap_config(base))
yv = cap0.frozen_outputs(task.x_val); e2v = (yv - task.y_val).pow(2)
tt = tasks.ttda(cap0, task.x_val, 50, 0.05, seed)[1]
print("TTDA val corr", round(corr(e2v, tt), 3), flush=True)
grid = [dict(epochs=e, lambda_id=li, lambda_nll=ln, beta_floor=bf)
        for e in (50, 200) for (li, ln) in ((1, 0.05), (1, 0.5), (0.1, 0.05)) for bf in (1.0, 0.5)]
grid += [dict(epochs=400, early_stopping=30, eval_every=1)]
for ch in grid:
    cfg = dataclasses.replace(base, seed=seed, **ch)
    t = time.time()
    val = (task.x_val, task.y_val) if "early_stopping" in ch else None
    cap = BayesCap(task.frozen, cap_config(cfg)).fit((task.x_train, task.y_train), validation=val)
    m, v = cap.predict(task.x_val)
    print(ch, f"corr {corr(e2v, v):.3f} idmae {(m - yv).abs().mean():.4f} {time.time()-t:.0f}s",
          "best" if val is None else cap.history[-1], flush=True)
