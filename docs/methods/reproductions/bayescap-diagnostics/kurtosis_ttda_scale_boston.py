# ruff: noqa  (diagnostic scripts kept as they were run; not library code)
import dataclasses
from pathlib import Path

import torch

from varbayes.method import RunContext
from varbayes.methods.bnn import bayescap_tasks as tasks
from varbayes.methods.bnn.bayescap import BayesCap, Config, cap_config

torch.set_num_threads(1)
def corr(e2, v):
    e2, v = e2.flatten().double(), v.flatten().double()
    a, b = e2 - e2.mean(), v - v.mean()
    return float((a * b).sum() / (a.pow(2).sum() * b.pow(2).sum()).sqrt())
seed = 0
base = Config(frozen_epochs=300, epochs=200)
task = tasks.restoration_task(base, RunContext("bayescap", "digits-restoration", seed, out=Path(f"/tmp/bayescap-diag/s{seed}"), quiet=True), checkpoints=False)
cap = BayesCap(task.frozen, cap_config(dataclasses.replace(base, seed=seed))).fit((task.x_train, task.y_train))
for p in ("train", "val"):
    x, y = getattr(task, f"x_{p}"), getattr(task, f"y_{p}")
    m, v = cap.predict(x); e = (m - y)
    z = (e / v.sqrt()).flatten().double()
    print(p, "residual kurtosis E[z^4]/E[z^2]^2 =", round(float(z.pow(4).mean() / z.pow(2).mean()**2), 2),
          "mean z^2", round(float(z.pow(2).mean()), 3), "bound 1/sqrt(k)", round(float(z.pow(2).mean() / z.pow(4).mean().sqrt()), 3))
yv = cap.frozen_outputs(task.x_val); e2v = (yv - task.y_val).pow(2)
for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.4):
    print("TTDA scale", s, "val corr", round(corr(e2v, tasks.ttda(cap, task.x_val, 50, s, seed)[1]), 3), flush=True)
# boston
bcfg = Config(frozen_epochs=100, epochs=400)
for bseed in (0, 1, 2):
    bt = tasks.boston_task(bcfg, RunContext("bayescap", "boston", bseed, out=Path(f"/tmp/bayescap-diag/boston{bseed}"), quiet=True))
    bc = BayesCap(bt.frozen, cap_config(dataclasses.replace(bcfg, seed=bseed)), target_scale=(bt.y_mean, bt.y_std)).fit((bt.x_train, bt.y_train))
    out = {}
    for p in ("train", "val", "test"):
        x, y = getattr(bt, f"x_{p}"), getattr(bt, f"y_{p}")
        yh = bc.frozen_outputs(x); e2 = (yh - y).pow(2)
        out[p] = (yh, e2, x, y)
    # ceiling: e2 regressed on yhat by a 10-bin histogram (train) evaluated on val/test
    yh, e2 = out["train"][0].flatten(), out["train"][1].flatten()
    edges = torch.quantile(yh, torch.linspace(0, 1, 11))
    def binned(q):
        i = torch.bucketize(q.flatten(), edges[1:-1])
        means = torch.stack([e2[torch.bucketize(yh, edges[1:-1]) == k].mean() for k in range(10)])
        return means[i]
    res = []
    for p in ("val", "test"):
        yq, eq, xq, _ = out[p]
        res.append(f"{p}: cap {corr(eq, bc.predict(xq)[1]):.3f} binned-e2|yhat {corr(eq, binned(yq)):.3f} ttda {corr(eq, tasks.ttda(bc, xq, 50, 0.05, bseed)[1]):.3f} n={len(eq)}")
    print("boston seed", bseed, " | ".join(res), flush=True)
