# ruff: noqa  (diagnostic scripts kept as they were run; not library code)
"""BayesCap diagnostics on digits restoration: where is the correlation ceiling?"""
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

from varbayes import metrics
from varbayes.method import RunContext
from varbayes.methods.bnn import bayescap_tasks as tasks
from varbayes.methods.bnn.bayescap import BayesCap, Config, cap_config
from varbayes.nn.networks import MLP

torch.set_num_threads(1)
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
base = Config(frozen_epochs=300, epochs=200)
t0 = time.time()
task = tasks.restoration_task(base, RunContext("bayescap", "digits-restoration", seed, out=Path(f"/tmp/bayescap-diag/s{seed}"), quiet=True), checkpoints=False)
print("frozen", round(time.time() - t0, 1), "s", flush=True)

def corr(e2, v):
    e2, v = e2.flatten().double(), v.flatten().double()
    a, b = e2 - e2.mean(), v - v.mean()
    return float((a * b).sum() / (a.pow(2).sum() * b.pow(2).sum()).sqrt())

def spear(e2, v):
    r = lambda t: t.flatten().argsort().argsort().double()
    return corr(r(e2), r(v))

def img_corr(e2, v):
    return corr(e2.mean(1), v.mean(1))

def uce(e2, v, bins=100):
    return metrics.uncertainty_calibration_error(torch.zeros_like(e2), v, e2.sqrt(), bins, "variance")

cap0 = BayesCap(task.frozen, cap_config(base))
yh = {p: cap0.frozen_outputs(getattr(task, f"x_{p}")) for p in ("train", "val", "test")}
e2 = {p: (yh[p] - getattr(task, f"y_{p}")).pow(2) for p in yh}
for p in e2:
    e = e2[p].flatten()
    print(f"{p}: mse {e.mean():.4f}  kurtosis(e2) {((e-e.mean())**4).mean()/e.var()**2:.1f}  frac e2>0.1 {(e>0.1).float().mean():.3f}")

def report(name, var):
    out = []
    for p in ("val", "test"):
        if p in var:
            v = var[p]
            out.append(f"{p}: corr {corr(e2[p], v):.3f} spear {spear(e2[p], v):.3f} img {img_corr(e2[p], v):.3f} uce {uce(e2[p], v):.4f}")
    print(f"{name:38s}", " | ".join(out), flush=True)

# oracle: gaussian errors with the true variance (upper bound of Pearson for Gaussian residuals)
print("oracle Gaussian ceiling 1/sqrt(3) =", round(1 / math.sqrt(3), 3))

# TTDA variants
for scale in (0.05,):
    var = {p: tasks.ttda(cap0, getattr(task, f"x_{p}"), 50, scale, seed)[1] for p in ("val", "test")}
    report(f"TTDA scale {scale}", var)

# direct regression of e2 on features (MSE) - best achievable mean-of-e2 predictor
def regress(feats_fn, train_part, epochs=300, loss="mse", width=256):
    torch.manual_seed(seed)
    xs, ys = feats_fn(train_part), e2[train_part]
    if train_part == "train":
        idx = torch.randperm(len(xs), generator=torch.Generator().manual_seed(seed))[:round(0.3 * len(xs))]
        xs, ys = xs[idx], ys[idx]
    mu, sd = xs.mean(0), xs.std(0) + 1e-6
    net = MLP(xs.shape[1], [width, width], 64)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for ep in range(epochs):
        perm = torch.randperm(len(xs))
        for i in range(0, len(xs), 32):
            b = perm[i:i + 32]
            out = net((xs[b] - mu) / sd)
            if loss == "mse":
                l = (nn.functional.softplus(out) - ys[b]).pow(2).mean()
            else:  # gaussian nll on residual with predicted variance
                v = nn.functional.softplus(out) + 1e-6
                l = (ys[b] / v + v.log()).mean()
            opt.zero_grad(); l.backward(); opt.step()
        sched.step()
    with torch.no_grad():
        return {p: nn.functional.softplus(net((feats_fn(p) - mu) / sd)) for p in ("val", "test")}

f_yhat = lambda p: yh[p]
f_both = lambda p: torch.cat([yh[p], getattr(task, f"x_{p}")], 1)
f_x = lambda p: getattr(task, f"x_{p}")
which = sys.argv[2].split(",") if len(sys.argv) > 2 else ["reg", "cap"]
if "reg" in which:
    for fname, fn in (("yhat", f_yhat), ("x", f_x), ("yhat+x", f_both)):
        for part in ("train", "val"):
            t = time.time()
            report(f"MSE-regress e2 on {fname} [{part}]", regress(fn, part))
    report("Gauss-NLL var on yhat [train30]", regress(f_yhat, "train", loss="nll"))
    report("Gauss-NLL var on yhat+x [train30]", regress(f_both, "train", loss="nll"))

if "cap" in which:
    variants = {"default": {}, "epochs 400": {"epochs": 400}, "lambda_nll 1": {"lambda_nll": 1.0},
                "lambda_id 0.1": {"lambda_id": 0.1}, "beta floor 0.5": {"beta_floor": 0.5},
                "fraction 1.0": {"fraction": 1.0}, "width 512 depth 3": {"width": 512, "depth": 3}}
    for name, ch in variants.items():
        cfg = dataclasses.replace(base, seed=seed, **ch)
        t = time.time()
        cap = BayesCap(task.frozen, cap_config(cfg)).fit((task.x_train, task.y_train))
        var = {p: cap.predict(getattr(task, f"x_{p}"))[1] for p in ("val", "test")}
        report(f"cap {name} ({time.time()-t:.0f}s)", var)
    cfg = dataclasses.replace(base, seed=seed)
    cap = BayesCap(task.frozen, cap_config(cfg)).fit((task.x_val, task.y_val))
    report("cap trained on val (test only valid)", {"test": cap.predict(task.x_test)[1]})
